"""Chain samplers: log-probs against independently computed Gaussian densities, ratio = 1, hybrid SDE."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal

from app.rl.config import FlowSDEConfig, PIRLConfig
from app.rl.model import PIRLModel
from app.rl.native import NativeFlowConfig, NativeFlowPolicy
from app.rl.sampling import evaluate_chain, recompute_logprob, sample
from tests.app.rl.toy import rand_obs, tiny_model, tiny_native

torch.set_num_threads(1)


def _slice(x: torch.Tensor, h: int, a: int) -> torch.Tensor:
    return x[:, :h, :a]


def _sde_step_reference(
    x: torch.Tensor, v: torch.Tensor, t: float, a_lvl: float, delta: float
) -> tuple[torch.Tensor, float]:
    """Mean and std of one reverse-SDE step, written out from the equations (docs/algorithm.md)."""
    sigma = a_lvl * math.sqrt(t / (delta if t == 1.0 else 1.0 - t))
    x_eps = x + (1.0 - t) * v
    return x - delta * (v + sigma**2 / (2 * t) * x_eps), sigma * math.sqrt(delta)


@pytest.mark.parametrize(
    ("reduce", "prior"), [("sum", False), ("mean", True), ("sum", True), ("mean", False)]
)
def test_flow_noise_logprob_is_the_chain_gaussian_density(reduce: str, prior: bool) -> None:
    model = tiny_model(method="flow_noise", exec_horizon=3, logprob_reduce=reduce, include_prior=prior)
    gen = torch.Generator().manual_seed(0)
    obs = rand_obs(5, gen)
    s = sample(model, obs, generator=gen)
    pol, K, h, a = model.policy, 4, 3, model.policy.action_dim
    with torch.no_grad():
        ctx = pol.encode(obs)
        terms = []
        for k in range(K):
            t = torch.full((5,), 1.0 - k / K)
            v, feats = pol.velocity(s.chain[:, k], t, ctx)
            std = model.noise_head(feats)
            assert float(std.min()) >= 0.08 - 1e-6 and float(std.max()) <= 0.16 + 1e-6
            dist = Normal(_slice(s.chain[:, k] - v / K, h, a), _slice(std, h, a))
            terms.append(dist.log_prob(_slice(s.chain[:, k + 1], h, a)).sum(dim=(1, 2)))
        if prior:
            terms.append(Normal(0.0, 1.0).log_prob(_slice(s.chain[:, 0], h, a)).sum(dim=(1, 2)))
        expected = torch.stack(terms).sum(0)
        if reduce == "mean":
            expected = expected / len(terms)
    torch.testing.assert_close(s.logprob, expected, rtol=1e-5, atol=1e-4)
    # The chunk is the unnormalised last chain state.
    torch.testing.assert_close(s.actions, pol.unnormalize_actions(s.chain[:, -1]))


def test_flow_sde_hybrid_logprob_is_the_single_step_density() -> None:
    a_lvl = 0.5
    model = tiny_model(method="flow_sde", exec_horizon=4)
    gen = torch.Generator().manual_seed(1)
    obs = rand_obs(16, gen)
    s = sample(model, obs, generator=gen)
    pol, K = model.policy, 4
    delta = 1.0 / K
    assert set(s.sde_step.tolist()) <= set(range(K)) and len(set(s.sde_step.tolist())) > 1
    with torch.no_grad():
        ctx = pol.encode(obs)
        for b in range(16):
            j = int(s.sde_step[b])
            for k in range(K):
                t = 1.0 - k / K
                x = s.chain[b : b + 1, k]
                v, _ = pol.velocity(x, torch.tensor([t]), ctx[b : b + 1])
                if k != j:  # deterministic Euler step
                    torch.testing.assert_close(s.chain[b : b + 1, k + 1], x - delta * v, rtol=1e-5, atol=1e-5)
                    continue
                mean, std = _sde_step_reference(x, v, t, a_lvl, delta)
                if j == 0:
                    assert std == pytest.approx(a_lvl)
                lp = Normal(mean, std).log_prob(s.chain[b : b + 1, k + 1]).sum()
                assert float(s.logprob[b]) == pytest.approx(float(lp), rel=1e-5, abs=1e-4)


def test_flow_sde_full_chain_logprob_is_the_mean_of_every_step_density_and_the_prior() -> None:
    """hybrid=False (the demo's Flow-SDE): every step is an SDE step and every step is scored."""
    a_lvl, K, h = 0.5, 4, 3
    model = tiny_model(method="flow_sde", exec_horizon=h, sde=FlowSDEConfig(noise_level=a_lvl, hybrid=False))
    gen = torch.Generator().manual_seed(4)
    obs = rand_obs(6, gen)
    s = sample(model, obs, generator=gen)
    pol, delta, a = model.policy, 1.0 / K, model.policy.action_dim
    assert (s.sde_step == -1).all()
    with torch.no_grad():
        ctx = pol.encode(obs)
        terms = [Normal(0.0, 1.0).log_prob(_slice(s.chain[:, 0], h, a)).sum(dim=(1, 2))]
        for k in range(K):
            t = 1.0 - k / K
            x = s.chain[:, k]
            v, _ = pol.velocity(x, torch.full((6,), t), ctx)
            mean, std = _sde_step_reference(x, v, t, a_lvl, delta)
            # Not an Euler step: every transition carries its own noise.
            assert float((s.chain[:, k + 1] - (x - delta * v)).abs().max()) > 1e-3
            terms.append(
                Normal(_slice(mean, h, a), std).log_prob(_slice(s.chain[:, k + 1], h, a)).sum(dim=(1, 2))
            )
        expected = torch.stack(terms).mean(0)  # logprob_reduce="mean", include_prior=True (defaults)
    torch.testing.assert_close(s.logprob, expected, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(
        recompute_logprob(model, obs, s.chain, s.sde_step).detach(), s.logprob, rtol=0, atol=1e-5
    )


@pytest.mark.parametrize("method", ["flow_noise", "flow_sde"])
def test_ratio_is_one_before_any_update_even_in_another_minibatch(method: str) -> None:
    model = tiny_model(method=method)
    gen = torch.Generator().manual_seed(2)
    obs = rand_obs(32, gen)
    s = sample(model, obs, generator=gen)
    ev = evaluate_chain(model, obs, s.chain, s.sde_step)
    torch.testing.assert_close(ev.logprob.detach(), s.logprob, rtol=0, atol=1e-5)
    torch.testing.assert_close(
        recompute_logprob(model, obs, s.chain, s.sde_step).detach(), s.logprob, rtol=0, atol=1e-5
    )
    torch.testing.assert_close(ev.value.detach(), s.value)
    perm = torch.randperm(32, generator=gen)[:11]
    ev2 = evaluate_chain(model, {k: v[perm] for k, v in obs.items()}, s.chain[perm], s.sde_step[perm])
    ratio = torch.exp(ev2.logprob.detach() - s.logprob[perm])
    torch.testing.assert_close(ratio, torch.ones(11), rtol=0, atol=1e-5)


def test_deterministic_sampling_is_the_euler_ode() -> None:
    model = tiny_model(method="flow_noise")
    gen = torch.Generator().manual_seed(3)
    obs = rand_obs(4, gen)
    x0 = torch.randn(4, 4, 2, generator=gen)
    a = sample(model, obs, mode="deterministic", x0=x0)
    b = sample(model, obs, mode="deterministic", x0=x0)
    assert torch.equal(a.actions, b.actions)
    assert torch.isnan(a.logprob).all()
    x = x0
    with torch.no_grad():
        ctx = model.policy.encode(obs)
        for k in range(4):
            v, _ = model.policy.velocity(x, torch.full((4,), 1.0 - k / 4), ctx)
            x = x - v / 4
    torch.testing.assert_close(a.actions, model.policy.unnormalize_actions(x))


def test_bad_inputs_say_what_is_wrong() -> None:
    model = tiny_model(method="flow_sde")
    gen = torch.Generator().manual_seed(4)
    obs = rand_obs(2, gen)
    s = sample(model, obs, generator=gen)
    with pytest.raises(ValueError, match="sde_step"):
        evaluate_chain(model, obs, s.chain, torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match="K\\+1"):
        evaluate_chain(model, obs, s.chain[:, :3], s.sde_step)
    with pytest.raises(ValueError, match="mode"):
        sample(model, obs, mode="greedy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dot-free"):
        NativeFlowConfig(image_keys=("cam.front",))
    with pytest.raises(KeyError, match="observation.state"):
        sample(model, {"state": obs["observation.state"]})


class _PerTokenPolicy(NativeFlowPolicy):
    """The native policy, but giving the noise head one feature vector per action token (as pi0 does)."""

    def __init__(self) -> None:
        super().__init__(tiny_native().cfg)
        self.noise_features_per_token = True
        self.noise_feature_dim = 5

    def velocity(self, x_t, t, ctx):
        v, _ = super().velocity(x_t, t, ctx)
        return v, torch.cat([x_t, v, t.view(-1, 1, 1).expand(-1, x_t.shape[1], 1)], dim=-1)[..., :5]


def test_per_token_noise_features_give_per_token_stds() -> None:
    torch.manual_seed(0)
    model = PIRLModel(_PerTokenPolicy(), PIRLConfig(method="flow_noise", exec_horizon=None))
    assert model.noise_head is not None and model.noise_head.per_token
    gen = torch.Generator().manual_seed(0)
    obs = rand_obs(3, gen)
    s = sample(model, obs, generator=gen)
    ev = evaluate_chain(model, obs, s.chain, s.sde_step)
    torch.testing.assert_close(ev.logprob.detach(), s.logprob, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="noise_features_per_token"):
        model.noise_head(torch.zeros(3, 5))


@pytest.mark.parametrize("num_steps", [3, 4, 10])
@pytest.mark.parametrize(
    ("method", "hybrid"),
    [("flow_sde", True), ("flow_sde", False), ("flow_noise", False)],
    ids=["sde_hybrid", "sde_full", "noise"],
)
def test_rescored_logprob_equals_behaviour_logprob_at_any_step_count(
    method: str, hybrid: bool, num_steps: int
) -> None:
    """Sampler and re-scorer share one time grid (sampling.time_grid), so the ratio before any update is 1
    (bitwise on CPU) also at K = 3 and 10, whose 1 - k/K is not exact in float32 (a grid computed twice
    differed by one ulp and the hybrid Flow-SDE log-prob by up to ~1e-5)."""
    model = tiny_model(
        method=method, num_steps=num_steps, exec_horizon=3, sde=FlowSDEConfig(noise_level=0.5, hybrid=hybrid)
    )
    gen = torch.Generator().manual_seed(10 + num_steps)
    obs = rand_obs(64, gen)
    s = sample(model, obs, generator=gen)
    if hybrid:
        assert len(set(s.sde_step.tolist())) == num_steps  # every step j is exercised
    with torch.no_grad():
        lp = evaluate_chain(model, obs, s.chain, s.sde_step).logprob
    torch.testing.assert_close(lp, s.logprob, rtol=0, atol=1e-7)
    assert float(torch.exp(lp - s.logprob).sub(1.0).abs().max()) <= 1e-7


@pytest.mark.parametrize(
    ("reduce", "prior"), [("sum", False), ("sum", True), ("mean", False), ("mean", True)]
)
def test_flow_noise_entropy_is_aggregated_like_the_logprob(reduce: str, prior: bool) -> None:
    """Entropy = the K step entropies sum 0.5*log(2*pi*e*sigma^2) over the executed slice, plus (with
    include_prior) the constant entropy of N(0, I) on that slice; summed, or divided by the same count as
    the log-prob (K+1 with the prior, K without)."""
    K, h = 3, 3
    model = tiny_model(
        method="flow_noise", num_steps=K, exec_horizon=h, logprob_reduce=reduce, include_prior=prior
    )
    gen = torch.Generator().manual_seed(7)
    obs = rand_obs(5, gen)
    s = sample(model, obs, generator=gen)
    pol, a = model.policy, model.policy.action_dim
    ev = evaluate_chain(model, obs, s.chain, s.sde_step)
    with torch.no_grad():
        ctx = pol.encode(obs)
        terms = []
        for k in range(K):
            _, feats = pol.velocity(s.chain[:, k], torch.full((5,), 1.0 - k / K), ctx)
            std = _slice(model.noise_head(feats), h, a).double()
            terms.append((0.5 * torch.log(2 * math.pi * math.e * std**2)).sum(dim=(1, 2)))
        if prior:
            terms.append(torch.full((5,), h * a * 0.5 * math.log(2 * math.pi * math.e), dtype=torch.float64))
        expected = torch.stack(terms).sum(0)
        if reduce == "mean":
            expected = expected / (K + 1 if prior else K)
    torch.testing.assert_close(ev.entropy.detach().double(), expected, rtol=1e-6, atol=1e-5)
    # Flow-SDE has no learned std: no entropy term, whatever the aggregation.
    sde = tiny_model(method="flow_sde", num_steps=K, logprob_reduce=reduce, include_prior=prior)
    s2 = sample(sde, obs, generator=gen)
    assert torch.equal(evaluate_chain(sde, obs, s2.chain, s2.sde_step).entropy, torch.zeros(5))
