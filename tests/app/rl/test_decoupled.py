"""Decoupled PPO (version-interpolated proximal policy, behaviour weights, weight mask) and dual clip."""

from __future__ import annotations

import math

import pytest
import torch

from app.rl.config import OptimConfig, PPOConfig
from app.rl.losses import decoupled_proximal, ppo_policy_loss
from app.rl.trainer import PIRLTrainer
from tests.app.rl.toy import bandit_batch, tiny_model

torch.set_num_threads(1)
TARGET = torch.tensor([0.8, -0.5])


def _cfg(method: str = "flow_sde") -> dict:
    return {
        "method": method,
        "exec_horizon": 4,
        "ppo": PPOConfig(epochs=2, minibatch_size=16),
        "optim": OptimConfig(actor_lr=1e-3, value_lr=3e-3),
    }


@pytest.mark.parametrize(
    ("v_theta", "v_b", "alpha"),
    [
        (5, 5, 0.0),  # on-policy: pi_prox = pi_b
        (5, 4, 0.0),  # one version old: (5-1-4)/(5-4) = 0
        (5, 3, 0.5),  # (5-1-3)/(5-3)
        (5, 1, 0.75),  # (5-1-1)/(5-1)
        (5, 6, 0.0),  # from the future: clipped to 0
        (10, 0, 0.9),
    ],
)
def test_decoupled_proximal_matches_hand_computation(v_theta: int, v_b: int, alpha: float) -> None:
    lp_b = torch.tensor([-1.0, 2.0, 0.5])
    lp_t = torch.tensor([-0.2, 1.0, 0.5])
    prox, w, a = decoupled_proximal(lp_b, lp_t, v_theta, torch.full((3,), v_b))
    assert a.tolist() == pytest.approx([alpha] * 3)
    expected = [b + alpha * (t - b) for b, t in zip(lp_b.tolist(), lp_t.tolist(), strict=True)]
    assert prox.tolist() == pytest.approx(expected, abs=1e-6)
    assert w.tolist() == pytest.approx(
        [math.exp(e - b) for e, b in zip(expected, lp_b.tolist(), strict=True)]
    )
    if alpha == 0.0:  # reduces to plain PPO against the behaviour log-prob, bit for bit
        assert torch.equal(prox, lp_b) and torch.equal(w, torch.ones(3))


def test_dual_clip_bounds_the_loss_of_negative_advantage_rows() -> None:
    old = torch.zeros(4)
    new = torch.log(torch.tensor([10.0, 0.5, 10.0, 1.1])).requires_grad_(True)
    adv = torch.tensor([-1.0, -1.0, 1.0, -2.0])
    mask = torch.ones(4, dtype=torch.bool)
    plain, _ = ppo_policy_loss(new, old, adv, mask, 0.2)
    loss, stats = ppo_policy_loss(new, old, adv, mask, 0.2, dual_clip=3.0)
    # row 0: max(10, 1.2) = 10 -> min(10, 3) = 3; row 1: max(0.5, 0.8) = 0.8 (< 3, unchanged);
    # row 2 (A > 0): max(-10, -1.2) = -1.2 (dual clip never touches it); row 3: max(2.2, 2.2) = 2.2 < 6
    assert float(plain.detach()) == pytest.approx((10 + 0.8 - 1.2 + 2.2) / 4)
    assert float(loss.detach()) == pytest.approx((3 + 0.8 - 1.2 + 2.2) / 4)
    assert stats["losses/dual_clipfrac"] == pytest.approx(1 / 4)
    loss.backward()
    assert new.grad is not None and float(new.grad[0]) == 0.0  # the bounded row has no gradient


def test_on_policy_rows_make_decoupled_ppo_equal_plain_ppo() -> None:
    def run(decoupled: bool) -> dict[str, torch.Tensor]:
        model = tiny_model(seed=2, **_cfg("flow_noise"))
        model.cfg.staleness.decoupled = decoupled
        trainer = PIRLTrainer(model, seed=0, policy_version=4)
        batch, _ = bandit_batch(model, 32, torch.Generator().manual_seed(0), TARGET, version=4)
        batch.policy_version[:10] = 3  # one version old: alpha = 0 too
        trainer.update(batch)
        return {n: p.detach().clone() for n, p in model.named_parameters()}

    a, b = run(False), run(True)
    for n in a:
        assert torch.equal(a[n], b[n]), n


def test_rows_above_the_behaviour_weight_threshold_are_masked() -> None:
    model = tiny_model(**_cfg())
    model.cfg.staleness.decoupled = True
    model.cfg.staleness.max_staleness = 4
    trainer = PIRLTrainer(model, seed=0, policy_version=4)
    batch, _ = bandit_batch(model, 16, torch.Generator().manual_seed(0), TARGET, version=0)  # age 4
    lp_theta = batch.logprob.clone()  # untouched model: current log-prob = behaviour log-prob
    # alpha = 3/4; weight = exp(0.75 * (lp_theta - lp_b)); lp_b lowered by d -> weight exp(0.75 d)
    batch.logprob[:4] -= 1.0  # exp(0.75) = 2.12 > 2: masked
    batch.logprob[4:8] -= 0.9  # exp(0.675) = 1.96: kept
    batch.logprob[8:10] += 5.0  # weight < 1: kept
    p = trainer.prepare(batch)
    order = p.batch.episode_id  # rows come back sorted by episode = original order here
    assert order.tolist() == list(range(16))
    torch.testing.assert_close(p.weight[:4], torch.full((4,), math.exp(0.75)), rtol=1e-4, atol=1e-4)
    assert p.masked_by_weight.tolist() == [True] * 4 + [False] * 12
    assert p.policy_mask.tolist() == [False] * 4 + [True] * 12
    torch.testing.assert_close(p.prox_logprob, batch.logprob + 0.75 * (lp_theta - batch.logprob))
    m = trainer.update(batch)
    assert m["losses/masked_by_weight_frac"] == pytest.approx(4 / 16)
    assert m["rl/policy_chunks"] == 12


def _garbled_pair(model, n=24, human=slice(0, 6)):
    batch, _ = bandit_batch(model, n, torch.Generator().manual_seed(0), TARGET)
    batch.intervention[human] = True
    batch.human_action[human] = 0.2
    garbled = batch.index(slice(None))
    garbled.logprob[human] = 1e6
    garbled.chain[human] = 123.0
    garbled.sde_step[human] = -1
    return batch, garbled


def test_human_rows_never_enter_the_ratio_under_replay_and_decoupled_ppo() -> None:
    def run(which: int) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        model = tiny_model(seed=3, **_cfg())
        model.cfg.replay.enabled = True
        model.cfg.replay.utd = 0.5
        model.cfg.replay.dual_clip = 3.0
        model.cfg.staleness.decoupled = True
        model.cfg.staleness.max_staleness = 4
        model.cfg.awr.coef = 0.5  # AWR reads human_action, never the human rows' chain
        model.cfg.awr.success = False
        trainer = PIRLTrainer(model, seed=0)
        metrics = {}
        for v in range(2):
            batch = _garbled_pair(model)[which]
            batch.episode_id += 100 * v
            batch.policy_version[:] = v
            metrics = trainer.update(batch)
        return {n: p.detach().clone() for n, p in model.named_parameters()}, metrics

    (a, ma), (b, _) = run(0), run(1)
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=0, atol=0, msg=n)
    assert ma["rl/intervention_chunks"] == 12 and ma["rl/policy_chunks"] == 36
    assert ma["charts/human_chunk_frac"] == pytest.approx(0.25)
    assert ma["losses/awr"] > 0
