"""`pirl bc`: behaviour-clone the native flow policy from a LeRobot dataset, to start PI-RL from demos.

    pirl bc --dataset.root=outputs/koch_demos --dataset.repo_id=local/koch_demos --output_dir=outputs/koch_bc
    pirl bc --dataset.root=... --image_keys='["front"]' --method=flow_sde --steps=3000

PI-RL fine-tunes a policy that already does the task sometimes (the paper's few-shot SFT): on a real arm
the demos come from a LeRobot dataset — recorded with `lerobot-record` and a leader arm, or by pirl
itself (`--actor.record.root=...` on the actor or console, `pirl eval --record.root=...`): takeovers are
flagged `intervention` there, and `--dataset.only_interventions` keeps just the human-driven steps. The result is a LeRobot policy folder (`config.json` +
`model.safetensors`, type `pirl_flow`) that a run config names as `policy_path`.

Frames are grouped by episode; each frame starts one chunk of the next `chunk_size` actions (the tail of
an episode repeats its last action). Everything is loaded into memory first: a few dozen episodes of state
vectors are small; with cameras, mind the RAM (frames x 3 x H x W float32).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import asdict, dataclass, field
from pathlib import Path

import draccus
import torch

from app.rl.datasets import ACTION_KEY, DatasetEpisodes
from app.rl.native import IMAGE_PREFIX, STATE_KEY


@dataclass
class BCDatasetConfig:
    """Which LeRobot dataset to clone and which of its steps to use."""

    root: str = ""  # the dataset folder (required; read offline, nothing is downloaded)
    repo_id: str = "local/pirl_eval"  # the id stored in the dataset's metadata (pirl eval's default)
    episodes: list[int] = field(default_factory=list)  # episode indices to use; empty: all
    # Only chunks that start on a human-driven step (`intervention` feature: the takeovers the actor's
    # `--actor.record.root` and `pirl eval --record.root` record). Needs the feature in the dataset.
    only_interventions: bool = False
    # Only episodes whose last frame says `next.success` (drops failed demos). Needs the feature.
    only_successful: bool = False


@dataclass
class BCCommandConfig:
    dataset: BCDatasetConfig = field(default_factory=BCDatasetConfig)
    output_dir: str = "outputs/bc_policy"  # the LeRobot policy folder to write
    overwrite: bool = False  # replace output_dir if it exists
    # PI-RL flavour the saved policy is set up for: "flow_noise" (adds the noise head) or "flow_sde".
    method: str = "flow_noise"
    chunk_size: int = 10  # actions per chunk (H)
    exec_horizon: int = 5  # actions executed per chunk by the actor (<= chunk_size)
    num_steps: int = 4  # denoising steps K
    obs_hidden: int = 128  # observation encoder width
    expert_hidden: int = 256  # velocity MLP width
    # Cameras fed to the policy (observation.images.<key> in the dataset); empty: state only.
    image_keys: list[str] = field(default_factory=list)
    steps: int = 2000  # gradient steps of flow-matching BC
    batch_size: int = 256
    lr: float = 1e-3
    seed: int = 0  # policy init, minibatches and flow-matching noise
    # Smallest std to normalise a joint entry ("<motor>.pos": degrees, gripper 0-100) of the state and the
    # action with: a joint the demos never moved would otherwise get std ~0 and turn sensor noise into
    # huge inputs.
    std_floor: float = 1.0
    # The same floor for other state entries (e.g. a sim task's target position in metres).
    other_std_floor: float = 0.01
    log_every: int = 200  # print the mean loss every N steps (0: only at the end)
    progress: bool = True  # a progress bar with ETA on stderr over the steps (only when it is a terminal)

    def validate(self) -> None:
        if not self.dataset.root:
            raise ValueError("give the dataset folder: --dataset.root=PATH (a LeRobot dataset)")
        if not (Path(self.dataset.root) / "meta" / "info.json").is_file():
            raise ValueError(
                f"--dataset.root={self.dataset.root} is not a LeRobot dataset (no meta/info.json)"
            )
        if self.method not in ("flow_noise", "flow_sde"):
            raise ValueError(f"--method must be flow_noise or flow_sde, got {self.method!r}")
        if self.chunk_size < 1 or not 1 <= self.exec_horizon <= self.chunk_size:
            raise ValueError("need chunk_size >= 1 and 1 <= exec_horizon <= chunk_size")
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("--steps, --batch_size must be >= 1 and --lr > 0")
        out = Path(self.output_dir)
        if out.exists() and any(out.iterdir()) and not self.overwrite:
            raise FileExistsError(f"{out} exists; choose another --output_dir or pass --overwrite=true")


def load_episodes(cfg: BCCommandConfig) -> tuple[list[dict[str, torch.Tensor]], list[str], list[str], int]:
    """The dataset's episodes as per-step tensors (+ a per-step "keep" mask), state/action names, fps."""
    flags = (("intervention", cfg.dataset.only_interventions), ("next.success", cfg.dataset.only_successful))
    data = DatasetEpisodes(
        cfg.dataset.root,
        where=f"dataset {cfg.dataset.root}",
        repo_id=cfg.dataset.repo_id,
        image_keys=cfg.image_keys,
        required=[key for key, flag in flags if flag],
    )
    wanted = set(cfg.dataset.episodes) or set(data.ids)
    absent = wanted - set(data.ids)
    if absent:
        raise ValueError(f"--dataset.episodes {sorted(absent)} are not in the dataset")
    episodes = []
    for ep in sorted(wanted):
        if cfg.dataset.only_successful and not bool(data.column("next.success", ep).reshape(-1)[-1]):
            continue
        item = data.episode(ep)
        if cfg.dataset.only_interventions:
            item["keep"] = data.column("intervention", ep).reshape(-1).bool()
        else:
            item["keep"] = torch.ones(item[ACTION_KEY].shape[0], dtype=torch.bool)
        episodes.append(item)
    return episodes, data.names(STATE_KEY), data.names(ACTION_KEY), data.fps


def build_and_train(
    cfg: BCCommandConfig,
    episodes: list[dict[str, torch.Tensor]],
    state_names: list[str] | None = None,
    say=print,
):
    """Native pirl_flow policy shaped like the data, normalised from it, trained by flow matching."""
    from app.rl.bc import bc_pretrain, floored_normalization_stats, make_chunks
    from app.rl.config import PIRLConfig
    from app.rl.lerobot_policy import PIRLFlowConfig, PIRLFlowPolicy
    from app.rl.native import NativeFlowConfig

    data = make_chunks(episodes, cfg.chunk_size)
    keep = data.pop("keep")
    data = {k: v[keep] for k, v in data.items()}
    if data["action"].shape[0] == 0:
        raise ValueError("no steps left to clone after the dataset filters (episodes/interventions/success)")
    image_size = tuple(data[IMAGE_PREFIX + cfg.image_keys[0]].shape[-2:]) if cfg.image_keys else (96, 96)
    torch.manual_seed(cfg.seed)
    native = NativeFlowConfig(
        state_dim=data[STATE_KEY].shape[1],
        action_dim=data["action"].shape[2],
        chunk_size=cfg.chunk_size,
        obs_hidden=cfg.obs_hidden,
        expert_hidden=cfg.expert_hidden,
        image_keys=tuple(cfg.image_keys),
        image_size=image_size,
    )
    rl = PIRLConfig(method=cfg.method, num_steps=cfg.num_steps, exec_horizon=cfg.exec_horizon)
    policy = PIRLFlowPolicy(PIRLFlowConfig(native=native, rl=rl, device="cpu", push_to_hub=False))
    names = state_names or []
    floor = torch.tensor(
        [cfg.std_floor if i >= len(names) or names[i].endswith(".pos") else cfg.other_std_floor
         for i in range(native.state_dim)]
    )  # fmt: skip
    stats = floored_normalization_stats(data, floor, cfg.std_floor)
    policy.model.policy.set_normalization(stats)
    say(f"bc: {data['action'].shape[0]} chunks from {len(episodes)} episodes; {cfg.steps} steps")
    with _progress_bar(cfg.steps, cfg.progress):
        losses = bc_pretrain(
            policy.model.policy,
            data,
            steps=cfg.steps,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            seed=cfg.seed,
            fit_normalization=False,
            log_every=cfg.log_every,
        )
    return policy, data, losses


@contextmanager
def _progress_bar(steps: int, show: bool) -> Iterator[None]:
    """A bar with ETA on stderr over the training steps, only when stderr is a terminal and --progress is
    on (logs, pipes and tests get just the lines). It counts optimiser steps, one per BC step; the loss
    lines print above it."""
    from torch.optim.optimizer import register_optimizer_step_post_hook
    from tqdm import tqdm
    from tqdm.contrib import DummyTqdmFile

    bar = tqdm(
        total=steps, desc="bc", unit="step", file=sys.stderr, disable=None if show else True, leave=False
    )
    if bar.disable:
        yield
        return
    hook = register_optimizer_step_post_hook(lambda *_: bar.update())  # every optimiser, while BC runs
    try:
        with redirect_stdout(DummyTqdmFile(sys.stdout)):
            yield
    finally:
        hook.remove()
        bar.close()


def main(argv: list[str] | None = None) -> int:
    with draccus.config_type("json"):
        cfg = draccus.parse(BCCommandConfig, args=list(argv or []))
    try:
        cfg.validate()
        t0 = time.monotonic()
        episodes, state_names, action_names, fps = load_episodes(cfg)
        if not episodes:
            raise ValueError("no episodes left after the dataset filters")
        policy, data, losses = build_and_train(cfg, episodes, state_names)
    except (ValueError, FileExistsError) as err:
        print(f"pirl bc: {err}", file=sys.stderr)
        return 2
    out = Path(cfg.output_dir)
    policy.save_pretrained(out)
    tail = losses[-min(50, len(losses)) :]
    report = {
        "dataset": cfg.dataset.root,
        "episodes": len(episodes),
        "chunks": int(data["action"].shape[0]),
        "state_names": state_names,
        "action_names": action_names,
        "fps": fps,
        "loss_first": losses[0],
        "loss_last_50": sum(tail) / len(tail),
        "wall_s": time.monotonic() - t0,
        "config": asdict(cfg),
    }
    (out / "bc_report.json").write_text(json.dumps(report, indent=2))
    print(
        f"pirl bc: policy written to {out} (loss {losses[0]:.3f} -> {report['loss_last_50']:.3f}, "
        f"{report['wall_s']:.0f} s); use it as `policy_path` in a run config, or "
        f"`pirl eval --policy {out}`"
    )
    return 0
