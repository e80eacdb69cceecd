"""Behaviour-cloning pre-training by flow matching, so a few demos give a starting policy for PI-RL.

Data format (plain tensors, what a demo recorder or a LeRobot dataset reader can produce):
`{"observation.state": [N, S], optional "observation.environment_state" / "observation.images.<cam>",
"action": [N, H, action_dim]}` — one row per chunk start, actions in robot units. `make_chunks` turns
per-step episodes into that form (the tail of an episode repeats its last action, LeRobot-style padding).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from app.rl.losses import flow_matching_loss
from app.rl.policy import FlowPolicy

ACTION_KEY = "action"


def make_chunks(episodes: Sequence[dict[str, torch.Tensor]], chunk_size: int) -> dict[str, torch.Tensor]:
    """Per-step episodes ({key: [T, ...], "action": [T, A]}) -> one chunk per step ({key: [N, ...],
    "action": [N, H, A]}); actions past an episode's end repeat its last action."""
    if not episodes:
        raise ValueError("make_chunks needs at least one episode")
    out: dict[str, list[torch.Tensor]] = {}
    for ep in episodes:
        if ACTION_KEY not in ep:
            raise KeyError(f"episode needs an {ACTION_KEY!r} tensor [T, action_dim]; got {sorted(ep)}")
        act = ep[ACTION_KEY]
        t_len = act.shape[0]
        idx = (torch.arange(t_len)[:, None] + torch.arange(chunk_size)[None, :]).clamp(max=t_len - 1)
        out.setdefault(ACTION_KEY, []).append(act[idx])
        for k, v in ep.items():
            if k == ACTION_KEY:
                continue
            if v.shape[0] != t_len:
                raise ValueError(f"episode key {k!r} has {v.shape[0]} steps but action has {t_len}")
            out.setdefault(k, []).append(v)
    return {k: torch.cat(v) for k, v in out.items()}


def normalization_stats(data: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """Mean/std of state, environment state and actions (over rows and chunk positions)."""
    stats = {}
    for key in ("observation.state", "observation.environment_state", ACTION_KEY):
        if key in data:
            x = data[key].float().reshape(-1, data[key].shape[-1])
            stats[key] = {"mean": x.mean(0), "std": x.std(0) if x.shape[0] > 1 else torch.ones(x.shape[1])}
    return stats


def floored_normalization_stats(
    data: dict[str, torch.Tensor], state_std_floor: torch.Tensor | float, action_std_floor: float
) -> dict[str, dict[str, torch.Tensor]]:
    """normalization_stats with a floor on the state and action stds: an entry the demos never moved (a
    wrist roll in a reach, the gripper) would otherwise get std ~0 and turn sensor noise into huge inputs.
    `state_std_floor` is one value or one per state entry (joints in degrees, task keys in metres)."""
    stats = normalization_stats(data)
    state = stats["observation.state"]
    state["std"] = torch.maximum(state["std"], torch.as_tensor(state_std_floor, dtype=state["std"].dtype))
    stats[ACTION_KEY]["std"] = stats[ACTION_KEY]["std"].clamp_min(action_std_floor)
    return stats


def bc_pretrain(
    policy: FlowPolicy,
    data: dict[str, torch.Tensor],
    steps: int = 2000,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    fit_normalization: bool = True,
    log_every: int = 0,
) -> list[float]:
    """Train every parameter of `policy` with the flow-matching loss; returns the loss per step.

    Trains the whole policy (encoder and expert) whatever the RL trainable groups say, then restores
    requires_grad. With fit_normalization, the policy's normalisation buffers are set from `data` first
    (only policies with `set_normalization`, e.g. NativeFlowPolicy).
    """
    if ACTION_KEY not in data:
        raise KeyError(f"BC data needs {ACTION_KEY!r} [N, H, action_dim]; got {sorted(data)}")
    actions = data[ACTION_KEY].float()
    if actions.dim() != 3 or actions.shape[1] != policy.chunk_size or actions.shape[2] != policy.action_dim:
        raise ValueError(
            f"BC actions must be [N, {policy.chunk_size}, {policy.action_dim}], got {tuple(actions.shape)}"
        )
    if fit_normalization and hasattr(policy, "set_normalization"):
        policy.set_normalization(normalization_stats(data))
    obs_keys = [k for k in data if k != ACTION_KEY]
    params = list(policy.parameters())
    saved = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1), eta_min=lr * 0.1)
    gen = torch.Generator().manual_seed(seed)
    n = actions.shape[0]
    device = next(policy.parameters()).device
    losses: list[float] = []
    policy.train()
    try:
        for step in range(steps):
            idx = torch.randint(0, n, (min(batch_size, n),), generator=gen)
            obs = {k: data[k][idx].to(device) for k in obs_keys}
            ctx = policy.encode(obs)
            loss = flow_matching_loss(policy, ctx, actions[idx].to(device), generator=gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            if log_every and (step + 1) % log_every == 0:
                print(f"bc step {step + 1}/{steps} loss {sum(losses[-log_every:]) / log_every:.4f}")
    finally:
        for p, r in zip(params, saved, strict=True):
            p.requires_grad_(r)
        policy.eval()
    return losses
