"""The learning recipe a run asks for: `learner.preset`, `learner.rl_overrides` and `learner.demos`.

`apply_recipe(cfg, policy)` runs once, right after the learner builds its policy and before the trainer
exists (the trainer reads `policy.rl` when it is built):

- `learner.preset = "robot_minute"`: `robot_minute_preset(policy.rl)` (app/rl/config_robot_minute.py:
  replay with decoupled PPO and a dual clip, critic pre-training steps, AWR, the demo anchor) and, while
  `algorithm.chunks_per_update` is at its default, `ROBOT_MINUTE_LEARNER_OVERRIDES`;
- `learner.rl_overrides`: dotted `policy.rl` keys set after that (the way to change the PI-RL settings of a
  policy given as `policy_path`, e.g. an ablation `{"anchor.coef": 0}`).

The changed settings are written into the policy's own config object, so the trainer, the checkpoints'
`pretrained_model/config.json` and the learner's log all show what really trains.

`DemoSetup` holds the demonstrations (`learner.demos`, app/learner/demos.py): `pretrain(algorithm)` runs
`pretrain_critic` once (a fresh run, before its first update) and `anchor(algorithm)` sets the anchor batch
(at start and after every resume: the anchor is not checkpointed).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from app.rl.algorithm import PIRLAlgorithmConfig, pirl_model_of
from app.rl.config_robot_minute import ROBOT_MINUTE_LEARNER_OVERRIDES, robot_minute_preset
from app.run.config import PIRLRunConfig

ROBOT_MINUTE = "robot_minute"

# `policy.rl` options an override may not change, by first key: the actors sample with them (method, chain
# length, the exploration noise, the chunk they execute) from the policy's own config, which
# `learner.rl_overrides` does not reach, and the model reads the rest when it is built (the heads' sizes and
# the noise bounds, the trainable set). Changed on the learner alone they would be ignored, or would make
# the learner score chunks the actors did not sample. They belong in the policy's config.
FIXED_AT_BUILD = (
    "method",
    "num_steps",
    "exec_horizon",
    "logprob_reduce",
    "include_prior",
    "noise",
    "sde",
    "value_hidden",
    "trainable",
)


def apply_recipe(cfg: PIRLRunConfig, policy: Any) -> list[str]:
    """Apply the preset and overrides to `policy`'s PI-RL settings (in place) and to `cfg.algorithm`.
    Returns one line per change, for the learner's log."""
    rl = pirl_model_of(policy).cfg
    lc = cfg.learner
    new = copy.deepcopy(rl)
    said: list[str] = []
    if lc.preset == ROBOT_MINUTE:
        new = robot_minute_preset(new)
        said.append("preset robot_minute: replay + decoupled PPO, critic pre-training, AWR, demo anchor")
        default_cpu = PIRLAlgorithmConfig.__dataclass_fields__["chunks_per_update"].default
        if isinstance(cfg.algorithm, PIRLAlgorithmConfig) and cfg.algorithm.chunks_per_update == default_cpu:
            for key, value in ROBOT_MINUTE_LEARNER_OVERRIDES.items():
                setattr(cfg.algorithm, key, value)
                said.append(f"algorithm.{key}={value}")
    for key, value in lc.rl_overrides.items():
        _set_dotted(new, key, value)
        said.append(f"policy.rl.{key}={value}")
    if not said:
        return said
    for sub in ("replay", "critic_pretrain", "awr", "anchor"):
        getattr(new, sub).__post_init__()  # re-check what was set
    new.validate("policy.rl")
    for f in dataclasses.fields(rl):  # in place: the model and the policy config share this object
        setattr(rl, f.name, getattr(new, f.name))
    return said


def _set_dotted(obj: Any, key: str, value: Any) -> None:
    *path, leaf = key.replace("__", ".").split(".")
    if (path or [leaf])[0] in FIXED_AT_BUILD:
        raise ValueError(
            f"learner.rl_overrides: policy.rl.{key} is fixed when the policy is built and the actors sample "
            "with it, so the learner alone cannot change it; set it in the policy's config "
            f"(--policy.rl.{key}=... with an inline policy, or in the policy folder's config.json)"
        )
    for part in path:
        if not hasattr(obj, part):
            raise ValueError(f"learner.rl_overrides: policy.rl has no option {key!r}")
        obj = getattr(obj, part)
    if not hasattr(obj, leaf):
        raise ValueError(f"learner.rl_overrides: policy.rl has no option {key!r}")
    current = getattr(obj, leaf)
    if isinstance(current, bool) and not isinstance(value, bool):
        raise ValueError(f"learner.rl_overrides: {key} takes true/false, got {value!r}")
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(current, tuple) and isinstance(value, list):
        value = tuple(value)
    setattr(obj, leaf, value)


class DemoSetup:
    """The run's demonstrations, loaded once: critic pre-training rows and the anchor batch."""

    def __init__(self, cfg: PIRLRunConfig, policy: Any) -> None:
        from app.learner.demos import anchor_batch, demo_rows, is_success, load_demos

        model = pirl_model_of(policy)
        if getattr(policy, "prepare_observation", None) is not None:
            raise ValueError(
                "learner.demos: demonstrations for a VLA policy (task tokens) are not supported yet; "
                "use them with `pirl bc` for the native policy, or leave learner.demos empty"
            )
        image_keys = list(cfg.actor.image_keys) or list(getattr(policy, "image_keys", []) or [])
        reward = float(model.cfg.awr.success_reward)
        episodes = load_demos(cfg.learner.demos, image_keys, success_reward=reward)
        self.episodes = len(episodes)
        self.successes = sum(is_success(ep, reward) for ep in episodes)
        self.steps = sum(int(ep["action"].shape[0]) for ep in episodes)
        self.rows = demo_rows(episodes, model, success_reward=reward)
        self.anchor_data = anchor_batch(episodes, model.policy.chunk_size)

    def describe(self) -> str:
        return (
            f"{self.episodes} demos ({self.successes} successful, {self.steps} steps): "
            f"{len(self.rows)} critic pre-training rows, {self.anchor_data['action'].shape[0]} anchor chunks"
        )

    def pretrain(self, algorithm: Any, say: Any = None) -> dict[str, float]:
        """`pretrain_critic` on the demo rows (`policy.rl.critic_pretrain.steps`; 0: nothing runs)."""
        steps = int(algorithm.model.cfg.critic_pretrain.steps)
        if steps <= 0:
            return {}
        metrics = algorithm.pretrain_critic(self.rows)
        if say is not None:
            say(
                f"learner: critic pre-trained on the demos ({steps} steps): value MSE "
                f"{metrics['critic_pretrain/value_mse_before']:.4f} -> {metrics['critic_pretrain/value_mse_after']:.4f}"
            )
        return metrics

    def anchor(self, algorithm: Any) -> bool:
        """Set the anchor batch when the anchor is on (`policy.rl.anchor.coef` > 0)."""
        if algorithm.model.cfg.anchor.coef <= 0:
            return False
        algorithm.set_anchor_batch(self.anchor_data)
        return True
