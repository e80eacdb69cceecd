"""What a learner checkpoint keeps of the policy: its trainable tensors, never the frozen base.

A PIRLModel trains a subset of its parameters (`PIRLConfig.trainable`); everything else (a VLA's vision-
language backbone, the native encoder) is rebuilt bit-identically from the run config (same seed, same
`policy_path` / `base_path`), the way the actor rebuilds it. So a checkpoint stores only

    state["trainable"]   {parameter name: tensor} of the trainable subset (CPU), as PIRLModel names them

plus, in its meta.json, `frozen_digest` (`app.rl.digests.frozen_digest` of the model it was taken from)
and `weights_digest` of the trainable tensors. `restore_policy_state` puts the tensors back into a freshly
built policy and proves both halves: the rebuilt frozen part matches the recorded digest (else the base
changed since training: another seed, `policy_path`, `base_path` or `trainable` list) and the loaded
trainable tensors match theirs. Checkpoints written before this layout (format 1) hold the whole policy
`state_dict` under "policy"; they still load.

Pure torch: used by the learner (resume) and by `pirl eval` (a checkpoint without `pretrained_model/`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from app.rl.digests import frozen_digest, weights_digest

# Layout version recorded in meta.json ("format"); a checkpoint without it is format 1 (full state dict).
STATE_FORMAT = 2
TRAINABLE_KEY = "trainable"
LEGACY_POLICY_KEY = "policy"


class CheckpointMismatchError(RuntimeError):
    """The checkpoint does not belong to the policy it is being loaded into; the message says why."""


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trainable tensors of `model` (a PIRLModel) for torch.save, on the CPU.

    CPU parameters are not copied (nothing trains while a checkpoint is written), unless one is a view of
    a larger storage: torch.save writes whole storages, so such a view is cloned to keep the file at the
    size of the tensors themselves."""
    out: dict[str, torch.Tensor] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        t = p.detach().to("cpu")
        if t.untyped_storage().nbytes() != t.numel() * t.element_size() or not t.is_contiguous():
            t = t.clone(memory_format=torch.contiguous_format)
        out[name] = t
    return out


def tensor_bytes(state: dict[str, torch.Tensor]) -> int:
    """Bytes of the tensor data in a flat state dict."""
    return sum(t.numel() * t.element_size() for t in state.values())


def restore_policy_state(
    policy: Any,
    state: dict[str, Any],
    meta: dict[str, Any],
    source: str | Path,
    frozen: str | None = None,
) -> str:
    """Load a checkpoint's policy tensors into `policy` (built from the run config); return its frozen digest.

    `source` names the checkpoint in errors. `frozen` is `frozen_digest(policy.model)` when the caller has
    it already (hashing a VLA's frozen base takes seconds). Raises CheckpointMismatchError when the
    trainable names, the frozen base or the restored weights differ from what the checkpoint recorded."""
    model = policy.model
    meta_file = Path(source) / "meta.json"
    if TRAINABLE_KEY in state:
        saved = state[TRAINABLE_KEY]
        have = {n for n, p in model.named_parameters() if p.requires_grad}
        if set(saved) != have:
            missing, extra = sorted(have - set(saved)), sorted(set(saved) - have)
            raise CheckpointMismatchError(
                f"checkpoint {source} trained other parameters than this policy trains "
                f"(policy.rl.trainable changed?): not in the checkpoint {missing[:5]}"
                f"{' ...' if len(missing) > 5 else ''}, only in the checkpoint {extra[:5]}"
                f"{' ...' if len(extra) > 5 else ''}"
            )
        frozen = frozen or frozen_digest(model)
        expected = meta.get("frozen_digest")
        if expected is not None and frozen != expected:
            raise CheckpointMismatchError(
                f"the frozen part of the policy rebuilt from the run config (digest {frozen}) is not the one "
                f"checkpoint {source} was trained on ({meta_file} records frozen_digest {expected}): the "
                "checkpoint stores only the trainable tensors, so the base must be rebuilt identically. "
                "Use the run's own seed, policy_path / policy.base_path (same files) and policy.rl.trainable"
            )
        model.load_trainable_state(saved)
    elif LEGACY_POLICY_KEY in state:  # format 1: the whole policy state dict
        policy.load_state_dict(state[LEGACY_POLICY_KEY])
        frozen = frozen_digest(model)
    else:
        raise CheckpointMismatchError(
            f"checkpoint {source}: its state.pt holds no policy tensors (keys {sorted(state)})"
        )
    digest = weights_digest(model.trainable_tensors())
    expected = meta.get("weights_digest")
    if expected is not None and digest != expected:
        raise CheckpointMismatchError(
            f"checkpoint {source} did not restore the weights it recorded: digest {digest}, {meta_file} "
            f"says {expected}"
        )
    return frozen
