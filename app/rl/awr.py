"""Advantage-weighted flow matching (AWR) on takeovers and successes, and the demo anchor's schedule.

The AWR loss (`losses.weighted_flow_matching_loss`) regresses the velocity field towards executed actions,
each row weighted by w = min(exp(A / beta), max_weight):

- human chunks: the executed `human_action`, scored only at `batch.human_steps()` (the steps a human drove);
- policy chunks of successful episodes: the executed chunk, i.e. the chain end x_K (in robot units).

Why AWR rather than RECAP-style advantage conditioning: RECAP (pi*0.6) feeds a binarised advantage to the
policy as an input token and needs that input at inference and a model trained with it; our adapters take
(observation, x_t, t) only, and adding an input changes every FlowPolicy. AWR only re-weights the same
flow-matching loss BC already uses, works with any adapter, and reduces to success-filtered BC as beta grows.

Self-imitation (`rl.anchor.success_chunks`): `success_chunks` turns the successful policy rows of a batch
into anchor rows (observation, executed chunk), which the trainer keeps beside the demo batch
(`concat_rows`) for as many policy versions as the pool's capacity allows.
"""

from __future__ import annotations

import torch

from app.rl.batch import RolloutBatch
from app.rl.gae import episode_ends


@torch.no_grad()
def success_rows(batch: RolloutBatch, success_reward: float) -> torch.Tensor:
    """[N] bool: the row belongs to a successful episode, i.e. one whose last row in this (episode-grouped,
    chunk-ordered) batch is `done` with reward >= success_reward."""
    last = episode_ends(batch.episode_id)
    ok_last = last & batch.done.bool() & (batch.reward.float() >= success_reward)
    _, inv = torch.unique_consecutive(batch.episode_id, return_inverse=True)
    ok_ep = torch.zeros(int(inv.max()) + 1 if inv.numel() else 0, dtype=torch.bool, device=inv.device)
    ok_ep[inv[ok_last]] = True
    return ok_ep[inv]


@torch.no_grad()
def awr_weights(advantages: torch.Tensor, beta: float, max_weight: float) -> torch.Tensor:
    """w = min(exp(A / beta), max_weight), computed without overflow."""
    return torch.exp(torch.clamp(advantages.float() / beta, max=torch.log(torch.tensor(max_weight)).item()))


@torch.no_grad()
def awr_targets(
    batch: RolloutBatch,
    unnormalize,
    use_human: bool,
    use_success: bool,
    success_reward: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rows [N] bool, actions [N, H, action_dim] robot units, step mask [N, H] bool) of the AWR loss.

    Human rows (`intervention` with at least one human step) use `human_action` at `human_steps()`;
    successful policy rows use `unnormalize(chain[:, -1])` (the executed x_K) at every step. `unnormalize`
    is the policy's `unnormalize_actions`."""
    human = batch.intervention.bool()
    steps = batch.human_steps()
    human = human & steps.any(dim=1)
    success = ~batch.intervention.bool() & success_rows(batch, success_reward)
    rows = (human if use_human else torch.zeros_like(human)) | (
        success if use_success else torch.zeros_like(success)
    )
    executed = unnormalize(batch.chain[:, -1].float()).to(batch.human_action.dtype)
    actions = torch.where(human[:, None, None], batch.human_action, executed)
    step_mask = torch.where(human[:, None], steps, torch.ones_like(steps))
    return rows, actions, step_mask


def anchor_coef(coef: float, decay: float, min_coef: float, updates: int) -> float:
    """Anchor weight at update `updates`: max(coef * decay**updates, min_coef) (0 when coef is 0)."""
    if coef <= 0:
        return 0.0
    return max(coef * decay**updates, min_coef)


@torch.no_grad()
def success_chunks(batch: RolloutBatch, unnormalize, success_reward: float) -> dict[str, torch.Tensor] | None:
    """The policy rows of `batch`'s successful episodes as anchor rows on the CPU: the observation keys
    plus "action" = `unnormalize(chain[:, -1])`, the executed chunk x_K in robot units (human rows are left
    out: their chain is not what ran). None when there are none. `batch` need not be sorted."""
    b = batch.sorted_by_episode()
    ok = success_rows(b, success_reward) & ~b.intervention.bool()
    if not bool(ok.any()):
        return None
    out = {k: v[ok].detach().to("cpu") for k, v in b.obs.items()}
    out["action"] = unnormalize(b.chain[ok][:, -1].float()).detach().to("cpu")
    return out


def concat_rows(
    first: dict[str, torch.Tensor] | None, second: dict[str, torch.Tensor] | None, keep_last: int = 0
) -> dict[str, torch.Tensor] | None:
    """Row-wise concatenation of two dicts of tensors with the same keys (either may be None), cast to the
    first one's dtypes; `keep_last` > 0 keeps only the last that many rows (a FIFO pool)."""
    parts = [d for d in (first, second) if d is not None]
    if not parts:
        return None
    if len(parts) > 1 and set(parts[0]) != set(parts[1]):
        raise ValueError(f"rows with keys {sorted(parts[1])} cannot join rows with keys {sorted(parts[0])}")
    out = {k: torch.cat([d[k].to(v.dtype) for d in parts]) for k, v in parts[0].items()}
    return {k: v[-keep_last:] for k, v in out.items()} if keep_last > 0 else out
