"""PI-RL losses: clipped PPO surrogate (optionally dual-clipped and decoupled), (clipped, Huber) value loss,
GRPO advantages, flow-matching BC (plain and per-row weighted, for AWR).

Each function is pure: tensors in, a scalar loss and float diagnostics out. The trainer combines them.
Masks are float/bool [N]; a masked-out row contributes exactly nothing (value and gradient).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from app.rl.policy import Context, FlowPolicy


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp_min(1.0)


def ppo_policy_loss(
    logprob: torch.Tensor,
    old_logprob: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_coef: float,
    prox_logprob: torch.Tensor | None = None,
    sample_weight: torch.Tensor | None = None,
    dual_clip: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """-mean(min(r*A, clip(r, 1-eps, 1+eps)*A)) over rows where mask is true.

    r = exp(logprob - old_logprob), or exp(logprob - prox_logprob) under decoupled PPO, where each row is
    also weighted by `sample_weight` = pi_prox / pi_behaviour. With `dual_clip` = c, the per-row loss of a
    row with A < 0 is min(that, -c*A) (dual-clip PPO: a huge ratio cannot make a negative-advantage row
    unbounded). Masked rows (human chunks, stale chunks, GRPO-dropped groups) are multiplied by zero
    before any reduction, so NaN-free garbage in their logprob fields cannot leak in.
    """
    mask = mask.bool()
    anchor = old_logprob if prox_logprob is None else prox_logprob
    log_ratio = torch.where(mask, logprob - anchor, torch.zeros_like(logprob))
    ratio = torch.exp(log_ratio)
    adv = torch.where(mask, advantages, torch.zeros_like(advantages))
    per_row = torch.max(-adv * ratio, -adv * torch.clamp(ratio, 1.0 - clip_coef, 1.0 + clip_coef))
    dual_hit: torch.Tensor | None = None
    if dual_clip is not None:
        bound = -dual_clip * adv
        dual_hit = (adv < 0) & (per_row > bound)
        per_row = torch.where(adv < 0, torch.minimum(per_row, bound), per_row)
    if sample_weight is not None:
        per_row = per_row * torch.where(mask, sample_weight, torch.zeros_like(sample_weight))
    loss = _masked_mean(per_row, mask)
    with torch.no_grad():
        approx_kl = _masked_mean((ratio - 1.0) - log_ratio, mask)
        clipfrac = _masked_mean(((ratio - 1.0).abs() > clip_coef).float(), mask)
        ratio_mean = _masked_mean(ratio, mask)
    stats = {
        "losses/policy_loss": float(loss.detach()),
        "losses/approx_kl": float(approx_kl),
        "losses/clipfrac": float(clipfrac),
        "losses/ratio_mean": float(ratio_mean),
    }
    if dual_hit is not None:
        stats["losses/dual_clipfrac"] = float(_masked_mean(dual_hit.float(), mask))
    return loss, stats


@torch.no_grad()
def decoupled_proximal(
    behaviour_logprob: torch.Tensor,
    current_logprob: torch.Tensor,
    current_version: int | torch.Tensor,
    behaviour_version: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decoupled PPO's proximal policy by version interpolation (detached), per row:

    alpha = clip((v_theta - 1 - v_b) / (v_theta - v_b), 0, 1) (0 when v_theta <= v_b),
    logp_prox = logp_b + alpha * (logp_theta - logp_b), weight = pi_prox / pi_b = exp(logp_prox - logp_b).

    A row from the current version (age 0) or the previous one (age 1) gets alpha = 0: pi_prox = pi_b and
    weight 1, i.e. plain PPO against the behaviour log-prob. Returns (logp_prox, weight, alpha)."""
    lp_b = behaviour_logprob.float()
    age = (torch.as_tensor(current_version, device=lp_b.device) - behaviour_version.to(lp_b.device)).float()
    alpha = torch.where(age > 0, (age - 1.0) / age.clamp_min(1.0), torch.zeros_like(age)).clamp(0.0, 1.0)
    prox = lp_b + alpha * (current_logprob.float() - lp_b)
    return prox, torch.exp(prox - lp_b), alpha


def value_loss(
    value: torch.Tensor,
    old_value: torch.Tensor,
    returns: torch.Tensor,
    value_clip: float | None,
    huber_delta: float | None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Critic loss: Huber(delta) (or 0.5*MSE) of V - returns, pessimistic max with the clipped version
    V_old + clip(V - V_old, -c, c) when value_clip is set (cleanrl/RLinf)."""

    def err(pred: torch.Tensor) -> torch.Tensor:
        if huber_delta is None:
            return 0.5 * (pred - returns) ** 2
        return F.huber_loss(pred, returns, reduction="none", delta=huber_delta)

    loss = err(value)
    if value_clip is not None:
        clipped = old_value + torch.clamp(value - old_value, -value_clip, value_clip)
        loss = torch.max(loss, err(clipped))
    if mask is None:
        return loss.mean()
    return _masked_mean(loss, mask)


def explained_variance(pred: torch.Tensor, target: torch.Tensor) -> float:
    """1 - Var(target - pred) / Var(target); NaN if the target is constant (cleanrl convention)."""
    var_y = torch.var(target)
    if float(var_y) == 0.0:
        return float("nan")
    return float(1.0 - torch.var(target - pred) / var_y)


@torch.no_grad()
def grpo_advantages(
    reward: torch.Tensor,
    episode_id: torch.Tensor,
    group_id: torch.Tensor,
    eps: float = 1e-6,
    drop_uniform_groups: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Group-relative advantages broadcast to chunks, and the rows' validity mask.

    Episode return R = sum of its chunk rewards (with a sparse success reward, R is the success flag).
    Within a group (episodes from the same reset state): A = (R - mean_G) / (std_G + eps).
    Invalid rows: group_id < 0, groups with fewer than 2 episodes, and (if drop_uniform_groups) groups
    whose returns are all equal (all success / all failure: no learning signal).
    """
    n = reward.shape[0]
    adv = torch.zeros(n, dtype=torch.float32, device=reward.device)
    valid = torch.zeros(n, dtype=torch.bool, device=reward.device)
    eps_ids, inv = torch.unique(episode_id, return_inverse=True)
    ep_return = torch.zeros(len(eps_ids), dtype=torch.float32, device=reward.device)
    ep_return.index_add_(0, inv, reward.to(torch.float32))
    ep_group = torch.full((len(eps_ids),), -1, dtype=torch.long, device=reward.device)
    ep_group.scatter_(0, inv, group_id.long())
    for g in torch.unique(ep_group).tolist():
        if g < 0:
            continue
        members = ep_group == g
        r = ep_return[members]
        if r.numel() < 2:
            continue
        if drop_uniform_groups and bool((r == r[0]).all()):
            continue
        ep_adv = torch.zeros_like(ep_return)
        ep_adv[members] = (r - r.mean()) / (r.std() + eps)
        rows = members[inv]
        adv = torch.where(rows, ep_adv[inv], adv)
        valid |= rows
    return adv, valid


def flow_matching_loss(
    policy: FlowPolicy,
    ctx: Context,
    actions: torch.Tensor,
    horizon: int | None = None,
    mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    step_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Conditional flow matching on robot-unit action chunks [B, H, action_dim]:
    x_t = (1-t)*a + t*eps, target v = eps - a, t ~ U(0, 1); MSE over [:horizon, :action_dim] of the rows
    where mask is true (all rows if None) and, with step_mask [B, H], only at the chunk positions it marks.
    `ctx` is the policy's encoding of the same observations."""
    err, keep = _flow_matching_errors(policy, ctx, actions, horizon, mask, generator, step_mask)
    return _masked_mean(err, keep)


def weighted_flow_matching_loss(
    policy: FlowPolicy,
    ctx: Context,
    actions: torch.Tensor,
    weight: torch.Tensor,
    horizon: int | None = None,
    mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    step_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-row weighted flow matching (advantage-weighted regression): mean over the rows with at least
    one scored position of weight_i * FM_i, FM_i the mean squared velocity error of row i over its scored
    positions (same sampling and masks as `flow_matching_loss`). Weights are treated as constants."""
    err, keep = _flow_matching_errors(policy, ctx, actions, horizon, mask, generator, step_mask)
    k = keep.to(err.dtype)
    count = k.sum(dim=1)
    row_err = (err * k).sum(dim=1) / count.clamp_min(1.0)
    rows = count > 0
    w = torch.where(rows, weight.detach().to(err.dtype), torch.zeros_like(row_err))
    return (w * row_err).sum() / rows.to(err.dtype).sum().clamp_min(1.0)


def _flow_matching_errors(
    policy: FlowPolicy,
    ctx: Context,
    actions: torch.Tensor,
    horizon: int | None,
    mask: torch.Tensor | None,
    generator: torch.Generator | None,
    step_mask: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared velocity errors [B, h] (mean over action dims) and the positions that count [B, h]."""
    a = policy.normalize_actions(actions)
    b = a.shape[0]
    gdev = generator.device if generator is not None else a.device
    t = torch.rand(b, generator=generator, device=gdev, dtype=a.dtype).to(a.device)
    noise = torch.randn(a.shape, generator=generator, device=gdev, dtype=a.dtype).to(a.device)
    tb = t.view(-1, 1, 1)
    x_t = (1.0 - tb) * a + tb * noise
    v, _ = policy.velocity(x_t, t, ctx)
    h = policy.chunk_size if horizon is None else horizon
    err = ((v.float() - (noise - a).float()) ** 2)[:, :h, : policy.action_dim].mean(dim=2)  # [B, h]
    keep = torch.ones_like(err, dtype=torch.bool)
    if mask is not None:
        keep = keep & mask.bool().view(-1, 1)
    if step_mask is not None:
        keep = keep & step_mask.bool()[:, :h]
    return err, keep
