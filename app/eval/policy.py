"""The policy under evaluation: loading a checkpoint folder and checking it fits the robot before anything
moves."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

STATE = "observation.state"
IMAGES = "observation.images."


class EvalError(RuntimeError):
    """The evaluation cannot run as configured; the message says what to change."""


def load_policy(path: str | Path) -> tuple[Any, Callable | None, Callable | None]:
    """A LeRobot pretrained folder -> (policy in eval mode, preprocessor, postprocessor).

    pirl_flow policies normalise inside the model, so they need no processors. Other LeRobot policies
    (e.g. LeRobot SAC checkpoints) are run through the processor pipelines saved next to them, when there.
    """
    from lerobot.configs.policies import PreTrainedConfig

    from app.run.registry import register_choices

    register_choices()
    try:
        pcfg = PreTrainedConfig.from_pretrained(path)
    except Exception as exc:  # draccus decoding errors, unknown policy types
        raise EvalError(f"--policy {path}: config.json is not a LeRobot policy config ({exc})") from exc
    pcfg.device = "cuda" if torch.cuda.is_available() and pcfg.device == "cuda" else "cpu"
    if pcfg.type == "pirl_flow":
        from app.rl.lerobot_policy import PIRLFlowPolicy as policy_cls
    elif pcfg.type == "pirl_vla":  # a VLA trained by PI-RL (its pre-processor runs in ChunkPlanner.plan)
        from app.rl.vla_policy import PIRLVLAPolicy as policy_cls
    else:
        from lerobot.policies.factory import get_policy_class

        policy_cls = get_policy_class(pcfg.type)
    try:
        policy = policy_cls.from_pretrained(path, config=pcfg).eval()
    except Exception as exc:  # missing/mismatched tensors in model.safetensors
        raise EvalError(
            f"--policy {path}: the weights do not load into a {pcfg.type} policy ({exc})"
        ) from exc
    pre = post = None
    if not has_pirl_model(policy) and (Path(path) / "policy_preprocessor.json").is_file():
        from lerobot.policies.factory import make_pre_post_processors

        pre, post = make_pre_post_processors(pcfg, pretrained_path=str(path))
    return policy, pre, post


def has_pirl_model(policy: Any) -> bool:
    from app.rl.model import PIRLModel

    return isinstance(getattr(policy, "model", None), PIRLModel)


def policy_io(policy: Any) -> tuple[int, int, list[str], bool]:
    """(state size, action size, camera names, needs environment_state) from the policy's features."""
    feats = dict(getattr(policy.config, "input_features", {}) or {})
    out = dict(getattr(policy.config, "output_features", {}) or {})
    if STATE not in feats or "action" not in out:
        raise EvalError(
            f"the policy ({policy.config.type}) has no {STATE!r} input or 'action' output feature; pirl eval "
            "runs joint-state policies"
        )
    cams = [k.removeprefix(IMAGES) for k in feats if k.startswith(IMAGES)]
    needs_env = "observation.environment_state" in feats
    return int(feats[STATE].shape[0]), int(out["action"].shape[0]), cams, needs_env


def check_compatible(
    policy: Any, robot: Any, state_keys: list[str], action_keys: list[str], image_keys: list[str]
) -> None:
    """Refuse a policy that does not fit the robot, before anything moves; say what fits."""
    state_dim, action_dim, cams, needs_env = policy_io(policy)
    rtype = getattr(getattr(robot, "config", None), "type", type(robot).__name__)
    if needs_env:
        raise EvalError("the policy reads observation.environment_state, which pirl's robots do not provide")
    if state_dim != len(state_keys):
        raise EvalError(
            f"state size mismatch: the policy expects {STATE} of {state_dim} values, the robot ({rtype}) gives "
            f"{len(state_keys)} ({', '.join(state_keys)}). Evaluate on the robot/task it was trained for, "
            "or list the keys it was trained on with --state_keys='[...]'"
        )
    if action_dim != len(action_keys):
        raise EvalError(
            f"action size mismatch: the policy outputs {action_dim} values, the robot ({rtype}) takes "
            f"{len(action_keys)} ({', '.join(action_keys)})"
        )
    missing = [k for k in cams if k not in image_keys]
    if missing:
        raise EvalError(f"the policy needs cameras {missing}; pass --image_keys='{cams}'")
    feats = robot.observation_features
    for key in image_keys:
        shape = feats.get(key)
        if not isinstance(shape, tuple) or len(shape) != 3:
            have = [k for k, v in feats.items() if isinstance(v, tuple)]
            raise EvalError(f"camera {key!r} is not an image observation of {rtype}; its cameras: {have}")
