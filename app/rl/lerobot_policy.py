"""The PI-RL native flow policy as a registered LeRobot policy (type "pirl_flow").

Saves and loads the LeRobot way: `config.json` (draccus-encoded PIRLFlowConfig, with the PI-RL settings
nested under "rl" and the network shape under "native") + `model.safetensors` (the PIRLModel: flow policy,
noise head, value head and normalisation buffers). Deployment is deterministic ODE sampling; the noise
head is carried along (so a checkpoint resumes RL exactly) but never used by `select_action`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from lerobot.configs import FeatureType, PolicyFeature, PreTrainedConfig
from lerobot.optim import AdamWConfig
from lerobot.policies.pretrained import PreTrainedPolicy

from app.rl.config import PIRLConfig
from app.rl.losses import flow_matching_loss
from app.rl.model import PIRLModel
from app.rl.native import ENV_STATE_KEY, IMAGE_PREFIX, STATE_KEY, NativeFlowConfig, NativeFlowPolicy
from app.rl.sampling import ChainSample, sample

POLICY_TYPE = "pirl_flow"


@PreTrainedConfig.register_subclass(POLICY_TYPE)
@dataclass
class PIRLFlowConfig(PreTrainedConfig):
    """LeRobot policy config of the native PI-RL flow policy."""

    native: NativeFlowConfig = field(default_factory=NativeFlowConfig)  # network shape
    rl: PIRLConfig = field(default_factory=PIRLConfig)  # PI-RL algorithm settings
    # Learning rate of LeRobot's own optimiser preset (used only if LeRobot's BC trainer drives it).
    optimizer_lr: float = 1e-3
    # LeRobot's default is to push; pirl pushes the final policy only when asked: --policy.push_to_hub=true
    # --policy.repo_id=owner/name (app/learner/hub.py).
    push_to_hub: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        # The native config is the source of truth: the LeRobot features always mirror it.
        feats = {STATE_KEY: PolicyFeature(type=FeatureType.STATE, shape=(self.native.state_dim,))}
        if self.native.env_state_dim:
            feats[ENV_STATE_KEY] = PolicyFeature(type=FeatureType.ENV, shape=(self.native.env_state_dim,))
        for cam in self.native.image_keys:
            feats[IMAGE_PREFIX + cam] = PolicyFeature(
                type=FeatureType.VISUAL, shape=(3, *self.native.image_size)
            )
        self.input_features = feats
        self.output_features = {
            "action": PolicyFeature(type=FeatureType.ACTION, shape=(self.native.action_dim,))
        }
        if self.rl.exec_horizon is not None and self.rl.exec_horizon > self.native.chunk_size:
            raise ValueError(
                f"rl.exec_horizon ({self.rl.exec_horizon}) exceeds native.chunk_size ({self.native.chunk_size})"
            )

    @property
    def observation_delta_indices(self) -> list[int]:
        return [0]

    @property
    def action_delta_indices(self) -> list[int]:
        return list(range(self.native.chunk_size))

    @property
    def reward_delta_indices(self) -> None:
        return None

    def get_optimizer_preset(self) -> AdamWConfig:
        return AdamWConfig(lr=self.optimizer_lr, weight_decay=1e-4, grad_clip_norm=1.0)

    def get_scheduler_preset(self) -> None:
        return None

    def validate_features(self) -> None:
        state = self.robot_state_feature
        if state is None or tuple(state.shape) != (self.native.state_dim,):
            raise ValueError(
                f"input_features needs {STATE_KEY!r} with shape ({self.native.state_dim},) to match "
                f"native.state_dim; got {state}"
            )
        act = self.action_feature
        if act is None or tuple(act.shape) != (self.native.action_dim,):
            raise ValueError(
                f"output_features needs 'action' with shape ({self.native.action_dim},); got {act}"
            )


class ChunkedPIRLPolicy:
    """What every LeRobot policy around a PIRLModel shares: sampling a chunk with its chain data, the
    deterministic chunk for deployment, and LeRobot's one-action-per-call `select_action` that replays the
    executed slice of a chunk. A mixin placed before PreTrainedPolicy (LeRobot requires every
    PreTrainedPolicy subclass to name its config class); subclasses set `self.model` (a PIRLModel) and may
    override `_obs`."""

    model: PIRLModel

    def __init__(self, config: PreTrainedConfig) -> None:
        super().__init__(config)  # type: ignore[call-arg]  # PreTrainedPolicy, next in the MRO
        self._queue: deque[torch.Tensor] = deque()

    def get_optim_params(self) -> dict:
        return {"params": [p for p in self.parameters() if p.requires_grad]}

    def reset(self) -> None:
        """Forget queued actions (call at every episode start)."""
        self._queue.clear()

    def _obs(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {k: v for k, v in batch.items() if k.startswith("observation.")}

    def sample(
        self,
        batch: dict[str, Any],
        mode: Literal["train", "deterministic"] = "train",
        generator: torch.Generator | None = None,
    ) -> ChainSample:
        """A chunk with everything a rollout row needs (see app.rl.sampling.sample)."""
        return sample(self.model, self._obs(batch), mode=mode, generator=generator)

    @torch.no_grad()
    def predict_action_chunk(self, batch: dict[str, torch.Tensor], **kwargs: Any) -> torch.Tensor:
        """Deterministic ODE chunk [B, H, action_dim] in robot units (deployment/evaluation)."""
        return self.sample(batch, mode="deterministic").actions

    @torch.no_grad()
    def select_action(self, batch: dict[str, torch.Tensor], **kwargs: Any) -> torch.Tensor:
        """One action [B, action_dim]: runs a chunk every `exec_horizon` calls and replays it."""
        if not self._queue:
            chunk = self.predict_action_chunk(batch)
            for i in range(self.model.exec_horizon):
                self._queue.append(chunk[:, i])
        return self._queue.popleft()


class PIRLFlowPolicy(ChunkedPIRLPolicy, PreTrainedPolicy):
    """LeRobot face of a PIRLModel around a NativeFlowPolicy."""

    config_class = PIRLFlowConfig
    name = POLICY_TYPE

    def __init__(self, config: PIRLFlowConfig, **_: Any) -> None:
        super().__init__(config)
        config.validate_features()
        self.config: PIRLFlowConfig = config
        self.model = PIRLModel(NativeFlowPolicy(config.native), config.rl)

    @property
    def flow(self) -> NativeFlowPolicy:
        return self.model.policy  # type: ignore[return-value]

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        """Flow-matching BC loss on batch["action"] [B, H, action_dim] (LeRobot's training contract)."""
        ctx = self.model.encode(self._obs(batch))
        loss = flow_matching_loss(self.flow, ctx, batch["action"])
        return loss, {"bc_loss": float(loss.detach())}
