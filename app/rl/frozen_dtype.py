"""Hold a policy's frozen weight matrices in bf16 on a learner rank, the trainable subset staying as it is.

`learner.distributed.frozen_dtype=bfloat16` (app/learner/distributed.py calls `hold_frozen_in` on every
rank): for a VLA the frozen base is most of the model (pi0: ~3.2 B of ~3.5 B parameters), so fp32 -> bf16
halves most of each rank's weight memory, while the trainable subset (the action expert and the heads)
keeps fp32 weights, gradients and AdamW state.

How, without touching the model's code: every leaf module (no child modules) whose parameters are all
frozen and include a matrix (Linear, Embedding, Conv: the bulk of the bytes) gets its floating parameters
cast to bf16, a forward pre-hook that casts its floating inputs to bf16 and a forward hook that casts its
outputs back to the dtype its parameters had. So each such layer computes in bf16 and its callers see the
dtype they always saw. Norm layers and other vector-only leaves stay as they are (LeRobot also keeps norms
in fp32 when it runs pi0 in bf16). Trainable leaves get a pre-hook that casts a floating input of another
dtype to their own: LeRobot's pi0 / pi0.5 cast activations to bf16 when they find their language model's
weights in bf16, and those activations also reach the fp32 action expert.

What it changes: the learner's forward through the frozen base rounds to bf16 while the actors run the
base in the run config's dtype, so the first PPO ratios of an update are not exactly 1 (within bf16
rounding of the features; the clip absorbs it). The frozen digest the actors check is taken before the
cast (the base is still the one the run config builds), so pushes and resume work unchanged. A
`pretrained_model/` written by such a learner holds the rounded (bf16) base; the checkpoint's state.pt
plus the run config rebuild the exact one.

Pure torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

FROZEN_DTYPES = {"bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class FrozenCast:
    """What `hold_frozen_in` did: leaf modules cast, frozen parameter bytes before and after."""

    modules: int
    bytes_before: int
    bytes_after: int


def _cast(obj: Any, dtype: torch.dtype) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(dtype) if obj.is_floating_point() and obj.dtype != dtype else obj
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return tuple(_cast(o, dtype) for o in obj)
    if isinstance(obj, list):
        return [_cast(o, dtype) for o in obj]
    return obj


def _inputs_to(dtype: torch.dtype):
    def hook(_module, args, kwargs):
        return _cast(args, dtype), {k: _cast(v, dtype) for k, v in kwargs.items()}

    return hook


def _outputs_to(dtype: torch.dtype):
    def hook(_module, _args, output):
        return _cast(output, dtype)

    return hook


def frozen_bytes(model: torch.nn.Module) -> int:
    """Bytes of the frozen parameters of `model`."""
    return sum(p.numel() * p.element_size() for p in model.parameters() if not p.requires_grad)


def hold_frozen_in(model: torch.nn.Module, dtype: torch.dtype = torch.bfloat16) -> FrozenCast:
    """Cast the frozen weight-matrix leaves of `model` to `dtype` behind dtype-converting hooks (module
    docstring). Call once, after the trainable subset is chosen and before the optimiser is used."""
    before = frozen_bytes(model)
    cast = 0
    for module in model.modules():
        if next(module.children(), None) is not None:
            continue
        params = [p for p in module.parameters(recurse=False) if p.is_floating_point()]
        if not params:
            continue
        if any(p.requires_grad for p in params):
            own = params[0].dtype  # a trainable leaf: take other dtypes' inputs in its own
            module.register_forward_pre_hook(_inputs_to(own), with_kwargs=True)
            continue
        if not any(p.dim() >= 2 for p in params) or all(p.dtype == dtype for p in params):
            continue  # a norm or bias-only leaf, or already in `dtype`
        original = params[0].dtype
        for p in params:
            p.data = p.data.to(dtype)
        module.register_forward_pre_hook(_inputs_to(dtype), with_kwargs=True)
        module.register_forward_hook(_outputs_to(original))
        cast += 1
    return FrozenCast(cast, before, frozen_bytes(model))
