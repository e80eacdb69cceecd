"""Data-parallel gradients for PIRLTrainer: make each rank's share of a minibatch add up to the
single-process step. One job: split, weight and SUM all-reduce; the trainer keeps the update itself.

The scheme (wired by `PIRLTrainer.set_data_parallel`, itself called by app/learner/distributed.py under
torchrun): every rank holds the same weights and the same prepared batch (the trainer's steps 1-5 run on
every rank, so GAE and the advantage normalisation see the whole batch), draws the same minibatch indices
from the same generator, and runs the forward/backward of its contiguous share of each minibatch only
(`DataParallel.share`). Each loss term is a masked mean; a rank scales its share by (its rows in the term's
mask) / (the minibatch's rows in it) (`scaled`), so the SUM all-reduce of the gradients
(`DataParallel.reduce_grads`) is exactly the single-process gradient of the whole minibatch. The
loss-finite check and the diagnostics (and so `target_kl`) are reduced too (`DataParallel.reduce_stats`),
and the grad norm is taken on the reduced gradients, so every rank takes the same steps. The demo anchor
is drawn on rank 0 only (its term enters once). Not bitwise: BC/AWR flow-matching noise is drawn per rank.
With no data-parallel set (a single process) none of this code runs.

Why an explicit gradient all-reduce and not `DistributedDataParallel`: the trainer calls several methods
of the model per step (encode, the value head, the chain re-scoring, flow matching on human chunks, the
anchor), never one `forward()`, which is what DDP hooks; its conditional terms (BC only when a share holds
human chunks, the anchor) would also need `find_unused_parameters`. One flat all-reduce per dtype after
`backward()` is DDP's maths without those constraints, and keeps the single optimiser and its groups.

Pure torch + torch.distributed (imported lazily: a single process never touches it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from app.rl.trainer import PreparedBatch

# Diagnostics of one minibatch step and the loss term whose rows they average over (data-parallel reduce).
DP_STATS = {
    "losses/policy_loss": "policy",
    "losses/approx_kl": "policy",
    "losses/clipfrac": "policy",
    "losses/ratio_mean": "policy",
    "losses/dual_clipfrac": "policy",
    "losses/entropy": "policy",
    "losses/value_loss": "value",
    "losses/bc_loss": "bc",
    "losses/awr": "awr",
    "losses/anchor": "anchor",
}


@dataclass(frozen=True)
class DataParallel:
    """This process's place in a data-parallel update (module docstring): its rank among `world_size`
    ranks of an initialised torch.distributed process group (`group` None: the default group)."""

    rank: int
    world_size: int
    group: Any = None

    def share(
        self, p: PreparedBatch, idx: torch.Tensor, horizon: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """This rank's contiguous share of minibatch `idx` and each loss term's weight: its rows in the
        term's mask over the whole minibatch's (0 when the minibatch has none), so summed shares are the
        term's masked mean over the whole minibatch. `horizon`: the executed steps flow matching scores."""
        shares = idx.tensor_split(self.world_size)
        mine = shares[self.rank]
        pos = torch.zeros(len(idx), dtype=torch.bool, device=idx.device)
        start = sum(len(c) for c in shares[: self.rank])
        pos[start : start + len(mine)] = True
        counts: dict[str, torch.Tensor] = {
            "policy": p.policy_mask[idx],
            "value": torch.ones(len(idx), dtype=torch.bool, device=idx.device),
        }
        human = p.intervention[idx].view(-1, 1) & p.batch.human_steps()[idx][:, :horizon]
        counts["bc"] = human.sum(dim=1).float()  # flow matching averages over (row, step) positions
        if p.awr_rows is not None and p.awr_step_mask is not None:
            counts["awr"] = (
                (p.awr_rows[idx].view(-1, 1) & p.awr_step_mask[idx][:, :horizon]).sum(1) > 0
            ).float()
        w = {}
        for term, c in counts.items():
            total = float(c.float().sum())
            w[term] = float(c.float()[pos].sum()) / total if total > 0 else 0.0
        w["anchor"] = 1.0 if self.rank == 0 else 0.0
        return mine, w

    def reduce_stats(
        self, stats: dict[str, Any], w: dict[str, float], loss: torch.Tensor
    ) -> tuple[dict[str, float] | None, float]:
        """One SUM all-reduce of this rank's share-weighted diagnostics, its loss and whether that loss is
        finite: (the whole minibatch's diagnostics, its total loss), or (None, total) when the loss of
        some rank is not finite (every rank then skips the step)."""
        import torch.distributed as dist

        keys = list(DP_STATS)
        local = float(loss.detach())
        vals = [float(stats[k]) * w[DP_STATS[k]] if k in stats else 0.0 for k in keys]
        present = [1.0 if k in stats else 0.0 for k in keys]
        buf = torch.tensor([*vals, *present, local, float(not math.isfinite(local))], dtype=torch.float64)
        buf = buf.to(loss.device)
        dist.all_reduce(buf, group=self.group)
        out = buf.cpu().tolist()
        n = len(keys)
        if out[-1] > 0:
            return None, out[2 * n]
        return {k: out[i] for i, k in enumerate(keys) if out[n + i] > 0}, out[2 * n]

    def reduce_grads(self, params: list[torch.nn.Parameter]) -> None:
        """SUM all-reduce of the trainable gradients, one flat buffer per dtype. A parameter no rank
        gave a gradient keeps `.grad = None` (AdamW then leaves it alone, as in a single process)."""
        import torch.distributed as dist

        if not params:
            return
        device = params[0].device
        has = torch.tensor([float(q.grad is not None) for q in params], device=device)
        dist.all_reduce(has, group=self.group)
        by_dtype: dict[torch.dtype, list[torch.nn.Parameter]] = {}
        for q, h in zip(params, has.tolist(), strict=True):
            if h > 0:
                by_dtype.setdefault(q.dtype, []).append(q)
        for group in by_dtype.values():
            flat = torch.cat(
                [(q.grad if q.grad is not None else torch.zeros_like(q)).reshape(-1) for q in group]
            )
            dist.all_reduce(flat, group=self.group)
            offset = 0
            for q in group:
                q.grad = flat[offset : offset + q.numel()].view_as(q)
                offset += q.numel()


def data_parallel(rank: int, world_size: int, group: Any = None) -> DataParallel | None:
    """Rank `rank` of `world_size`, or None for world_size 1 (a single process: nothing to reduce)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"data-parallel rank must be in [0, {world_size}), got {rank}")
    return DataParallel(rank, world_size, group) if world_size > 1 else None


def scaled(term: torch.Tensor, w: dict[str, float] | None, name: str) -> torch.Tensor:
    """A loss term as this rank's share of it (data parallel), or unchanged (a single process)."""
    return term if w is None else term * w[name]
