"""Sharded optimiser state for data-parallel PI-RL learners (ZeRO stage 1, torch's own engine).

With `learner.distributed.strategy=zero1` every rank still holds the whole model and computes its share of
each minibatch with the gradients SUM all-reduced (app/rl/data_parallel.py), but the AdamW state of the
trainable subset (two fp32 moments per trainable weight: 8 bytes each, twice the fp32 weights themselves)
is split across the ranks: each rank keeps the moments of about 1/N of the trainable parameters, steps
only those, and broadcasts the new values to the others. That is
`torch.distributed.optim.ZeroRedundancyOptimizer` wrapping AdamW with the trainer's own parameter groups
(actor_lr / value_lr) and settings; this module adds only what the learner's checkpoints need:

- `shard_optimizer` swaps a trainer's plain AdamW for a `ShardedAdamW` over the same groups and carries
  over whatever state it had (a resumed run's moments), each rank keeping its own shard;
- `ShardedAdamW.load_state_dict` takes a whole (single-process format) optimiser state and keeps this
  rank's shard (never mutating the caller's dict, never holding a second copy of the shard);
- `ShardedAdamW.state_dict` returns the whole state in the single-process format, but only on rank 0
  right after `consolidate()` (a collective every rank calls) and before the next step: a stale or
  partial gather is refused rather than saved. So a checkpoint is the same whoever wrote it and resumes
  on any rank count.

Why not FSDP (`torch.distributed.fsdp.fully_shard`): FSDP keeps weights sharded and gathers a unit's
weights in the pre-hook of that unit's `forward()`. The trainer calls several model methods per step
(encode, the value head, chain re-scoring, flow matching) rather than one `forward()`, and LeRobot's pi0 /
pi0.5 run their decoder layers by calling each layer's submodules (`layer.self_attn.q_proj(...)`,
`layer.mlp(...)`) from outside the layer, so layer-level units would never be gathered; units at the level
of single Linear layers would be hundreds of small all-gathers per step. The weight push, the digests and
the checkpoints also read whole tensors on rank 0. For the VLAs the trainable subset is the small part
(pi0's action expert and heads, ~0.3 B of ~3.5 B parameters): its fp32 weights and gradients cost little
next to the frozen base, and its AdamW state (twice its weights) is what zero1 divides by N.

Pure torch + torch.distributed; nothing here runs in a single process.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch.distributed.optim import ZeroRedundancyOptimizer


class ShardedAdamW(ZeroRedundancyOptimizer):
    """AdamW whose state is split across the ranks of the default process group (module docstring).

    `param_groups` is the whole set (every rank clips and reduces the same gradients); `optim` is this
    rank's local AdamW over its shard."""

    def __init__(self, groups: list[dict[str, Any]], group: Any = None, **defaults: Any):
        super().__init__(groups, torch.optim.AdamW, process_group=group, **defaults)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep this rank's shard of a whole optimiser state (the single-process format)."""
        # torch's version writes None over the other ranks' entries of the dict it is given: copy it
        state = dict(state_dict, state=dict(state_dict["state"]))
        super().load_state_dict(state)
        # ... and keeps a second reference to every entry in the wrapper's own `state`, which nothing reads
        # (`state_dict` rebuilds it from the consolidated shards): drop it, so the shard is held once
        self.state.clear()

    def consolidate(self) -> None:
        """Gather every rank's shard on rank 0 (every rank must call it, in the same order)."""
        try:
            self.consolidate_state_dict(to=0)
        except BaseException:
            self._all_state_dicts = []  # a gather cut off by a lost rank must not be saved as whole
            raise

    @property
    def consolidated(self) -> bool:
        """Whether `state_dict` would return the whole, current state (rank 0, after `consolidate`)."""
        return len(self._all_state_dicts) == self.world_size

    def release(self) -> None:
        """Drop the gathered copy (host memory the size of the whole optimiser state on rank 0)."""
        self._all_state_dicts = []

    def state_dict(self) -> dict[str, Any]:
        if not self.consolidated:
            raise RuntimeError(
                "the sharded optimiser state is not gathered (or an optimiser step ran since): call "
                "consolidate() on every rank first; only rank 0 holds the whole state"
            )
        return super().state_dict()

    def step(self, closure: Any = None, **kwargs: Any) -> Any:
        self._all_state_dicts = []  # a gathered state is stale after a step: refuse to save it
        return super().step(closure, **kwargs)

    def local_state_numel(self) -> int:
        """Elements of this rank's optimiser state tensors (its moments; the step counters excluded)."""
        return sum(
            t.numel()
            for s in self.optim.state.values()
            for t in s.values()
            if torch.is_tensor(t) and t.dim() > 0
        )

    def local_state_bytes(self) -> int:
        return sum(
            t.numel() * t.element_size()
            for s in self.optim.state.values()
            for t in s.values()
            if torch.is_tensor(t) and t.dim() > 0
        )


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the optimiser state THIS process holds: its shard for a `ShardedAdamW`, all of it for a
    plain optimiser (step counters excluded)."""
    if isinstance(optimizer, ShardedAdamW):
        return optimizer.local_state_bytes()
    return sum(
        t.numel() * t.element_size()
        for s in optimizer.state.values()
        for t in s.values()
        if torch.is_tensor(t) and t.dim() > 0
    )


def check_shardable(optimizer: torch.optim.Optimizer) -> None:
    """ValueError (one line) unless `shard_optimizer` can shard `optimizer`: an AdamW whose parameters
    share one dtype and device (ZeroRedundancyOptimizer's rule). A VLA whose base LeRobot built in
    bfloat16 trains a bf16 expert next to pirl's fp32 heads: build it in float32 (and hold the frozen
    base in bf16 with learner.distributed.frozen_dtype), or use ddp."""
    if not isinstance(optimizer, torch.optim.AdamW):
        raise ValueError(f"zero1 shards an AdamW; the trainer has a {type(optimizer).__name__}")
    kinds = {(p.dtype, p.device) for g in optimizer.param_groups for p in g["params"]}
    if len(kinds) > 1:
        raise ValueError(
            "learner.distributed.strategy=zero1 needs every trainable parameter in one dtype on one device; "
            f"this policy trains {', '.join(sorted(f'{d} on {v}' for d, v in kinds))} (build the policy in "
            "float32, or use strategy=ddp)"
        )


def shard_optimizer(optimizer: torch.optim.Optimizer, group: Any = None) -> ShardedAdamW:
    """A `ShardedAdamW` over `optimizer`'s parameter groups and settings, holding this rank's shard of its
    state (if it has any: a resumed run's). Every rank must build it over the same groups, in the same
    order, so each assigns every parameter to the same owner. All trainable parameters must share one
    dtype and device (ZeroRedundancyOptimizer's rule)."""
    if isinstance(optimizer, ShardedAdamW):
        return optimizer
    check_shardable(optimizer)
    groups = [dict(g) for g in optimizer.param_groups]  # params and per-group settings (lr, name, ...)
    accepted = inspect.signature(torch.optim.AdamW).parameters  # its defaults also hold derived keys
    defaults = {k: v for k, v in optimizer.defaults.items() if k in accepted and k != "params"}
    sharded = ShardedAdamW(groups, group=group, **defaults)
    if optimizer.state:
        sharded.load_state_dict(optimizer.state_dict())
    return sharded
