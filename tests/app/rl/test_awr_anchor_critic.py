"""AWR on takeovers and successes, the demo anchor, critic pre-training on Monte-Carlo returns, last-layer
training and the robot-minute preset."""

from __future__ import annotations

import math

import pytest
import torch

from app.rl.awr import anchor_coef, awr_targets, awr_weights, success_rows
from app.rl.config import OptimConfig, PIRLConfig, PPOConfig
from app.rl.config_robot_minute import ROBOT_MINUTE_OVERRIDES, ReplayConfig, robot_minute_preset
from app.rl.gae import monte_carlo_returns
from app.rl.losses import flow_matching_loss, weighted_flow_matching_loss
from app.rl.trainer import PIRLTrainer
from tests.app.rl.toy import bandit_batch, rand_obs, tiny_model, tiny_native

torch.set_num_threads(1)
TARGET = torch.tensor([0.8, -0.5])


def _cfg(method: str = "flow_sde") -> dict:
    return {
        "method": method,
        "exec_horizon": 3,
        "ppo": PPOConfig(epochs=2, minibatch_size=16),
        "optim": OptimConfig(actor_lr=1e-3, value_lr=3e-3),
    }


def _episodes(model, n_eps: int, chunks: int, seed: int = 0):
    n = n_eps * chunks
    b, _ = bandit_batch(model, n, torch.Generator().manual_seed(seed), TARGET)
    b.episode_id[:] = torch.arange(n) // chunks
    b.chunk_index[:] = torch.arange(n) % chunks
    b.done[:] = (torch.arange(n) % chunks) == chunks - 1
    b.reward[:] = 0.0
    return b


# -- AWR -------------------------------------------------------------------------------------------------
def test_awr_weights_match_hand_computation() -> None:
    w = awr_weights(torch.tensor([0.0, 1.0, -1.0, 10.0, 1e6]), beta=0.5, max_weight=20.0)
    assert w.tolist() == pytest.approx([1.0, math.exp(2.0), math.exp(-2.0), 20.0, 20.0], rel=1e-5)


def test_awr_targets_use_human_steps_and_successful_chain_ends() -> None:
    model = tiny_model(**_cfg())
    b = _episodes(model, 3, 2)  # episodes 0, 1, 2 of two chunks
    b.reward[1] = 1.0  # episode 0 succeeds
    b.reward[3] = 0.5  # episode 1 ends below the success reward
    b.reward[5] = 1.0
    b.done[5] = False  # episode 2 did not end here: not a success
    b.intervention[0] = True  # a takeover in episode 0, chunk 0, steps 1..2 only
    b.human_mask = torch.zeros(6, model.policy.chunk_size, dtype=torch.bool)
    b.human_mask[0, 1:3] = True
    b.human_action[0] = 7.0
    assert success_rows(b, 1.0).tolist() == [True, True, False, False, False, False]
    rows, actions, steps = awr_targets(b, model.policy.unnormalize_actions, True, True, 1.0)
    assert rows.tolist() == [True, True, False, False, False, False]
    assert steps[0].tolist() == [False, True, True, False] and bool(steps[1].all())
    assert torch.equal(actions[0], b.human_action[0])
    torch.testing.assert_close(actions[1], model.policy.unnormalize_actions(b.chain[1, -1]))
    rows_h, _, _ = awr_targets(b, model.policy.unnormalize_actions, True, False, 1.0)
    rows_s, _, _ = awr_targets(b, model.policy.unnormalize_actions, False, True, 1.0)
    assert rows_h.tolist() == [True] + [False] * 5 and rows_s.tolist() == [False, True] + [False] * 4


def test_weighted_flow_matching_reduces_to_flow_matching_and_weights_rows() -> None:
    torch.manual_seed(0)
    pol = tiny_native()
    gen = torch.Generator().manual_seed(0)
    obs = rand_obs(4, gen)
    actions = torch.randn(4, pol.chunk_size, pol.action_dim, generator=gen)
    ctx = pol.encode(obs)
    ones = weighted_flow_matching_loss(
        pol, ctx, actions, torch.ones(4), generator=torch.Generator().manual_seed(1)
    )
    plain = flow_matching_loss(pol, ctx, actions, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(ones, plain)
    # per-row errors, then the hand-weighted mean over the two kept rows
    per_row = [
        float(
            flow_matching_loss(
                pol, ctx, actions, mask=torch.arange(4) == i, generator=torch.Generator().manual_seed(1)
            ).detach()
        )
        for i in range(4)
    ]
    w = torch.tensor([2.0, 0.0, 5.0, 1.0])
    keep = torch.tensor([True, True, False, True])
    got = weighted_flow_matching_loss(
        pol, ctx, actions, w, mask=keep, generator=torch.Generator().manual_seed(1)
    )
    assert float(got.detach()) == pytest.approx((2 * per_row[0] + 0 + 1 * per_row[3]) / 3, rel=1e-5)


def test_awr_scores_only_the_steps_a_human_drove() -> None:
    model = tiny_model(seed=4, **_cfg())
    model.cfg.awr.coef = 1.0
    model.cfg.awr.beta = 2.0
    b, _ = bandit_batch(model, 16, torch.Generator().manual_seed(0), TARGET)
    b.intervention[:5] = True
    b.human_mask = torch.zeros(16, model.policy.chunk_size, dtype=torch.bool)
    b.human_mask[:4, :2] = True  # row 4: flagged, but no step was driven -> not an AWR row
    b.human_action[:4, :2] = 0.3
    trainer = PIRLTrainer(model, seed=0)
    p = trainer.prepare(b)
    assert p.awr_rows.tolist() == [True] * 4 + [False] * 12  # no success in a bandit with reward < 1
    assert torch.equal(p.awr_step_mask[:4], b.human_mask[:4])
    torch.testing.assert_close(p.awr_weight, torch.exp(p.advantages / 2.0).clamp(max=20.0))
    # the loss is the weighted mean over human rows of the error at their driven steps only
    ctx = model.encode(p.batch.obs)
    got = weighted_flow_matching_loss(
        model.policy, ctx, p.awr_actions, p.awr_weight, horizon=3, mask=p.awr_rows,
        generator=torch.Generator().manual_seed(2), step_mask=p.awr_step_mask,
    )  # fmt: skip
    per_row = [
        float(
            flow_matching_loss(
                model.policy,
                ctx,
                p.awr_actions,
                horizon=3,
                mask=torch.arange(16) == i,
                generator=torch.Generator().manual_seed(2),
                step_mask=p.awr_step_mask,
            ).detach()
        )  # fmt: skip
        for i in range(4)
    ]
    w = p.awr_weight[:4].tolist()
    assert float(got.detach()) == pytest.approx(
        sum(a * e for a, e in zip(w, per_row, strict=True)) / 4, rel=1e-5
    )
    m = trainer.update(b)
    assert m["losses/awr"] > 0 and m["charts/awr_chunks"] == 4


# -- anchor ----------------------------------------------------------------------------------------------
def test_anchor_coefficient_schedule() -> None:
    assert anchor_coef(0.0, 0.5, 0.1, 3) == 0.0
    assert anchor_coef(1.0, 0.5, 0.0, 3) == pytest.approx(0.125)
    assert anchor_coef(1.0, 0.5, 0.2, 3) == pytest.approx(0.2)
    assert anchor_coef(0.3, 1.0, 0.0, 100) == pytest.approx(0.3)


def _anchor_run(coef: float) -> tuple[float, float, list[float]]:
    """(demo loss before, after 12 updates, anchor coefficients) with anchor weight `coef`."""
    model = tiny_model(seed=5, **_cfg())
    model.cfg.anchor.coef = coef
    model.cfg.anchor.decay = 0.9
    model.cfg.anchor.batch_size = 32
    model.cfg.optim.actor_lr = 3e-3
    trainer = PIRLTrainer(model, seed=0)
    gen = torch.Generator().manual_seed(3)
    target = torch.tensor([0.5, -0.2]).expand(64, model.policy.chunk_size, 2).clone()
    demo = {**rand_obs(64, gen), "action": target}
    with pytest.raises(ValueError, match="action"):
        trainer.set_anchor_batch({**rand_obs(4, gen), "action": torch.zeros(4, 2)})
    trainer.set_anchor_batch(demo)

    def demo_loss() -> float:
        with torch.no_grad():
            ctx = model.encode({k: v for k, v in demo.items() if k != "action"})
            return float(
                flow_matching_loss(model.policy, ctx, target, generator=torch.Generator().manual_seed(0))
            )

    before = demo_loss()
    coefs = []
    for v in range(12):
        m = trainer.update(bandit_batch(model, 32, gen, TARGET, version=v)[0])
        if coef > 0:
            coefs.append(m["charts/anchor_coef"])
            assert m["losses/anchor"] > 0
        else:
            assert "losses/anchor" not in m
    return before, demo_loss(), coefs


def test_anchor_loss_pulls_the_policy_towards_the_demo_batch() -> None:
    before, anchored, coefs = _anchor_run(5.0)
    before0, free, _ = _anchor_run(0.0)
    assert before == before0
    assert coefs == pytest.approx([5.0 * 0.9**u for u in range(12)])
    assert anchored < before - 0.1 and anchored < free - 0.05, (before, anchored, free)


# -- critic pre-training ---------------------------------------------------------------------------------
def test_monte_carlo_returns_match_hand_computation() -> None:
    reward = torch.tensor([1.0, 0.0, 2.0, 1.0, 3.0])
    episode = torch.tensor([0, 0, 0, 1, 1])
    done = torch.tensor([False, False, True, False, False])
    trunc = torch.tensor([False, False, False, False, True])
    boot = torch.tensor([0.0, 0.0, 9.0, 0.0, 10.0])
    g = monte_carlo_returns(reward, done, trunc, boot, episode, gamma=0.5)
    assert g.tolist() == pytest.approx([1 + 0.5 * (0 + 0.5 * 2), 0 + 0.5 * 2, 2.0, 1 + 0.5 * (3 + 5), 3 + 5])


def test_pretrain_critic_reduces_value_error_on_mc_returns_and_moves_only_the_value_head() -> None:
    model = tiny_model(seed=6, **_cfg())
    model.cfg.critic_pretrain.steps = 300
    model.cfg.gae.gamma = 0.9
    trainer = PIRLTrainer(model, seed=0)
    eps = _episodes(model, 16, 4, seed=1)
    # success (reward 1 at the end) iff the episode's first state coordinate is > 0; the state carries that
    # coordinate through the episode and the chunk index, so the discounted return is learnable from it
    state = eps.obs["observation.state"]
    state[:, 0] = state[::4, 0].repeat_interleave(4)
    state[:, 1] = eps.chunk_index.float()
    eps.reward[3::4] = (state[::4, 0] > 0).float()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    m = trainer.pretrain_critic(eps)
    assert m["critic_pretrain/steps"] == 300 and m["critic_pretrain/episodes"] == 16
    assert m["critic_pretrain/value_mse_after"] < 0.3 * m["critic_pretrain/value_mse_before"], m
    moved = {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}
    assert moved and all(n.startswith("value_head") for n in moved)
    assert m == pytest.approx(m)  # finite floats
    assert trainer.pretrain_critic(eps, steps=0)["critic_pretrain/steps"] == 0


# -- last expert layers ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n", "expert_prefixes"),
    [(1, ("policy.expert_out",)), (2, ("policy.expert_out", "policy.expert_trunk.2"))],
)
def test_trainable_expert_layers_train_heads_and_the_last_layers_only(n: int, expert_prefixes: tuple) -> None:
    model = tiny_model(seed=1, **_cfg("flow_noise"), trainable_expert_layers=n)
    trainer = PIRLTrainer(model, seed=0)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    allowed = ("noise_head", "value_head", *expert_prefixes)
    assert all(t.startswith(allowed) for t in trainable)
    assert all(any(t.startswith(a) for t in trainable) for a in allowed)
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    trainer.update(bandit_batch(model, 32, torch.Generator().manual_seed(0), TARGET)[0])
    for k, p in model.named_parameters():
        assert torch.equal(before[k], p.detach()) == (k not in trainable), k
    assert set(trainer.get_trainable_state()) == trainable
    with pytest.raises(ValueError, match="trainable_expert_layers"):
        PIRLTrainer(tiny_model(**_cfg(), trainable_expert_layers=9))


# -- config and preset -----------------------------------------------------------------------------------
def test_defaults_are_off_and_the_preset_switches_the_method_on() -> None:
    cfg = PIRLConfig()
    assert not cfg.replay.enabled and cfg.replay.dual_clip is None
    assert cfg.awr.coef == 0 and cfg.anchor.coef == 0 and cfg.critic_pretrain.steps == 0
    assert cfg.trainable_expert_layers == 0 and not cfg.staleness.decoupled
    fast = robot_minute_preset(cfg, replay__utd=1.0)
    assert not cfg.replay.enabled  # the input is untouched
    assert fast.replay.enabled and fast.replay.utd == 1.0 and fast.staleness.decoupled
    assert fast.replay.dual_clip == ROBOT_MINUTE_OVERRIDES["replay.dual_clip"]
    assert fast.awr.coef > 0 and fast.anchor.coef > 0 and fast.critic_pretrain.steps > 0
    assert fast.staleness.max_staleness >= fast.replay.max_versions
    with pytest.raises(AttributeError):
        robot_minute_preset(cfg, replay__nope=1)
    with pytest.raises(ValueError, match="max_versions"):
        robot_minute_preset(cfg, replay__max_versions=5)
    with pytest.raises(ValueError, match="dual_clip"):
        ReplayConfig(dual_clip=0.5)
