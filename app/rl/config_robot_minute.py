"""Options of the "robot-minute" additions to PI-RL (replay, critic pre-training, AWR, anchor), and the preset.

Every option here defaults to OFF: a `PIRLConfig()` runs exactly the on-policy update of docs/algorithm.md
(a golden-run test pins it). `robot_minute_preset(cfg)` switches the new method on. What each option computes
is in docs/algorithm.md, section "Learning in robot minutes". These dataclasses are nested in `PIRLConfig`
as `rl.replay`, `rl.critic_pretrain`, `rl.awr`, `rl.anchor` (plus the int `rl.trainable_expert_layers`), so
draccus overrides look like `--policy.rl.replay.enabled=true --policy.rl.replay.utd=0.5`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any


@dataclass
class ReplayConfig:
    """Replay across policy versions, trained with decoupled PPO (`rl.staleness.decoupled`)."""

    # False: each update trains on the batch it is given and forgets it (today's on-policy PPO).
    # True: `PIRLTrainer.update(batch)` adds the batch's episodes to the trainer's ReplayBuffer and runs
    # `utd` x new chunks minibatch steps over the whole buffer (values, GAE targets and proximal log-probs
    # recomputed with the current weights at every update).
    enabled: bool = False
    # Buffer capacity in chunks (rows). When full, whole episodes leave oldest-inserted first (FIFO); the
    # batch just added always stays whole, even if it alone exceeds the capacity.
    capacity_chunks: int = 2048
    # Keep episodes from the last S policy versions that produced data, S in [1, 4]: an episode leaves once
    # its newest chunk's policy_version <= (newest version in the buffer) - S. 1 = only the newest data.
    max_versions: int = 2
    # Update-to-data ratio: gradient (minibatch) steps per NEW chunk. An update that adds n chunks runs
    # floor(utd * n + carry) steps (the fraction carries over to the next update), clamped to
    # [min_steps_per_update, max_steps_per_update]; each step samples `ppo.minibatch_size` buffer rows
    # without replacement within a pass. A chunk is one outer step = `exec_horizon` robot steps, so the
    # per-robot-step ratio is utd / exec_horizon. At steady state every chunk is in about
    # utd x minibatch_size gradient steps over its life in the buffer (on-policy PPO: ppo.epochs).
    utd: float = 0.5
    min_steps_per_update: int = 1
    max_steps_per_update: int = 256
    # Dual-clip PPO constant c > 1 for negative advantages: the per-row loss is capped at -c*A (Ye et al.
    # 2020), so a replayed row whose ratio exploded cannot dominate a minibatch. None: off. Part of the
    # replay recipe, but it applies to every PPO minibatch whenever it is set.
    dual_clip: float | None = None

    def __post_init__(self) -> None:
        if self.capacity_chunks < 1:
            raise ValueError(f"rl.replay.capacity_chunks must be >= 1, got {self.capacity_chunks}")
        if not 1 <= self.max_versions <= 4:
            raise ValueError(f"rl.replay.max_versions must be in [1, 4], got {self.max_versions}")
        if self.utd <= 0:
            raise ValueError(f"rl.replay.utd must be > 0, got {self.utd}")
        if not 0 <= self.min_steps_per_update <= self.max_steps_per_update or self.max_steps_per_update < 1:
            raise ValueError(
                "rl.replay needs 0 <= min_steps_per_update <= max_steps_per_update and max >= 1, got "
                f"{self.min_steps_per_update}, {self.max_steps_per_update}"
            )
        if self.dual_clip is not None and self.dual_clip <= 1.0:
            raise ValueError(f"rl.replay.dual_clip must be > 1 or null, got {self.dual_clip}")


@dataclass
class CriticPretrainConfig:
    """Defaults of `PIRLTrainer.pretrain_critic(episodes)`: the value head regressed on Monte-Carlo returns
    of given episodes (demos, BC rollouts) before the first update. Nothing runs unless the learner calls it."""

    steps: int = 0  # gradient steps (0: pretrain_critic does nothing)
    lr: float = 1e-3  # AdamW learning rate of this pre-training only (its own optimiser)
    batch_size: int = 256

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(
                f"rl.critic_pretrain needs steps >= 0, batch_size >= 1, lr > 0; got {self.steps}, "
                f"{self.batch_size}, {self.lr}"
            )


@dataclass
class AWRConfig:
    """Advantage-weighted flow matching on takeovers and successes, beside the PPO loss."""

    # Weight of the AWR loss in the total loss (0: off). The loss is mean_i w_i * FM_i over the AWR rows
    # of a minibatch, with w_i = min(exp(A_i / beta), max_weight) and FM_i the flow-matching error of the
    # row's executed actions (A: the advantage the surrogate sees, normalised when ppo.normalize_advantages).
    coef: float = 0.0
    beta: float = 1.0  # temperature: smaller = greedier (only clearly better-than-expected chunks count)
    max_weight: float = 20.0  # cap on exp(A / beta)
    # Human chunks: their executed human actions, only at the steps batch.human_steps() marks.
    human: bool = True
    # Policy chunks of successful episodes: their executed actions (the chain end x_K).
    success: bool = True
    # An episode is a success when its last row is `done` with (raw) reward >= this (the actor's
    # success_reward is 1.0 by default).
    success_reward: float = 1.0

    def __post_init__(self) -> None:
        if self.coef < 0 or self.beta <= 0 or self.max_weight <= 0:
            raise ValueError(
                f"rl.awr needs coef >= 0, beta > 0, max_weight > 0; got {self.coef}, {self.beta}, "
                f"{self.max_weight}"
            )


@dataclass
class AnchorConfig:
    """Flow-matching loss on a fixed demo batch (`PIRLTrainer.set_anchor_batch`) that keeps the policy near
    the behaviour it was cloned from while RL moves it."""

    # Weight at update u: max(coef * decay**u, min_coef), u = updates run by this trainer (0: off).
    coef: float = 0.0
    decay: float = 1.0  # per update, in (0, 1]; 1 keeps the weight constant
    min_coef: float = 0.0
    batch_size: int = 64  # rows drawn per gradient step (from the demos and, below, the successes)
    # Self-imitation: > 0 keeps up to this many chunks of the policy's own SUCCESSFUL episodes (observation
    # and executed chunk x_K, robot units, from every batch `update` gets, whatever its policy version) in
    # the anchor's pool beside the demos, oldest leaving first. The anchor then pulls the flow towards
    # actions that reached the goal from fresh initial noise x_0, which contracts the x_0-dependent spread
    # the deterministic ODE inherits from BC, and every success becomes a demo of a new scene (12 demos
    # generalise poorly). It needs `coef` > 0 (and works without demos). 0: the demos only (off).
    success_chunks: int = 0

    def __post_init__(self) -> None:
        if (
            self.coef < 0
            or self.min_coef < 0
            or not 0 < self.decay <= 1
            or self.batch_size < 1
            or self.success_chunks < 0
        ):
            raise ValueError(
                f"rl.anchor needs coef >= 0, min_coef >= 0, 0 < decay <= 1, batch_size >= 1, "
                f"success_chunks >= 0; got {self.coef}, {self.min_coef}, {self.decay}, {self.batch_size}, "
                f"{self.success_chunks}"
            )


# The new method, as dotted overrides of `rl` (what `robot_minute_preset` sets; usable as JSON/CLI values
# `--policy.rl.<key>=<value>`). Tuned on the toy bandit of tests/app/rl (see docs/algorithm.md).
ROBOT_MINUTE_OVERRIDES: dict[str, Any] = {
    "replay.enabled": True,
    "replay.capacity_chunks": 1024,
    "replay.max_versions": 4,
    "replay.utd": 0.5,
    "replay.dual_clip": 3.0,
    "staleness.decoupled": True,
    "staleness.max_staleness": 4,
    "staleness.max_behaviour_weight": 2.0,
    "awr.coef": 0.5,
    "awr.beta": 1.0,
    "awr.max_weight": 20.0,
    "anchor.coef": 0.1,
    "anchor.decay": 0.99,
    "critic_pretrain.steps": 500,
}
# Learner-side companion (PIRLAlgorithmConfig): update after every few episodes instead of 64 chunks.
ROBOT_MINUTE_LEARNER_OVERRIDES: dict[str, Any] = {"chunks_per_update": 16}


def robot_minute_preset(cfg: Any, **overrides: Any) -> Any:
    """A copy of PIRLConfig `cfg` with ROBOT_MINUTE_OVERRIDES applied (then `overrides`, dotted keys with
    "." or "__", e.g. replay__utd=0.5). `rl.trainable_expert_layers` is left alone: it depends on the model
    (2 is a good start for a VLA). The learner still has to call `pretrain_critic` and `set_anchor_batch`."""
    out = copy.deepcopy(cfg)
    merged = {**ROBOT_MINUTE_OVERRIDES, **{k.replace("__", "."): v for k, v in overrides.items()}}
    for key, value in merged.items():
        *path, leaf = key.split(".")
        obj = out
        for part in path:
            obj = getattr(obj, part)
        if not hasattr(obj, leaf):
            raise AttributeError(f"robot_minute_preset: rl has no option {key!r}")
        setattr(obj, leaf, value)
    for sub in (out.replay, out.critic_pretrain, out.awr, out.anchor):
        sub.__post_init__()  # re-validate what was set
    return out
