"""PPO / value / GRPO / flow-matching losses against hand-computed numbers."""

from __future__ import annotations

import math

import pytest
import torch

from app.rl.losses import explained_variance, flow_matching_loss, grpo_advantages, ppo_policy_loss, value_loss
from tests.app.rl.toy import rand_obs, tiny_native


def test_ppo_loss_matches_hand_computation_with_clipping() -> None:
    old = torch.zeros(3)
    new = torch.log(torch.tensor([1.5, 0.5, 1.1]))
    adv = torch.tensor([1.0, 1.0, -2.0])
    loss, stats = ppo_policy_loss(new, old, adv, torch.ones(3, dtype=torch.bool), clip_coef=0.2)
    # row 0: min(1.5, 1.2) = 1.2; row 1: min(0.5, 0.8) = 0.5; row 2: min(-2.2, -2.2) = -2.2
    assert float(loss) == pytest.approx(-(1.2 + 0.5 - 2.2) / 3)
    assert stats["losses/clipfrac"] == pytest.approx(2 / 3)
    kl = [(r - 1) - math.log(r) for r in (1.5, 0.5, 1.1)]
    assert stats["losses/approx_kl"] == pytest.approx(sum(kl) / 3, rel=1e-5)


def test_masked_rows_contribute_nothing_to_ppo_loss_or_gradient() -> None:
    new = torch.tensor([0.1, -0.3, 80.0, float("inf")], requires_grad=True)
    old = torch.tensor([0.0, 0.0, -50.0, 0.0])
    adv = torch.tensor([1.0, -1.0, 1e9, 3.0])
    mask = torch.tensor([True, True, False, False])
    loss, stats = ppo_policy_loss(new, old, adv, mask, clip_coef=0.2)
    loss.backward()
    ref, _ = ppo_policy_loss(new.detach()[:2], old[:2], adv[:2], torch.ones(2, dtype=torch.bool), 0.2)
    assert float(loss.detach()) == pytest.approx(float(ref))
    assert new.grad is not None and torch.equal(new.grad[2:], torch.zeros(2))
    assert all(math.isfinite(v) for v in stats.values())
    # An all-masked minibatch gives a zero loss that still backpropagates.
    z, _ = ppo_policy_loss(new, old, adv, torch.zeros(4, dtype=torch.bool), 0.2)
    assert float(z.detach()) == 0.0 and z.requires_grad


def test_decoupled_weights_scale_the_surrogate() -> None:
    lp = torch.zeros(2)
    loss, _ = ppo_policy_loss(
        lp,
        lp,
        torch.ones(2),
        torch.ones(2, dtype=torch.bool),
        0.2,
        prox_logprob=lp,
        sample_weight=torch.tensor([2.0, 0.5]),
    )
    assert float(loss) == pytest.approx(-(2.0 + 0.5) / 2)


def test_value_loss_clipping_and_huber() -> None:
    v = torch.tensor([1.0, 3.0])
    old = torch.tensor([0.0, 0.0])
    ret = torch.tensor([0.0, 20.0])
    # No clip, MSE: 0.5 * [1, 289]
    assert float(value_loss(v, old, ret, None, None)) == pytest.approx((0.5 + 144.5) / 2)
    # Clip 0.2: row 0 max(0.5*1, 0.5*0.04)=0.5; row 1 max(0.5*289, 0.5*19.8^2)
    expected = (0.5 + max(0.5 * 17**2, 0.5 * 19.8**2)) / 2
    assert float(value_loss(v, old, ret, 0.2, None)) == pytest.approx(expected)
    # Huber delta 10: row 1 error 17 -> 10 * (17 - 5) = 120; row 0 error 1 -> 0.5
    assert float(value_loss(v, old, ret, None, 10.0)) == pytest.approx((0.5 + 120.0) / 2)


def test_explained_variance() -> None:
    y = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(y, y) == pytest.approx(1.0)
    assert explained_variance(torch.full((4,), 2.5), y) == pytest.approx(0.0)
    assert math.isnan(explained_variance(y, torch.ones(4)))


def test_grpo_advantages_are_group_relative_and_drop_uniform_groups() -> None:
    # Episodes: 0,1 (group 0: returns 1, 0), 2,3 (group 1: both 1 -> dropped), 4 (group -1), 5 alone (group 2).
    episode = torch.tensor([0, 0, 1, 2, 3, 4, 5])
    reward = torch.tensor([0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    group = torch.tensor([0, 0, 0, 1, 1, -1, 2])
    adv, valid = grpo_advantages(reward, episode, group)
    std = torch.tensor([1.0, 0.0]).std()
    assert valid.tolist() == [True, True, True, False, False, False, False]
    expected = float(0.5 / (std + 1e-6))
    assert adv[:3].tolist() == pytest.approx([expected, expected, -expected])
    assert adv[3:].tolist() == [0.0] * 4
    _, keep = grpo_advantages(reward, episode, group, drop_uniform_groups=False)
    assert keep[3:5].all()


def test_flow_matching_loss_respects_masks_and_trains_the_policy() -> None:
    torch.manual_seed(0)
    pol = tiny_native()
    gen = torch.Generator().manual_seed(0)
    obs = rand_obs(6, gen)
    actions = torch.randn(6, pol.chunk_size, pol.action_dim, generator=gen)
    ctx = pol.encode(obs)
    full = flow_matching_loss(pol, ctx, actions, generator=torch.Generator().manual_seed(1))
    masked = flow_matching_loss(
        pol, ctx, actions, mask=torch.tensor([1, 1, 0, 0, 0, 0]), generator=torch.Generator().manual_seed(1)
    )
    f, m = float(full.detach()), float(masked.detach())
    assert f > 0 and m > 0 and f != m
    masked.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in pol.parameters())


def test_flow_matching_step_mask_scores_only_marked_positions() -> None:
    torch.manual_seed(0)
    pol = tiny_native()
    gen = torch.Generator().manual_seed(0)
    obs = rand_obs(3, gen)
    actions = torch.randn(3, pol.chunk_size, pol.action_dim, generator=gen)
    ctx = pol.encode(obs)
    first_two = torch.zeros(3, pol.chunk_size, dtype=torch.bool)
    first_two[:, :2] = True
    a = flow_matching_loss(pol, ctx, actions, step_mask=first_two, generator=torch.Generator().manual_seed(1))
    b = flow_matching_loss(pol, ctx, actions, horizon=2, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    none = flow_matching_loss(pol, ctx, actions, step_mask=torch.zeros_like(first_two))
    assert float(none.detach()) == 0.0
