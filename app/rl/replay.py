"""Replay of whole episodes across policy versions, and the update-to-data (UTD) schedule.

`ReplayBuffer` holds RolloutBatch rows (whole episodes, every field kept: chains, behaviour log-probs and
versions for decoupled PPO, human actions for AWR). Eviction, in this order after every `add`:

1. versions: an episode leaves once its newest chunk's policy_version <= V_max - max_versions, V_max the
   newest version in the buffer (so it keeps "the last S versions that produced data");
2. capacity: while the buffer holds more than `capacity_chunks` rows, whole episodes leave, oldest-inserted
   first (FIFO; among one insertion, in batch order).

The episodes of the batch just added are never evicted by either rule (the newest data always trains, even
if it alone exceeds the capacity). Rows that repeat an (episode_id, chunk_index) already stored replace the
old row; an episode that receives rows again counts as inserted again.

`state_dict()` is a dict of plain tensors (survives torch.save + torch.load(weights_only=True));
`load_state_dict()` restores the buffer bit-exactly.

`UTDSchedule`: gradient steps per update = floor(utd * new_chunks + carry), the fraction carried to the
next update, clamped to [min_steps, max_steps]. `minibatch_schedule` draws the minibatches for those steps.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from app.rl.batch import RolloutBatch

DATA_PREFIX = "data."


class ReplayBuffer:
    """Whole episodes from the last `max_versions` policy versions, at most `capacity_chunks` rows."""

    def __init__(
        self, capacity_chunks: int, max_versions: int, device: torch.device | str | None = None
    ) -> None:
        if capacity_chunks < 1 or max_versions < 1:
            raise ValueError(
                f"ReplayBuffer needs capacity_chunks >= 1 and max_versions >= 1, got {capacity_chunks}, "
                f"{max_versions}"
            )
        self.capacity_chunks = int(capacity_chunks)
        self.max_versions = int(max_versions)
        self.device = None if device is None else torch.device(device)
        self._data: RolloutBatch | None = None
        self._seq = torch.zeros(0, dtype=torch.long)  # [N] insertion number of each row's episode
        self._next_seq = 0
        self.total_added = 0  # chunks ever added
        self.total_evicted = 0  # chunks ever evicted

    # -- contents ------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return 0 if self._data is None else len(self._data)

    @property
    def num_episodes(self) -> int:
        return 0 if self._data is None else int(torch.unique(self._data.episode_id).numel())

    def batch(self) -> RolloutBatch:
        """All stored rows (in insertion order; `PIRLTrainer.prepare` sorts them by episode)."""
        if self._data is None:
            raise ValueError("the replay buffer is empty")
        return self._data

    def staleness_histogram(self, version: int) -> dict[int, float]:
        """Fraction of stored chunks per age k = version - policy_version, for k = 0..max_versions; the
        last bin also holds older rows, bin 0 also holds rows from a newer version than `version`."""
        out = {k: 0.0 for k in range(self.max_versions + 1)}
        if self._data is None or len(self._data) == 0:
            return out
        age = (int(version) - self._data.policy_version.long()).clamp(0, self.max_versions)
        counts = torch.bincount(age.cpu(), minlength=self.max_versions + 1).double() / len(self._data)
        return {k: float(counts[k]) for k in range(self.max_versions + 1)}

    # -- adding and evicting -------------------------------------------------------------------------
    def add(self, batch: RolloutBatch) -> dict[str, int]:
        """Insert a batch (whole episodes), then evict by version and capacity. Returns counts."""
        if len(batch) == 0:
            return {"added": 0, "evicted_chunks": 0}
        if self.device is None:
            self.device = batch.reward.device
        batch = batch.to(self.device)
        seq = self._next_seq
        self._next_seq += 1
        new_seq = torch.full((len(batch),), seq, dtype=torch.long, device=self.device)
        if self._data is None or len(self._data) == 0:
            data, seqs = batch, new_seq
        else:
            old = self._data
            width = int(max(old.chunk_index.max(), batch.chunk_index.max())) + 1
            old_key = old.episode_id.long() * width + old.chunk_index.long()
            new_key = batch.episode_id.long() * width + batch.chunk_index.long()
            keep = ~torch.isin(old_key, new_key)
            old_seq = self._seq.to(self.device).clone()
            old_seq[torch.isin(old.episode_id, batch.episode_id)] = seq  # the episode was inserted again
            data = RolloutBatch.cat([old.index(keep), batch])
            seqs = torch.cat([old_seq[keep], new_seq])
        before = len(data)
        data, seqs = self._evict(data, seqs, protected_seq=seq)
        self._data, self._seq = data, seqs
        self.total_added += len(batch)
        self.total_evicted += before - len(data)
        return {"added": len(batch), "evicted_chunks": before - len(data)}

    def _evict(
        self, data: RolloutBatch, seqs: torch.Tensor, protected_seq: int
    ) -> tuple[RolloutBatch, torch.Tensor]:
        ep_ids, inv = torch.unique(data.episode_id, return_inverse=True)
        n_ep = ep_ids.numel()
        rows = torch.arange(len(data), device=inv.device)
        ep_seq = torch.zeros(n_ep, dtype=torch.long, device=inv.device).scatter_reduce(
            0, inv, seqs, "amax", include_self=False
        )
        ep_newest = torch.zeros(n_ep, dtype=torch.long, device=inv.device).scatter_reduce(
            0, inv, data.policy_version.long(), "amax", include_self=False
        )
        ep_first = torch.zeros(n_ep, dtype=torch.long, device=inv.device).scatter_reduce(
            0, inv, rows, "amin", include_self=False
        )
        ep_size = torch.bincount(inv, minlength=n_ep)
        protected = ep_seq == protected_seq
        # 1. versions
        drop = ~protected & (ep_newest <= int(ep_newest.max()) - self.max_versions)
        # 2. capacity: oldest insertion first, then batch order
        excess = int(ep_size[~drop].sum()) - self.capacity_chunks
        if excess > 0:
            cand = torch.nonzero(~drop & ~protected).squeeze(1)
            order = cand[torch.argsort(ep_seq[cand] * (len(data) + 1) + ep_first[cand], stable=True)]
            freed = torch.cumsum(ep_size[order], 0)
            n_drop = int((freed < excess).sum()) + 1  # the smallest prefix that frees `excess` rows
            drop[order[:n_drop]] = True
        if not bool(drop.any()):
            return data, seqs
        keep_rows = ~drop[inv]
        return data.index(keep_rows), seqs[keep_rows]

    # -- checkpointing -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Plain tensors only (weights_only-safe): the rows (RolloutBatch.to_dict under "data."), each row's
        insertion number and the counters."""
        out: dict[str, torch.Tensor] = {
            "seq": self._seq.clone(),
            "next_seq": torch.tensor(self._next_seq, dtype=torch.long),
            "total_added": torch.tensor(self.total_added, dtype=torch.long),
            "total_evicted": torch.tensor(self.total_evicted, dtype=torch.long),
            "capacity_chunks": torch.tensor(self.capacity_chunks, dtype=torch.long),
            "max_versions": torch.tensor(self.max_versions, dtype=torch.long),
        }
        if self._data is not None:
            out.update({DATA_PREFIX + k: v.clone() for k, v in self._data.to_dict().items()})
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` saved. Capacity and max_versions stay this buffer's own (the config's);
        a smaller capacity or S takes effect at the next `add`."""
        data = {k[len(DATA_PREFIX) :]: v for k, v in state.items() if k.startswith(DATA_PREFIX)}
        self._data = RolloutBatch.from_dict(data) if data else None
        if self._data is not None and self.device is not None:
            self._data = self._data.to(self.device)
        self._seq = state["seq"].long().clone()
        if self.device is not None:
            self._seq = self._seq.to(self.device)
        self._next_seq = int(state["next_seq"])
        self.total_added = int(state["total_added"])
        self.total_evicted = int(state["total_evicted"])


class UTDSchedule:
    """Gradient steps per update from the number of new chunks: floor(utd * new + carry), the fractional
    part carried over, clamped to [min_steps, max_steps] (the carry is not changed by the clamp)."""

    def __init__(self, utd: float, min_steps: int = 1, max_steps: int = 256) -> None:
        self.utd, self.min_steps, self.max_steps = float(utd), int(min_steps), int(max_steps)
        self.carry = 0.0

    def steps(self, new_chunks: int) -> int:
        want = self.utd * int(new_chunks) + self.carry
        n = math.floor(want + 1e-9)
        self.carry = max(want - n, 0.0)
        return int(min(max(n, self.min_steps), self.max_steps))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"carry": torch.tensor(self.carry, dtype=torch.float64)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.carry = float(state["carry"])


def minibatch_schedule(n: int, size: int, steps: int, generator: torch.Generator) -> list[torch.Tensor]:
    """`steps` index tensors of min(size, n) distinct rows of range(n): consecutive passes over random
    permutations (a row is drawn again only after every row was drawn once, up to the pass boundary)."""
    if n < 1 or steps < 1:
        return []
    size = min(size, n)
    out: list[torch.Tensor] = []
    pending = torch.zeros(0, dtype=torch.long)
    while len(out) < steps:
        perm = torch.randperm(n, generator=generator)
        if pending.numel():
            perm = torch.cat([pending, perm[~torch.isin(perm, pending)]])
        full = perm.numel() // size
        for i in range(full):
            out.append(perm[i * size : (i + 1) * size])
            if len(out) == steps:
                break
        pending = perm[full * size :]
    return out
