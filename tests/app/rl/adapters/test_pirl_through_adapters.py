"""PI-RL's own samplers through each VLA adapter: a stored chain re-scores to exactly its behaviour
log-prob (PPO ratio 1 before any update), and the update's gradient reaches the trainable groups only."""

from __future__ import annotations

import pytest
import torch

from tests.app.rl.adapters.conftest import Built

sampling = pytest.importorskip("app.rl.sampling")


@pytest.mark.parametrize("method", ["flow_noise", "flow_sde"])
def test_sample_then_rescore_gives_ratio_one(built: Built, method: str) -> None:
    from app.rl.config import PIRLConfig
    from app.rl.model import PIRLModel

    cfg = PIRLConfig(method=method, num_steps=4, exec_horizon=5)
    model = PIRLModel(built.adapter, cfg)
    try:
        g = torch.Generator().manual_seed(11)
        s = sampling.sample(model, built.obs, mode="train", generator=g)
        assert s.actions.shape == (3, 10, 6) and torch.isfinite(s.logprob).all()
        ev = sampling.evaluate_chain(model, built.obs, s.chain, s.sde_step)
        ratio = torch.exp(ev.logprob - s.logprob)
        assert torch.equal(ratio, torch.ones_like(ratio)), ratio
        # One surrogate step: gradients land on the expert and heads, never on the frozen VLM.
        (-(ratio * torch.tensor([1.0, -0.5, 0.3])).mean() + ev.value.square().mean()).backward()
        groups = model.parameter_groups()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in groups["expert"])
        assert all(p.grad is None for p in groups["vlm"])
        assert all(p.grad is not None for p in groups["value_head"])
    finally:
        for p in built.adapter.parameters():
            p.requires_grad_(False)
            p.grad = None
