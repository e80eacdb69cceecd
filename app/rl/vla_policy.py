"""SmolVLA, pi0 and pi0.5 as one registered LeRobot policy type for PI-RL runs: "pirl_vla".

`pirl learner` / `pirl actor` need a LeRobot policy that carries a `PIRLModel` as `.model` (as the native
`pirl_flow` does). This type builds the LeRobot VLA named by its config (from a local pretrained folder,
`base_path`, or a tiny random one built offline for tests), wraps it with `make_adapter` into a
`PIRLModel` with the PI-RL settings of `rl`, and holds the VLA's own LeRobot pre-processor (state
normalisation, batching, task tokens), so the actor can turn a robot observation into exactly the tensors
the model reads. Those tensors (normalised state, images, token ids and mask) travel in the rollout, so
the learner re-scores the chain on the very inputs that sampled it without a tokenizer of its own.

Saving and loading is LeRobot's: `config.json` (this config, with `rl` and the base's location nested) +
`model.safetensors` (the whole PIRLModel: VLA, noise head, value head, action statistics). Loading builds
the VLA from `base_path` again (its architecture and processors), then overwrites every weight from
`model.safetensors`, so `base_path` (and `stats_path`, `tokenizer_path`) must still exist where the
checkpoint is loaded. `base_path` may also be a Hugging Face hub id (`lerobot/smolvla_base`,
`owner/name@revision`): it is resolved through the hub cache (`app.rl.hub.resolve_folder`; offline: the
cached snapshot), and the config keeps the id, so a saved policy loads wherever that id is cached.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from lerobot.configs import PreTrainedConfig
from lerobot.optim import AdamWConfig
from lerobot.policies.pretrained import PreTrainedPolicy
from lerobot.utils.device_utils import is_torch_device_available

from app.rl.config import PIRLConfig
from app.rl.lerobot_policy import ChunkedPIRLPolicy
from app.rl.model import PIRLModel
from app.rl.native import IMAGE_PREFIX, STATE_KEY

log = logging.getLogger(__name__)

POLICY_TYPE = "pirl_vla"
BASE_TYPES = ("smolvla", "pi0", "pi05")
TOKENS_KEY = "observation.language.tokens"
MASK_KEY = "observation.language.attention_mask"


@dataclass
class TinyVLAConfig:
    """A tiny random VLA built offline (tests and CPU smoke runs; it never learns a real task)."""

    # Build the tiny VLA instead of loading `base_path`.
    enabled: bool = False
    # Length of the robot state vector and of one action.
    state_dim: int = 6
    action_dim: int = 6
    # Camera feature names the VLA reads (each becomes `observation.images.<name>`).
    cameras: tuple[str, ...] = ("front",)
    # Actions per chunk.
    chunk_size: int = 10
    # Seed of the random init (learner and actor must agree: the frozen part is compared by digest).
    seed: int = 0


@PreTrainedConfig.register_subclass(POLICY_TYPE)
@dataclass
class PIRLVLAConfig(PreTrainedConfig):
    """LeRobot policy config of a VLA (SmolVLA / pi0 / pi0.5) fine-tuned by PI-RL."""

    # Which LeRobot VLA: "smolvla", "pi0" or "pi05" (must match `base_path`'s config.json).
    base_type: str = "smolvla"
    # LeRobot's default is to push; pirl pushes the final policy only when asked: --policy.push_to_hub=true
    # --policy.repo_id=owner/name (app/learner/hub.py).
    push_to_hub: bool = False
    # LeRobot pretrained folder of the VLA (config.json + model.safetensors), ideally already fine-tuned
    # on the task with `lerobot-train`: a local folder or a Hugging Face hub id (`lerobot/smolvla_base`,
    # `owner/name@revision`), taken from the hub cache (downloaded once when online; offline, only the
    # cached snapshot).
    base_path: str | None = None
    # Local Hugging Face tokenizer folder for pi0 / pi0.5 (PaliGemma's; LeRobot would fetch it from the
    # hub). SmolVLA reads its tokenizer from its own `vlm_model_name` and ignores this.
    tokenizer_path: str | None = None
    # The dataset statistics the VLA was trained with: a LeRobot dataset's `meta/stats.json`. Used by the
    # pre-processor (state) and to map actions to robot units. None: no normalisation (identity).
    stats_path: str | None = None
    # The language instruction given to the VLA at every chunk.
    task: str = ""
    # Build a tiny random VLA instead of loading `base_path` (tests).
    tiny: TinyVLAConfig = field(default_factory=TinyVLAConfig)
    # Adapter options (docs/vla_adapters.md): per-token or mean Flow-Noise features, value features from
    # the action expert or the VLM prefix.
    noise_features: Literal["token", "mean"] = "token"
    value_source: Literal["expert", "prefix"] = "expert"
    # PI-RL algorithm settings (what trains, Flow-Noise / Flow-SDE, PPO).
    rl: PIRLConfig = field(default_factory=PIRLConfig)
    # Learning rate of LeRobot's own optimiser preset (used only if LeRobot's trainer drives the policy).
    optimizer_lr: float = 1e-5
    # Device the actor samples on (the learner uses `device`). A VLA needs an accelerator on the robot
    # machine too (full SmolVLA: 19 s per chunk encode on a 2-core CPU). Without it the actor falls back
    # to the CPU with a warning, as LeRobot does for `device`.
    actor_device: str = "cuda"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.base_type not in BASE_TYPES:
            raise ValueError(f"policy.base_type must be one of {BASE_TYPES}, got {self.base_type!r}")
        if self.tiny.enabled and self.base_path is not None:
            raise ValueError("give either policy.base_path or policy.tiny.enabled=true, not both")
        if not is_torch_device_available(self.actor_device):
            log.warning(
                "policy.actor_device=%s is not available here; the actor samples on the CPU",
                self.actor_device,
            )
            self.actor_device = "cpu"

    def check_files(self) -> Path | None:
        """The local files the VLA is built from exist and agree (checked when the policy is built, not
        when a config is parsed, so a recipe parses on a machine without the model). Returns the local
        folder of `base_path` (a hub id resolved through the hub cache), None for a tiny VLA."""
        if self.tiny.enabled:
            return None
        if self.base_path is None:
            raise ValueError(
                "pirl_vla needs the VLA: --policy.base_path=<LeRobot pretrained folder or hub id of a "
                "SmolVLA, pi0 or pi0.5> (or --policy.tiny.enabled=true for a tiny random test model)"
            )
        from app.rl.hub import HubError, resolve_folder

        try:
            base = resolve_folder(self.base_path)
        except HubError as exc:
            raise HubError(f"policy.base_path={exc}") from exc
        cfg_file = base / "config.json"
        if not cfg_file.is_file():
            what = (
                "no such folder" if not base.exists() else "not a LeRobot pretrained folder (no config.json)"
            )
            raise FileNotFoundError(f"policy.base_path={self.base_path}: {what}")
        found = json.loads(cfg_file.read_text()).get("type", "")
        if self.base_type != found:
            raise ValueError(f"policy.base_type={self.base_type!r} but {cfg_file} says type {found!r}")
        if self.stats_path is not None and not Path(self.stats_path).is_file():
            raise FileNotFoundError(
                f"policy.stats_path={self.stats_path} does not exist (a dataset's meta/stats.json)"
            )
        no_tokenizer = self.tokenizer_path is None or not Path(self.tokenizer_path).is_dir()
        if self.base_type != "smolvla" and no_tokenizer:
            raise FileNotFoundError(
                f"{self.base_type} needs policy.tokenizer_path, a local folder with PaliGemma's tokenizer "
                f"(got {self.tokenizer_path}); LeRobot would otherwise fetch it from the hub"
            )
        return base

    @property
    def observation_delta_indices(self) -> list[int]:
        return [0]

    @property
    def action_delta_indices(self) -> None:
        return None  # the base VLA's own config says how many actions its BC loss reads

    @property
    def reward_delta_indices(self) -> None:
        return None

    def get_optimizer_preset(self) -> AdamWConfig:
        return AdamWConfig(lr=self.optimizer_lr, weight_decay=1e-4, grad_clip_norm=1.0)

    def get_scheduler_preset(self) -> None:
        return None

    def validate_features(self) -> None:
        """The features mirror the base VLA's (set when the policy is built); nothing to check before."""


def load_stats(path: str | Path | None) -> dict[str, dict[str, torch.Tensor]] | None:
    """A LeRobot dataset's `meta/stats.json` -> {feature: {statistic: float32 tensor}}."""
    if path is None:
        return None
    raw = json.loads(Path(path).read_text())
    out: dict[str, dict[str, torch.Tensor]] = {}
    for feat, stats in raw.items():
        if isinstance(stats, dict):
            out[feat] = {
                k: torch.as_tensor(v, dtype=torch.float32)
                for k, v in stats.items()
                if isinstance(v, (list, int, float))
            }
    return out


def _load_tokenizer(path: str | None) -> Any:
    if path is None:
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, local_files_only=True)


def _build_base(
    cfg: PIRLVLAConfig, scratch: str | None, base_dir: Path | None = None
) -> tuple[torch.nn.Module, Any]:
    """(LeRobot VLA policy, tokenizer or None) as the config names it (`base_dir`: `base_path` as a local
    folder, from `check_files`); processors are built by the caller while a tiny SmolVLA's SmolVLM folder
    still exists."""
    if cfg.base_path is not None:
        from lerobot.policies.factory import get_policy_class

        with contextlib.redirect_stdout(None):  # LeRobot prints "Loading weights from local directory"
            policy = get_policy_class(cfg.base_type).from_pretrained(base_dir or cfg.base_path)
        return policy, _load_tokenizer(cfg.tokenizer_path)
    from app.rl.adapters.tiny import build_tiny_pi0, build_tiny_smolvla

    t = cfg.tiny
    image_keys = tuple(IMAGE_PREFIX + c for c in t.cameras)
    kw = dict(state_dim=t.state_dim, action_dim=t.action_dim, image_keys=image_keys, chunk_size=t.chunk_size)
    if cfg.base_type == "smolvla":
        return build_tiny_smolvla(scratch, seed=t.seed, **kw), None
    return build_tiny_pi0(cfg.base_type, seed=t.seed, **kw)


class PIRLVLAPolicy(ChunkedPIRLPolicy, PreTrainedPolicy):
    """LeRobot face of a PIRLModel around a SmolVLA / pi0 / pi0.5 adapter, with its LeRobot processors."""

    config_class = PIRLVLAConfig
    name = POLICY_TYPE

    def __init__(self, config: PIRLVLAConfig, **_: Any) -> None:
        super().__init__(config)
        from app.rl.adapters.factory import make_adapter, make_processors

        base_dir = config.check_files()
        self.config: PIRLVLAConfig = config
        stats = load_stats(config.stats_path)
        with self._scratch_folder() as scratch:
            base, tokenizer = _build_base(config, scratch, base_dir)
            # LeRobot's own pre-processor (rename, batch, tokenise the task, device, normalise); built
            # while a tiny SmolVLA's tokenizer folder still exists.
            self.preprocessor, self.postprocessor = make_processors(base, tokenizer, stats)
        adapter = make_adapter(base, noise_features=config.noise_features, value_source=config.value_source)
        if stats is not None:
            if "action" not in stats:
                raise KeyError(f"{config.stats_path} has no 'action' statistics; got {sorted(stats)}")
            adapter.set_action_stats(stats["action"])
        if config.rl.exec_horizon is not None and config.rl.exec_horizon > adapter.chunk_size:
            raise ValueError(
                f"policy.rl.exec_horizon ({config.rl.exec_horizon}) exceeds the VLA's chunk_size "
                f"({adapter.chunk_size})"
            )
        # LeRobot convention: the wrapper's features are the VLA's.
        config.input_features = dict(base.config.input_features)
        config.output_features = dict(base.config.output_features)
        self.model = PIRLModel(adapter, config.rl)

    @contextlib.contextmanager
    def _scratch_folder(self):
        """A scratch folder for a tiny SmolVLA's SmolVLM config and tokenizer (read only while building)."""
        if not (self.config.tiny.enabled and self.config.base_type == "smolvla"):
            yield None
            return
        folder = tempfile.mkdtemp(prefix="pirl_tiny_smolvlm_")
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    @property
    def base(self) -> torch.nn.Module:
        """The LeRobot VLA (SmolVLAPolicy / PI0Policy / PI05Policy)."""
        return self.model.policy.policy

    @property
    def image_keys(self) -> list[str]:
        """Camera names the VLA reads (`observation.images.<name>`), in its order."""
        return [k.removeprefix(IMAGE_PREFIX) for k in self.base.config.image_features]

    @torch.no_grad()
    def prepare_observation(self, obs: dict[str, Any]) -> dict[str, torch.Tensor]:
        """A robot observation as policy tensors (`observation.state` [B, S], `observation.images.*`
        [B, 3, H, W] in 0..1) -> what the adapter reads, through the VLA's LeRobot pre-processor with this
        config's task: normalised state, images, task token ids (int64) and mask (bool), on the model's
        device. The actor stores exactly these tensors in the rollout."""
        missing = [k for k in [STATE_KEY, *self.base.config.image_features] if k not in obs]
        if missing:
            raise KeyError(
                f"observation lacks {missing} for the {self.config.base_type} VLA; it reads "
                f"{[STATE_KEY, *self.base.config.image_features]} (actor.image_keys must name its cameras "
                f"{self.image_keys})"
            )
        raw = {k: v for k, v in obs.items() if k.startswith("observation.")}
        batch = raw[STATE_KEY].shape[0] if raw[STATE_KEY].dim() == 2 else 1
        out = self.preprocessor({**raw, "task": [self.config.task] * batch})
        dev = next(self.model.parameters()).device
        keep = [STATE_KEY, *self.base.config.image_features, TOKENS_KEY, MASK_KEY]
        return {k: out[k].to(dev) for k in keep}

    def _obs(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        if TOKENS_KEY in batch:  # already through the pre-processor (a rollout row, or LeRobot's pipeline)
            return {k: v for k, v in batch.items() if k.startswith("observation.")}
        return self.prepare_observation(batch)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict | None]:
        """The VLA's own flow-matching BC loss (LeRobot's training contract) on a pre-processed batch."""
        return self.base.forward(batch)
