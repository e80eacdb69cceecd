"""What a rollout must hold for this learner to train it (`rollout_spec`), and the episode meta check.

The service runs both on every rollout before accepting it (app/learner/validate.py); a rollout that fails
is refused with INVALID_ARGUMENT and never reaches the trainer.
"""

from __future__ import annotations

from typing import Any

import torch

from app.rl.batch import OBS_PREFIX, OPTIONAL_FIELDS, ChunkRecord, RolloutBatch
from app.transport.codec import DecodeError, FieldSpec, Rollout, RolloutSpec

IMAGE_OBS_PREFIX = OBS_PREFIX + "observation.images."


def rollout_spec(policy: Any) -> RolloutSpec:
    """What a rollout must hold to be trained by `policy`: the fields, dtypes and per-row shapes of a dry
    `RolloutBatch` built the way an actor builds one (`ChunkRecord` -> `RolloutBatch.from_records`) from a
    zero observation of the policy's input features (through its pre-processor for a VLA: task tokens and
    mask). Camera frames keep their channels; their height and width are free but fixed for the run (both
    encoders accept any size; a batch needs one). Integer ranges: chunk_index and policy_version >= 0,
    sde_step in [-1, K), language token ids below the tokenizer's size."""
    model = policy.model
    pol = model.policy
    k = int(model.cfg.num_steps)
    obs = _dry_observation(policy)
    record = ChunkRecord(
        obs={key: v[0] for key, v in obs.items()},
        reward=0.0,
        chain=torch.zeros(k + 1, pol.chunk_size, pol.model_action_dim),
    )
    template = RolloutBatch.from_records([record], pol.action_dim).to_dict()
    ranges: dict[str, tuple[int | None, int | None]] = {
        "chunk_index": (0, None),
        "policy_version": (0, None),
        "sde_step": (-1, k),
    }
    vocab = _vocabulary_size(policy)
    fields = {}
    for name, t in template.items():
        shape: tuple[int | None, ...] = tuple(int(d) for d in t.shape[1:])
        if name.startswith(IMAGE_OBS_PREFIX) and len(shape) == 3:
            shape = (shape[0], None, None)
        low, high = ranges.get(name, (None, None))
        if name.startswith(OBS_PREFIX) and not t.is_floating_point() and t.dtype != torch.bool:
            low, high = 0, vocab  # token ids index an embedding
        fields[name] = FieldSpec(t.dtype, shape, low, high)
    return RolloutSpec(fields, optional=OPTIONAL_FIELDS)


@torch.no_grad()
def _dry_observation(policy: Any) -> dict[str, torch.Tensor]:
    """A batch of one zero observation as the policy reads it (what the actor stores per row)."""
    from lerobot.configs import FeatureType

    feats = getattr(policy.config, "input_features", None) or {}
    raw = {
        key: torch.zeros(1, *feat.shape)
        for key, feat in feats.items()
        if key.startswith("observation.")
        and feat.type in (FeatureType.STATE, FeatureType.ENV, FeatureType.VISUAL)
    }
    prepare = getattr(policy, "prepare_observation", None)  # a VLA's LeRobot pre-processor, as the actor
    obs = prepare(raw) if prepare is not None else raw
    return {key: v.detach().cpu() for key, v in obs.items()}


def _vocabulary_size(policy: Any) -> int | None:
    """Size of the tokenizer of a VLA's pre-processor (None: no tokenizer)."""
    for step in getattr(getattr(policy, "preprocessor", None), "steps", ()) or ():
        tokenizer = getattr(step, "input_tokenizer", None) or getattr(step, "tokenizer", None)
        if tokenizer is not None:
            try:
                return len(tokenizer)
            except TypeError:
                return None
    return None


def check_meta(rollout: Rollout) -> None:
    steps = rollout.meta.get("steps", 0)
    if type(steps) is not int or not 0 <= steps < 2**40:
        raise DecodeError(
            f"transitions: meta 'steps' must be a non-negative integer, got {str(steps)[:40]!r}"
        )
