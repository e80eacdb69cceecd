"""Flow-SDE preserves the ODE's marginals: checked with a velocity field we know in closed form.

If actions a ~ N(m, s^2) and x_t = (1-t)*a + t*eps, the exact flow-matching velocity is linear:
v(x, t) = -m + c(t) * (x - (1-t)*m) with c(t) = (t - (1-t)*s^2) / ((1-t)^2*s^2 + t^2). The ODE from
N(0, 1) then ends (up to Euler error) at N(m, s^2); a marginal-preserving SDE must end at the same law.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from app.rl.config import FlowSDEConfig, PIRLConfig
from app.rl.model import PIRLModel
from app.rl.policy import FlowPolicy
from app.rl.sampling import sample

M, S = 0.7, 0.5


class LinearFlowPolicy(FlowPolicy):
    """The exact velocity of a 1-D Gaussian action distribution (a test double of the interface)."""

    def __init__(self) -> None:
        super().__init__()
        self.chunk_size, self.action_dim, self.model_action_dim = 1, 1, 1
        self.noise_feature_dim, self.value_feature_dim = 1, 1
        self.gain = nn.Parameter(torch.ones(()))  # lets the "expert" group exist; stays 1

    def encode(self, obs):
        return obs["observation.state"]

    def velocity(self, x_t, t, ctx):
        tb = t.view(-1, 1, 1)
        c = (tb - (1 - tb) * S**2) / ((1 - tb) ** 2 * S**2 + tb**2)
        v = -M + c * (x_t - (1 - tb) * M)
        return self.gain * v, torch.zeros(x_t.shape[0], 1)

    def value_features(self, ctx):
        return ctx

    def parameter_groups(self):
        return {"expert": [self.gain]}


def _final(deterministic: bool, hybrid: bool, n: int, k: int, seed: int) -> torch.Tensor:
    """Final chain states of n chains: the ODE (deterministic) or the configured Flow-SDE."""
    cfg = PIRLConfig(method="flow_sde", num_steps=k, exec_horizon=None, sde=FlowSDEConfig(hybrid=hybrid))
    model = PIRLModel(LinearFlowPolicy(), cfg)
    obs = {"observation.state": torch.zeros(n, 1)}
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, 1, 1, generator=gen)
    mode = "deterministic" if deterministic else "train"
    return sample(model, obs, mode=mode, generator=gen, x0=x0).actions.flatten()


@pytest.mark.parametrize("hybrid", [False, True])
def test_flow_sde_keeps_the_ode_marginal_mean_and_variance(hybrid: bool) -> None:
    torch.set_num_threads(1)
    n, k = 50_000, 100
    ode = _final(True, hybrid, n, k, seed=0)
    sde = _final(False, hybrid, n, k, seed=0)
    # Both land on N(M, S^2) up to Euler error (~3% in variance at K=100; measured) and sampling error
    # (standard error: mean ~ S/sqrt(n) = 0.002, variance ~ 0.6%).
    for x in (ode, sde):
        assert float(x.mean()) == pytest.approx(M, abs=0.01)
        assert float(x.var()) == pytest.approx(S**2, rel=0.045)
    assert float(sde.var()) == pytest.approx(float(ode.var()), rel=0.03)
    # And it really is stochastic: the same x0 seed gives different samples than the ODE.
    assert float((sde - ode).abs().mean()) > 0.01


def test_a_naive_sde_without_the_score_correction_would_fail_this_test() -> None:
    """Guard against a test that cannot fail: adding noise to the ODE without the drift correction
    inflates the variance well beyond the tolerance used above."""
    torch.set_num_threads(1)
    n, k = 50_000, 100
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(n, 1, 1, generator=gen)
    pol = LinearFlowPolicy()
    with torch.no_grad():
        for i in range(k):
            t = torch.full((n,), 1.0 - i / k)
            v, _ = pol.velocity(x, t, None)
            tt = 1.0 - i / k
            sigma = 0.5 * (tt / (1.0 / k if tt == 1.0 else 1.0 - tt)) ** 0.5
            x = x - v / k + sigma * (1.0 / k) ** 0.5 * torch.randn(x.shape, generator=gen)
    assert float(x.var()) > S**2 * 1.2
