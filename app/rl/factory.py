"""The policy factory both processes use: a LeRobot policy that carries a PI-RL model.

It lives with the algorithm (not in the learner) because the actor, `pirl eval`, the demo and the
benchmarks all build the same policy from the same config and must get bit-identical weights.
"""

from __future__ import annotations

import contextlib
import importlib
from pathlib import Path
from typing import Any

import torch
from lerobot.configs.policies import PreTrainedConfig

# Importing these registers the `pirl_flow` and `pirl_vla` policy types with LeRobot's registry.
POLICY_MODULES = ("app.rl.lerobot_policy", "app.rl.vla_policy")


def register_policies() -> None:
    for name in POLICY_MODULES:
        importlib.import_module(name)


def make_policy(
    policy: PreTrainedConfig | None = None,
    policy_path: str | Path | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> Any:
    """The LeRobot policy both sides run, from a config (`policy`) or a pretrained folder (`policy_path`:
    a local folder or a Hugging Face hub id `owner/name[@revision]`, see `app.rl.hub.resolve_folder`).

    Same seed + same config (or same folder) = same weights, which matters because only the trainable
    subset travels; the actor checks a digest of the rest (`app.rl.digests.frozen_digest`)."""
    register_policies()
    if policy_path is not None:
        from app.rl.hub import resolve_folder

        policy_path = resolve_folder(policy_path)
        pcfg = PreTrainedConfig.from_pretrained(policy_path)
        policy_cls = _policy_class(pcfg)
        with contextlib.redirect_stdout(None):  # LeRobot prints "Loading weights from local directory"
            built = policy_cls.from_pretrained(policy_path, config=pcfg)
    else:
        if policy is None:
            raise ValueError("make_policy needs a policy config or a policy_path")
        torch.manual_seed(seed)
        built = _policy_class(policy)(policy)
    return built.to(device).eval()


def _policy_class(pcfg: PreTrainedConfig) -> type:
    if pcfg.type == "pirl_flow":
        from app.rl.lerobot_policy import PIRLFlowPolicy

        return PIRLFlowPolicy
    if pcfg.type == "pirl_vla":
        from app.rl.vla_policy import PIRLVLAPolicy

        return PIRLVLAPolicy
    if pcfg.type in ("smolvla", "pi0", "pi05"):
        # A bare VLA has no PI-RL heads, task or statistics: wrap it (see docs/recipes.md, recipes 4-5).
        raise ValueError(
            f"policy_path holds a bare {pcfg.type} policy; PI-RL runs it wrapped: --policy.type=pirl_vla "
            f"--policy.base_path=<that folder> --policy.task='<instruction>' "
            "--policy.stats_path=<dataset>/meta/stats.json (configs/vla/ has full run configs)"
        )
    from lerobot.policies.factory import get_policy_class

    return get_policy_class(pcfg.type)
