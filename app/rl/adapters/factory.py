"""Pick the adapter for a LeRobot VLA policy, and build its LeRobot processors without a hub.

LeRobot's pi0 / pi0.5 processor factories hard-code the PaliGemma tokenizer's hub name; a pirl run that
is offline (or uses its own tokenizer) passes a tokenizer object instead, and we swap it into LeRobot's
own pipeline so every other step (renaming, batching, normalisation, pi0.5's state-in-prompt) is LeRobot's.
"""

from __future__ import annotations

import functools
from typing import Any
from unittest import mock

from app.rl.adapters.base import LeRobotVLAAdapter


def make_adapter(policy: Any, **kwargs: Any) -> LeRobotVLAAdapter:
    """SmolVLAAdapter for a SmolVLAPolicy, PI0Adapter for a PI0Policy / PI05Policy; `kwargs` go to the
    adapter (noise_features, value_source)."""
    name = getattr(policy, "name", None)
    if name == "smolvla":
        from app.rl.adapters.smolvla import SmolVLAAdapter

        return SmolVLAAdapter(policy, **kwargs)
    if name in ("pi0", "pi05"):
        from app.rl.adapters.pi0 import PI0Adapter

        return PI0Adapter(policy, **kwargs)
    raise ValueError(
        f"no PI-RL adapter for policy type {name!r} ({type(policy).__name__}); supported: smolvla, pi0, pi05 "
        f"(the native flow policy is app.rl.native.NativeFlowPolicy)"
    )


def make_processors(
    policy: Any, tokenizer: Any | None = None, dataset_stats: dict[str, dict[str, Any]] | None = None
) -> tuple[Any, Any]:
    """LeRobot's own (pre-processor, post-processor) pair for `policy`.

    SmolVLA reads its tokenizer from `config.vlm_model_name` (a local folder works). For pi0 / pi0.5 pass
    `tokenizer` (any Hugging Face tokenizer object); without one LeRobot downloads PaliGemma's.
    """
    cfg = policy.config
    if policy.name == "smolvla":
        from lerobot.policies.smolvla.processor_smolvla import make_smolvla_pre_post_processors

        return make_smolvla_pre_post_processors(cfg, dataset_stats)
    if policy.name == "pi0":
        from lerobot.policies.pi0 import processor_pi0 as mod

        factory = mod.make_pi0_pre_post_processors
    elif policy.name == "pi05":
        from lerobot.policies.pi05 import processor_pi05 as mod

        factory = mod.make_pi05_pre_post_processors
    else:
        raise ValueError(f"no processors for policy type {policy.name!r}; supported: smolvla, pi0, pi05")
    if tokenizer is None:
        return factory(cfg, dataset_stats)
    step = functools.partial(mod.TokenizerProcessorStep, tokenizer=tokenizer)
    with mock.patch.object(mod, "TokenizerProcessorStep", step):
        return factory(cfg, dataset_stats)
