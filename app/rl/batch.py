"""RolloutBatch: chunk-level rollout data, as plain tensors that survive torch.save(weights_only=True).

One row = one outer step = one action chunk. Rows of one episode must be contiguous and in time order
within a batch (`RolloutBatch.cat` of per-episode batches does that; `sorted_by_episode` restores it).
The last row of every episode in a batch is either `done` (terminal: no bootstrap), `truncated`
(bootstrap with `bootstrap_value`), or cut by the batch boundary, which GAE treats like a truncation.

Human-driven chunks (`intervention`) have no policy log-prob: their chain/logprob fields are ignored
(fill with zeros), their `human_action` is what was executed, and they still count for returns and the
critic.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import torch

OBS_PREFIX = "obs."
OPTIONAL_FIELDS = ("human_mask",)  # may be absent from a dict; a default is derived


@dataclass
class RolloutBatch:
    obs: dict[str, torch.Tensor]  # observation tensors at the chunk start, each [N, ...]
    chain: torch.Tensor  # [N, K+1, H, D] normalised denoising chain (zeros for human chunks)
    sde_step: torch.Tensor  # [N] long, stochastic step of hybrid Flow-SDE chains (else -1)
    logprob: torch.Tensor  # [N] behaviour log-prob of the chain (ignored for human chunks)
    value: torch.Tensor  # [N] V(obs) at rollout time
    reward: torch.Tensor  # [N] sum of rewards over the executed actions of the chunk
    done: torch.Tensor  # [N] bool, the episode terminated after this chunk (success/failure)
    truncated: torch.Tensor  # [N] bool, the episode was cut (time limit) after this chunk
    bootstrap_value: torch.Tensor  # [N] V(observation after the chunk), used where truncated
    intervention: torch.Tensor  # [N] bool, a human drove (part of) this chunk
    human_action: torch.Tensor  # [N, H, action_dim] executed human actions in robot units (zeros if none)
    takeover_start: torch.Tensor  # [N] bool, a takeover began during this chunk
    policy_version: torch.Tensor  # [N] long, version of the weights that produced the chunk
    episode_id: torch.Tensor  # [N] long, unique per episode
    chunk_index: torch.Tensor  # [N] long, position of the chunk within its episode
    group_id: torch.Tensor  # [N] long, GRPO group (episodes from the same reset state), -1 if none
    # [N, H] bool, which steps of human_action a human really drove (a takeover may start or end
    # mid-chunk). Optional: None means every step of an intervention row (see human_steps()).
    human_mask: torch.Tensor | None = None

    def __post_init__(self) -> None:
        n = self.reward.shape[0]
        for f in fields(self):
            if f.name == "obs":
                if not self.obs:
                    raise ValueError("RolloutBatch.obs is empty; it needs at least observation.state")
                bad = {k: tuple(v.shape) for k, v in self.obs.items() if v.shape[0] != n}
            else:
                val = getattr(self, f.name)
                bad = {f.name: tuple(val.shape)} if val is not None and val.shape[0] != n else {}
            if bad:
                raise ValueError(f"RolloutBatch fields must all have {n} rows; got {bad}")

    def __len__(self) -> int:
        return int(self.reward.shape[0])

    def human_steps(self) -> torch.Tensor:
        """[N, H] bool: the steps a human drove; without an explicit human_mask, every step of the
        intervention rows."""
        if self.human_mask is not None:
            return self.human_mask.bool()
        return self.intervention.bool()[:, None].expand(-1, self.human_action.shape[1])

    # -- (de)serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, torch.Tensor]:
        """Flat dict of tensors (obs keys prefixed "obs."): safe for torch.save / weights_only load."""
        out = {OBS_PREFIX + k: v for k, v in self.obs.items()}
        for f in fields(self):
            if f.name != "obs" and getattr(self, f.name) is not None:
                out[f.name] = getattr(self, f.name)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, torch.Tensor]) -> RolloutBatch:
        names = [f.name for f in fields(cls) if f.name != "obs"]
        missing = [n for n in names if n not in d and n not in OPTIONAL_FIELDS]
        if missing:
            raise KeyError(f"rollout dict is missing {missing}")
        obs = {k[len(OBS_PREFIX) :]: v for k, v in d.items() if k.startswith(OBS_PREFIX)}
        return cls(obs=obs, **{n: d[n] for n in names if n in d})

    # -- slicing -------------------------------------------------------------------------------------
    def index(self, idx: torch.Tensor | slice) -> RolloutBatch:
        """Rows idx (a long index tensor, bool mask or slice)."""
        d = {k: v[idx] for k, v in self.to_dict().items()}
        return RolloutBatch.from_dict(d)

    def to(self, device: torch.device | str) -> RolloutBatch:
        return RolloutBatch.from_dict({k: v.to(device) for k, v in self.to_dict().items()})

    @staticmethod
    def cat(batches: list[RolloutBatch]) -> RolloutBatch:
        if not batches:
            raise ValueError("RolloutBatch.cat needs at least one batch")
        if any(b.human_mask is not None for b in batches):  # one explicit mask: make all explicit
            batches = [
                RolloutBatch.from_dict({**b.to_dict(), "human_mask": b.human_steps()}) for b in batches
            ]
        keys = batches[0].to_dict().keys()
        dicts = [b.to_dict() for b in batches]
        for d in dicts[1:]:
            if d.keys() != keys:
                raise ValueError(f"cannot cat batches with different fields: {sorted(keys ^ d.keys())}")
        return RolloutBatch.from_dict({k: torch.cat([d[k] for d in dicts]) for k in keys})

    def sorted_by_episode(self) -> RolloutBatch:
        """Rows grouped by episode, in chunk order (stable), as GAE needs."""
        by_chunk = torch.argsort(self.chunk_index, stable=True)
        by_episode = torch.argsort(self.episode_id[by_chunk], stable=True)
        return self.index(by_chunk[by_episode])

    @staticmethod
    def from_records(records: list[ChunkRecord], action_dim: int) -> RolloutBatch:
        """Stack per-chunk records (what an actor accumulates) into a batch. Human chunks without chain
        data get zeros shaped like the policy chunks' chains; policy chunks get zero human actions
        [H, action_dim]. At least one record must carry a chain."""
        if not records:
            raise ValueError("from_records needs at least one ChunkRecord")
        chain_like = next((r.chain for r in records if r.chain is not None), None)
        if chain_like is None:
            raise ValueError(
                "from_records: no record carries a chain; cannot infer the chain shape [K+1, H, D]"
            )
        action_like = torch.zeros(chain_like.shape[1], action_dim)
        rows: dict[str, list[torch.Tensor]] = {}
        for r in records:
            for k, v in r.row(chain_like, action_like).items():
                rows.setdefault(k, []).append(v)
        try:
            return RolloutBatch.from_dict({k: torch.stack(v) for k, v in rows.items()})
        except RuntimeError as e:
            raise ValueError(f"from_records: records disagree on a tensor shape ({e})") from e


@dataclass
class ChunkRecord:
    """One chunk as the actor saw it, without a batch dimension. Policy chunks carry chain/sde_step/
    logprob/value from `sampling.sample` (row i of a ChainSample); human chunks leave chain None and
    set human_action. `row()` turns it into the tensors of one RolloutBatch row."""

    obs: dict[str, torch.Tensor]  # each tensor without the batch dimension
    reward: float
    done: bool = False
    truncated: bool = False
    bootstrap_value: float = 0.0  # V(obs after the chunk) when truncated (model.predict_value)
    chain: torch.Tensor | None = None  # [K+1, H, D]
    sde_step: int = -1
    logprob: float = 0.0
    value: float = 0.0
    intervention: bool = False
    human_action: torch.Tensor | None = None  # [H, action_dim] robot units, executed by the human
    human_mask: torch.Tensor | None = None  # [H] bool, steps the human drove (None: all, if intervention)
    takeover_start: bool = False
    policy_version: int = 0
    episode_id: int = 0
    chunk_index: int = 0
    group_id: int = -1
    extra: dict[str, Any] = field(default_factory=dict)  # free for the caller; not stored in the batch

    def row(self, chain_like: torch.Tensor, action_like: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {OBS_PREFIX + k: torch.as_tensor(v) for k, v in self.obs.items()}
        out.update(
            chain=(self.chain if self.chain is not None else torch.zeros_like(chain_like)).float(),
            sde_step=torch.tensor(self.sde_step, dtype=torch.long),
            logprob=torch.tensor(float(self.logprob)),
            value=torch.tensor(float(self.value)),
            reward=torch.tensor(float(self.reward)),
            done=torch.tensor(bool(self.done)),
            truncated=torch.tensor(bool(self.truncated)),
            bootstrap_value=torch.tensor(float(self.bootstrap_value)),
            intervention=torch.tensor(bool(self.intervention)),
            human_action=(
                self.human_action if self.human_action is not None else torch.zeros_like(action_like)
            ).float(),
            human_mask=(
                self.human_mask.bool()
                if self.human_mask is not None
                else torch.full((action_like.shape[0],), bool(self.intervention))
            ),
            takeover_start=torch.tensor(bool(self.takeover_start)),
            policy_version=torch.tensor(int(self.policy_version), dtype=torch.long),
            episode_id=torch.tensor(int(self.episode_id), dtype=torch.long),
            chunk_index=torch.tensor(int(self.chunk_index), dtype=torch.long),
            group_id=torch.tensor(int(self.group_id), dtype=torch.long),
        )
        return out
