"""Robot observation dict (LeRobot units) -> the policy's tensors: one layout for the actor, BC
pre-training, evaluation and the demo, so a policy trained on demos sees the same vector online.

`observation.state` is the robot's float features in a fixed order (by default the joints "<motor>.pos"
followed by the task's extra keys, e.g. "target.x"), and cameras become `observation.images.<key>` as float
[3, H, W] in 0..1. The key names are the native policy's (app.rl.native).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from app.rl.native import IMAGE_PREFIX, STATE_KEY


def default_state_keys(robot: Any) -> list[str]:
    """Every float feature of the robot, joints first (action order), then the rest in declared order."""
    feats = robot.observation_features
    joints = [k for k in robot.action_features if k in feats]
    extra = [k for k, v in feats.items() if v is float and k not in joints]
    return joints + extra


def resolve_state_keys(robot: Any, configured: Sequence[str]) -> list[str]:
    keys = list(configured) or default_state_keys(robot)
    missing = [k for k in keys if k not in robot.observation_features]
    if missing:
        raise ValueError(
            f"actor.state_keys {missing} are not observations of {type(robot).__name__}; "
            f"it has {sorted(robot.observation_features)}"
        )
    return keys


def to_policy_observation(
    obs: Mapping[str, Any], state_keys: Sequence[str], image_keys: Sequence[str] = ()
) -> dict[str, torch.Tensor]:
    """One robot observation -> a batch of one for the policy."""
    out = {STATE_KEY: torch.tensor([[float(obs[k]) for k in state_keys]], dtype=torch.float32)}
    for key in image_keys:
        frame = np.asarray(obs[key])
        if frame.ndim != 3 or frame.shape[-1] != 3:
            raise ValueError(f"camera {key!r} gave shape {frame.shape}; expected HxWx3 uint8")
        img = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).float().div_(255.0)
        out[IMAGE_PREFIX + key] = img.unsqueeze(0)
    return out
