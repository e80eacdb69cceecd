"""Chain samplers with log-probs (Flow-Noise, Flow-SDE), deterministic ODE sampling, and re-scoring.

Notation (docs/algorithm.md, "Conventions"): t = 1 is noise, t = 0 the action; K steps, delta = 1/K,
t_k = 1 - k/K, both from `time_grid`, the one place sampling and re-scoring take them from; x_0 ~ N(0, I)
and x_K is the chunk (in the model's normalised space). A chain is stored whole as `chain[:, k] = x_k`
([B, K+1, H, D]) with `sde_step[b]` = the stochastic step j of a hybrid Flow-SDE chain
(-1 otherwise). `evaluate_chain` re-scores a stored chain under the current parameters without
re-sampling; it is the only place the PPO ratio's numerator comes from, and `sample` calls the same step
functions on the same float32 grid, so the ratio is exactly 1 before any update (bitwise on CPU, tested).

Log-prob aggregation (see PIRLConfig.logprob_reduce / include_prior): each step term is the Gaussian
log-density summed over the executed slice [:exec_horizon, :action_dim]; the chunk log-prob is the sum or
the mean of the step terms (K transitions, plus log N(x_0; 0, I) if include_prior). The Flow-Noise entropy
is aggregated by the same `_Stepper.reduce` over the same terms: the K step entropies plus, with
include_prior, the (constant) entropy of N(0, I) on the executed slice, so "mean" divides both by the same
count. A hybrid Flow-SDE chain has exactly one log-prob term, the stochastic step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch

from app.rl.model import PIRLModel

_LOG_2PI = math.log(2 * math.pi)


@dataclass
class ChainSample:
    """What one sampling call returns: the chunk to execute and what the update needs later."""

    actions: torch.Tensor  # [B, H, action_dim] in robot units
    chain: torch.Tensor  # [B, K+1, H, D] normalised chain x_0..x_K
    sde_step: torch.Tensor  # [B] long, stochastic step of a hybrid Flow-SDE chain, else -1
    logprob: torch.Tensor  # [B] behaviour log-prob (NaN for deterministic samples)
    value: torch.Tensor  # [B] V(obs) from the value head


@dataclass
class ChainEval:
    """Re-scoring of stored chains under the current parameters (differentiable)."""

    logprob: torch.Tensor  # [B]
    entropy: torch.Tensor  # [B] Flow-Noise chain entropy (same aggregation), zeros for Flow-SDE
    value: torch.Tensor  # [B]
    ctx: Any  # the encoded observation, reusable by a BC loss on the same rows


def gaussian_logpdf(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(x; mean, std^2), always in float32 (bf16 densities are too coarse for ratios)."""
    x, mean, std = x.float(), mean.float(), std.float()
    z = (x - mean) / std
    return -0.5 * z * z - torch.log(std) - 0.5 * _LOG_2PI


def _randn(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """float32 normal noise on `device`, drawn on the generator's own device (a CPU generator can seed a
    GPU sampler reproducibly)."""
    gdev = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gdev, dtype=torch.float32).to(device)


def time_grid(num_steps: int, device: torch.device | str | None = None) -> tuple[torch.Tensor, float]:
    """The denoising grid: (t [K] float32 with t[k] = t_k = 1 - k/K, delta = 1/K).

    The only place t_k and delta are computed: sampling (train and deterministic) and re-scoring (full
    chain and hybrid) all index this tensor, so a step sees the same float32 time in both. t_k is computed
    in float64 and rounded to float32 once (computing k/K in float32 and then 1 - k/K rounds twice and
    differs by one ulp at some steps of K = 3 or 10, which moved the re-scored log-prob by ~1e-5).
    """
    t = torch.tensor([1.0 - k / num_steps for k in range(num_steps)], dtype=torch.float64)
    return t.to(device=device, dtype=torch.float32), 1.0 / num_steps


def sde_transition(
    x: torch.Tensor, v: torch.Tensor, t: torch.Tensor, delta: float, noise_level: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of one reverse-SDE step from x_t (t is [B]).

    sigma_t = a*sqrt(t/(1-t)) (at t = 1, delta replaces 1-t); x_eps = x + (1-t)*v;
    mean = x - delta*(v + sigma_t^2/(2t) * x_eps); std = sigma_t*sqrt(delta).
    """
    tb = t.view(-1, *([1] * (x.dim() - 1)))
    one_minus = torch.where(tb >= 1.0, torch.full_like(tb, delta), 1.0 - tb)
    sigma = noise_level * torch.sqrt(tb / one_minus)
    x_eps = x + (1.0 - tb) * v
    mean = x - delta * (v + sigma**2 / (2.0 * tb) * x_eps)
    std = (sigma * math.sqrt(delta)).expand_as(mean)
    return mean, std


class _Stepper:
    """One model + config: the step maths shared by sampling and re-scoring."""

    def __init__(self, model: PIRLModel) -> None:
        self.model = model
        self.cfg = model.cfg
        self.K = model.cfg.num_steps
        self.grid, self.delta = time_grid(self.K)
        self.h = model.exec_horizon
        self.a = model.policy.action_dim

    def times(self, k: int | torch.Tensor, b: int, device: torch.device) -> torch.Tensor:
        """t [b] float32 for step k (an int, or a [b] long tensor of per-row steps) from the shared grid."""
        idx = (
            torch.full((b,), k, dtype=torch.long, device=device)
            if isinstance(k, int)
            else k.to(device, torch.long)
        )
        return self.grid.to(device)[idx]

    def score(self, terms: torch.Tensor) -> torch.Tensor:
        """Elementwise log-density [B, H, D] -> executed-slice sum [B]."""
        return terms[:, : self.h, : self.a].sum(dim=(1, 2))

    def transition(
        self, x: torch.Tensor, t: torch.Tensor, ctx: Any
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mean, std, v) of the stochastic step leaving x at time t under the configured method."""
        v, feats = self.model.policy.velocity(x, t, ctx)
        v = v.float()
        if self.cfg.method == "flow_noise":
            std = self.model.noise_head(feats).float()
            return x - self.delta * v, std, v
        mean, std = sde_transition(x, v, t, self.delta, self.cfg.sde.noise_level)
        return mean, std, v

    def reduce(self, step_terms: list[torch.Tensor], prior: torch.Tensor | None) -> torch.Tensor:
        """The chunk aggregate of per-step terms [B] (log-probs or entropies): their sum, or their mean
        with "mean"; `prior` is one more term when include_prior."""
        terms = list(step_terms) + ([prior] if prior is not None and self.cfg.include_prior else [])
        total = torch.stack(terms, dim=0).sum(dim=0)
        return total / len(terms) if self.cfg.logprob_reduce == "mean" else total

    def prior(self, x0: torch.Tensor) -> torch.Tensor:
        return self.score(-0.5 * x0 * x0 - 0.5 * _LOG_2PI)

    def prior_entropy(self, b: int, device: torch.device) -> torch.Tensor:
        """Entropy [B] of the prior N(0, I) on the executed slice: h*a*0.5*log(2*pi*e), a constant."""
        return torch.full((b,), self.h * self.a * 0.5 * math.log(2 * math.pi * math.e), device=device)

    @property
    def hybrid(self) -> bool:
        return self.cfg.method == "flow_sde" and self.cfg.sde.hybrid


def sample(
    model: PIRLModel,
    obs: dict[str, Any],
    mode: Literal["train", "deterministic"] = "train",
    generator: torch.Generator | None = None,
    x0: torch.Tensor | None = None,
) -> ChainSample:
    """Sample one chunk per observation (no gradients).

    "train": the stochastic chain of the configured method, with its behaviour log-prob.
    "deterministic": the plain ODE (x - delta*v), for evaluation and deployment; logprob is NaN.
    """
    if mode not in ("train", "deterministic"):
        raise ValueError(f"sample mode must be 'train' or 'deterministic', got {mode!r}")
    st = _Stepper(model)
    pol = model.policy
    with torch.no_grad():
        ctx = model.encode(obs)
        value = model.value(ctx).float()
        b = value.shape[0]
        dev, dt = value.device, torch.float32  # the chain is always kept in float32
        shape = (b, pol.chunk_size, pol.model_action_dim)
        x = _randn(shape, generator, dev) if x0 is None else x0.to(dev, dt)
        chain = [x]
        if mode == "deterministic":
            for k in range(st.K):
                t = st.times(k, b, dev)
                v, _ = pol.velocity(x, t, ctx)
                x = x - st.delta * v.float()
                chain.append(x)
            return ChainSample(
                actions=pol.unnormalize_actions(x),
                chain=torch.stack(chain, dim=1),
                sde_step=torch.full((b,), -1, dtype=torch.long, device=dev),
                logprob=torch.full((b,), float("nan"), device=dev, dtype=dt),
                value=value,
            )
        if st.hybrid:
            gdev = generator.device if generator is not None else dev
            j = torch.randint(0, st.K, (b,), generator=generator, device=gdev).to(dev)
        else:
            j = torch.full((b,), -1, dtype=torch.long, device=dev)
        step_terms: list[torch.Tensor] = []
        hybrid_term = torch.zeros(b, device=dev, dtype=dt)
        for k in range(st.K):
            t = st.times(k, b, dev)
            mean, std, v = st.transition(x, t, ctx)
            eps = _randn(shape, generator, dev)
            if st.hybrid:
                stoch = (j == k).view(-1, 1, 1)
                x_next = torch.where(stoch, mean + std * eps, x - st.delta * v)
                term = st.score(gaussian_logpdf(x_next, mean, std))
                hybrid_term = torch.where(j == k, term, hybrid_term)
            else:
                x_next = mean + std * eps
                step_terms.append(st.score(gaussian_logpdf(x_next, mean, std)))
            x = x_next
            chain.append(x)
        logprob = hybrid_term if st.hybrid else st.reduce(step_terms, st.prior(chain[0]))
        return ChainSample(
            actions=pol.unnormalize_actions(x),
            chain=torch.stack(chain, dim=1),
            sde_step=j,
            logprob=logprob,
            value=value,
        )


def evaluate_chain(
    model: PIRLModel, obs: dict[str, Any], chain: torch.Tensor, sde_step: torch.Tensor
) -> ChainEval:
    """Log-prob of stored chains under the current parameters, plus entropy and value (differentiable).

    Flow-Noise / full-SDE: K velocity calls (one per stored transition). Hybrid Flow-SDE: one velocity
    call at each chain's own stochastic step j, scoring (x_j -> x_{j+1}).
    """
    st = _Stepper(model)
    if chain.dim() != 4 or chain.shape[1] != st.K + 1:
        raise ValueError(f"chain must be [B, K+1={st.K + 1}, H, D], got {tuple(chain.shape)}")
    chain = chain.float()
    ctx = model.encode(obs)
    value = model.value(ctx).float()
    b = chain.shape[0]
    zeros = torch.zeros(b, device=chain.device, dtype=chain.dtype)
    if st.hybrid:
        if bool((sde_step < 0).any()) or bool((sde_step >= st.K).any()):
            raise ValueError(f"hybrid Flow-SDE chains need sde_step in [0, {st.K}); got {sde_step.tolist()}")
        idx = sde_step.view(-1, 1, 1, 1).expand(-1, 1, *chain.shape[2:])
        x_j = chain.gather(1, idx).squeeze(1)
        x_next = chain.gather(1, idx + 1).squeeze(1)
        t = st.times(sde_step, b, chain.device)
        mean, std, _ = st.transition(x_j, t, ctx)
        return ChainEval(st.score(gaussian_logpdf(x_next, mean, std)), zeros, value, ctx)
    step_terms, ent_terms = [], []
    for k in range(st.K):
        t = st.times(k, b, chain.device)
        mean, std, _ = st.transition(chain[:, k], t, ctx)
        step_terms.append(st.score(gaussian_logpdf(chain[:, k + 1], mean, std)))
        if st.cfg.method == "flow_noise":
            ent_terms.append(st.score(0.5 * torch.log(2 * math.pi * math.e * std * std)))
    logprob = st.reduce(step_terms, st.prior(chain[:, 0]))
    # Same terms, same divisor as the log-prob (the prior's entropy is a constant: it only shifts the
    # value and, with "mean", sets the divisor to K+1 as it does for the log-prob).
    entropy = st.reduce(ent_terms, st.prior_entropy(b, chain.device)) if ent_terms else zeros
    return ChainEval(logprob, entropy, value, ctx)


def recompute_logprob(
    model: PIRLModel, obs: dict[str, Any], chain: torch.Tensor, sde_step: torch.Tensor
) -> torch.Tensor:
    """Just the log-prob [B] of stored chains under the current parameters (see `evaluate_chain`)."""
    return evaluate_chain(model, obs, chain, sde_step).logprob
