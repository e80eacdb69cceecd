"""Content digests of policy weights, the same on learner and actor.

Only the trainable subset travels with a weight push, so both sides must agree on everything else: the
actor compares `frozen_digest` of its own model with the learner's before it loads any weights, and the
learner's checkpoints record `weights_digest` of the trainable tensors so resume can prove it loaded them.
"""

from __future__ import annotations

import hashlib

import torch


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """A short content hash of a state dict (same on learner and actor for the same weights).

    Tensors are copied one at a time for hashing, so pass live tensors (`trainable_tensors()`), not a clone
    of the whole set: at 450M parameters a clone is 1.8 GB held only to compute this digest."""
    h = hashlib.sha1()
    for key in sorted(state):
        t = state[key].detach().to("cpu", torch.float32).contiguous()
        h.update(key.encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def frozen_digest(model: torch.nn.Module) -> str:
    """Fingerprint of what does not travel with pushed weights (frozen parameters and buffers)."""
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    return weights_digest({k: v for k, v in model.state_dict().items() if k not in trainable})
