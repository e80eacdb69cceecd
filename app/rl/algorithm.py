"""PI-RL as a LeRobot `RLAlgorithm`, registered as `--algorithm.type=pirl` next to LeRobot's `sac`.

LeRobot's contract (`lerobot.rl.algorithms.base`): the learner builds the algorithm around a policy, calls
`make_optimizers_and_scheduler()` once, `update(batch_iterator)` per training step, and ships
`get_weights()` to the actors, who apply it with `load_weights()`. PI-RL fits it like this:

- the policy is any LeRobot policy that carries a `PIRLModel` as `.model` (the native `pirl_flow`
  policy of `app.rl.lerobot_policy`, or `pirl_vla` of `app.rl.vla_policy`, which wraps SmolVLA/pi0/pi05);
- `update()` takes ONE on-policy `RolloutBatch` from the iterator (the learner loop builds it from whole
  episodes) and runs `PIRLTrainer.update` (GAE, staleness mask, PPO/GRPO epochs); the PPO settings
  live in the policy config (`--policy.rl.*`) so a checkpoint carries them; this config holds what
  only the learner needs;
- `get_weights()` is the trainable subset only (expert, heads), tagged with the policy version;
- with `--policy.rl.replay.enabled=true` the batch holds the NEW episodes only: the trainer keeps a replay
  buffer (saved in `training_state()`) and trains on it at the configured update-to-data ratio. Before the
  first update, call `pretrain_critic(episodes)` and `set_anchor_batch(demo_chunks)` when the robot-minute
  preset is on (`app/rl/config_robot_minute.py`, docs/algorithm.md "Learning in robot minutes").

LeRobot's `make_algorithm` only knows "sac", so `make_algorithm` here dispatches "pirl" to us and
everything else to LeRobot.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from lerobot.configs.policies import PreTrainedConfig
from lerobot.rl.algorithms.base import RLAlgorithm
from lerobot.rl.algorithms.configs import RLAlgorithmConfig, TrainingStats

from app.rl.batch import RolloutBatch
from app.rl.model import PIRLModel
from app.rl.trainer import PIRLTrainer

ALGORITHM_TYPE = "pirl"


@RLAlgorithmConfig.register_subclass(ALGORITHM_TYPE)
@dataclass
class PIRLAlgorithmConfig(RLAlgorithmConfig):
    """Learner-side settings of PI-RL. PPO/GRPO hyper-parameters are in `--policy.rl.*`."""

    # On-policy batch: the learner updates once it holds at least this many chunks (whole episodes;
    # the paper uses 2048 in simulation). Larger = steadier updates, fewer weight pushes.
    chunks_per_update: int = 64
    # Episodes whose newest chunk is more than this many versions older than the weights being trained
    # are dropped whole (they teach the policy loss nothing and their values come from an old critic).
    # Chunks within `policy.rl.staleness.max_staleness` versions train; older chunks of a kept episode
    # only shape returns/critic (the trainer masks them from the surrogate).
    drop_episode_after_versions: int = 2
    # Push weights to actors in bfloat16 (half the bytes; actors cast back to their dtype).
    push_bf16: bool = False
    # Seed of the trainer's minibatch shuffling.
    seed: int = 0
    # Filled from --policy by the learner (LeRobot convention); not set in config files.
    policy_config: PreTrainedConfig | None = None

    @classmethod
    def from_policy_config(cls, policy_cfg: Any) -> PIRLAlgorithmConfig:
        return cls(policy_config=policy_cfg)

    def validate(self) -> None:
        if self.chunks_per_update < 1:
            raise ValueError(f"algorithm.chunks_per_update must be >= 1, got {self.chunks_per_update}")
        if self.drop_episode_after_versions < 0:
            raise ValueError("algorithm.drop_episode_after_versions must be >= 0")


def pirl_model_of(policy: Any) -> PIRLModel:
    model = getattr(policy, "model", None)
    if not isinstance(model, PIRLModel):
        raise TypeError(
            f"--algorithm.type=pirl needs a policy with a PIRLModel (--policy.type=pirl_flow, or "
            f"--policy.type=pirl_vla for SmolVLA/pi0/pi05); "
            f"{type(policy).__name__} has none"
        )
    return model


class PIRLAlgorithm(RLAlgorithm):
    config_class = PIRLAlgorithmConfig
    name = ALGORITHM_TYPE

    def __init__(self, policy: Any, config: PIRLAlgorithmConfig, policy_version: int = 0):
        config.validate()
        self.policy = policy
        self.config = config
        self.model = pirl_model_of(policy)
        self.trainer = PIRLTrainer(self.model, seed=config.seed, policy_version=policy_version)
        self.last_metrics: dict[str, float] = {}

    @property
    def policy_version(self) -> int:
        """Version of the weights the actors should be using (bumped by every update)."""
        return self.trainer.policy_version

    def update(self, batch_iterator: Iterator[RolloutBatch]) -> TrainingStats:
        batch = next(batch_iterator)
        metrics = self.trainer.update(batch, current_version=self.trainer.policy_version)
        self.optimization_step += 1
        self.last_metrics = metrics
        return TrainingStats(
            losses={k: v for k, v in metrics.items() if k.startswith("losses/")},
            extra={k: v for k, v in metrics.items() if not k.startswith("losses/")},
        )

    def pretrain_critic(self, episodes: RolloutBatch, steps: int | None = None) -> dict[str, float]:
        """Value head on Monte-Carlo returns of whole episodes (`PIRLTrainer.pretrain_critic`)."""
        return self.trainer.pretrain_critic(episodes, steps)

    def set_anchor_batch(self, data: dict[str, torch.Tensor] | None) -> None:
        """Fixed demo chunks of the anchor loss (`PIRLTrainer.set_anchor_batch`; not checkpointed)."""
        self.trainer.set_anchor_batch(data)

    def make_optimizers_and_scheduler(self) -> dict[str, torch.optim.Optimizer]:
        return self.get_optimizers()  # the trainer built its AdamW (actor / value-head groups) already

    def get_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"pirl": self.trainer.optimizer}

    def get_weights(self) -> dict[str, Any]:
        return self.model.get_trainable_state()

    def load_weights(self, weights: dict[str, Any], device: str | torch.device = "cpu") -> None:
        self.model.load_trainable_state(weights)

    def state_dict(self) -> dict[str, torch.Tensor]:
        # The heads are part of the policy (PIRLModel) and saved with it; nothing else is owned here.
        return {}

    def load_state_dict(
        self, state_dict: dict[str, torch.Tensor], device: str | torch.device = "cpu"
    ) -> None:
        if state_dict:
            raise ValueError(f"PI-RL owns no tensors outside the policy; got {sorted(state_dict)}")

    # -- checkpoint helpers (optimiser + version + counters; the policy is saved separately) -------
    def training_state(self) -> dict[str, Any]:
        return {"trainer": self.trainer.state_dict(), "optimization_step": self.optimization_step}

    def load_training_state(self, state: dict[str, Any]) -> None:
        self.trainer.load_state_dict(state["trainer"])
        self.optimization_step = int(state["optimization_step"])


def make_algorithm(cfg: RLAlgorithmConfig, policy: Any) -> RLAlgorithm:
    """LeRobot's `make_algorithm`, plus "pirl"."""
    if isinstance(cfg, PIRLAlgorithmConfig):
        if cfg.policy_config is None:
            cfg.policy_config = getattr(policy, "config", None)
        return PIRLAlgorithm(policy, cfg)
    from lerobot.rl.algorithms.factory import make_algorithm as lerobot_make_algorithm

    return lerobot_make_algorithm(cfg, policy)
