"""Self-imitation through the anchor (`rl.anchor.success_chunks`): successful policy chunks join the pool."""

from __future__ import annotations

import pytest
import torch

from app.rl.config import OptimConfig, PIRLConfig, PPOConfig
from app.rl.losses import flow_matching_loss
from app.rl.trainer import PIRLTrainer
from tests.app.rl.toy import bandit_batch, rand_obs, tiny_model

torch.set_num_threads(1)
TARGET = torch.tensor([0.8, -0.5])


def _model(success_chunks: int, coef: float = 1.0, seed: int = 0):
    model = tiny_model(
        seed=seed,
        method="flow_noise",
        exec_horizon=3,
        ppo=PPOConfig(epochs=1, minibatch_size=16),
        optim=OptimConfig(actor_lr=3e-3, value_lr=3e-3),
    )
    model.cfg.anchor.coef = coef
    model.cfg.anchor.decay = 1.0
    model.cfg.anchor.batch_size = 16
    model.cfg.anchor.success_chunks = success_chunks
    return model


def _episodes(model, n_eps: int, chunks: int, version: int = 0, seed: int = 0, first_id: int = 0):
    """Episodes of `chunks` chunks; even episodes succeed (reward 1 and done at their last chunk)."""
    n = n_eps * chunks
    b, _ = bandit_batch(model, n, torch.Generator().manual_seed(seed), TARGET, version=version)
    ep = torch.arange(n) // chunks
    b.episode_id[:] = first_id + ep
    b.chunk_index[:] = torch.arange(n) % chunks
    last = (torch.arange(n) % chunks) == chunks - 1
    b.done[:] = last & (ep % 2 == 0)
    b.truncated[:] = last & (ep % 2 == 1)
    b.reward[:] = (last & (ep % 2 == 0)).float()
    return b


def test_only_successful_policy_chunks_join_with_their_executed_actions_and_the_oldest_leave() -> None:
    model = _model(success_chunks=5)
    trainer = PIRLTrainer(model, seed=0)
    b = _episodes(model, 4, 2)  # episodes 0 and 2 succeed: rows 0, 1, 4, 5
    b.intervention[1] = True  # a human chunk of a successful episode: not the policy's, left out
    added = trainer.add_anchor_successes(b)
    assert added == 3
    pool = trainer.success_pool
    assert pool is not None
    rows = [0, 4, 5]
    torch.testing.assert_close(pool["observation.state"], b.obs["observation.state"][rows])
    torch.testing.assert_close(pool["action"], model.policy.unnormalize_actions(b.chain[rows][:, -1]))
    # three more successes: capacity 5, the oldest row (episode 0's) leaves first
    b2 = _episodes(model, 2, 3, seed=1, first_id=10)  # episode 10 succeeds: 3 rows
    assert trainer.add_anchor_successes(b2) == 3
    assert trainer.success_pool["action"].shape[0] == 5
    torch.testing.assert_close(
        trainer.success_pool["observation.state"][:2], b.obs["observation.state"][[4, 5]]
    )
    torch.testing.assert_close(trainer.success_pool["observation.state"][2:], b2.obs["observation.state"][:3])


def test_off_by_default_and_the_pool_is_demos_plus_successes() -> None:
    assert PIRLConfig().anchor.success_chunks == 0
    model = _model(success_chunks=0)
    trainer = PIRLTrainer(model, seed=0)
    m = trainer.update(_episodes(model, 4, 2))
    assert trainer.success_pool is None and "charts/anchor_success_pool" not in m
    assert "losses/anchor" not in m  # no demo batch, no successes: nothing to anchor to

    model = _model(success_chunks=100)
    trainer = PIRLTrainer(model, seed=0)
    gen = torch.Generator().manual_seed(3)
    demo = {**rand_obs(7, gen), "action": torch.zeros(7, model.policy.chunk_size, 2)}
    trainer.set_anchor_batch(demo)
    m = trainer.update(_episodes(model, 4, 2))
    assert m["charts/anchor_success_added"] == 4 and m["charts/anchor_success_pool"] == 4
    assert m["losses/anchor"] > 0
    pool = trainer.anchor_pool()
    assert pool["action"].shape[0] == 11
    torch.testing.assert_close(pool["action"][:7], demo["action"])
    # without demos the successes alone are the anchor (self-imitation)
    model = _model(success_chunks=100)
    trainer = PIRLTrainer(model, seed=0)
    assert "losses/anchor" in trainer.update(_episodes(model, 4, 2))


def test_the_pool_survives_a_checkpoint_round_trip() -> None:
    model = _model(success_chunks=50)
    trainer = PIRLTrainer(model, seed=0)
    trainer.update(_episodes(model, 4, 2))
    state = trainer.state_dict()
    buf = __import__("io").BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    fresh = PIRLTrainer(_model(success_chunks=50), seed=0)
    fresh.load_state_dict(loaded)
    for k, v in trainer.success_pool.items():
        assert torch.equal(fresh.success_pool[k], v)


def test_self_imitation_pulls_the_flow_towards_the_successful_actions() -> None:
    """A policy whose successes all executed one action chunk moves towards it with the pool on."""

    def run(success_chunks: int) -> float:
        model = _model(success_chunks=success_chunks, coef=5.0, seed=2)
        trainer = PIRLTrainer(model, seed=0)
        goal = torch.tensor([0.5, -0.2])
        probe = rand_obs(32, torch.Generator().manual_seed(9))
        for v in range(10):
            b = _episodes(model, 8, 2, version=v, seed=v, first_id=100 * v)
            # the successful episodes executed `goal` (their chain end, in the model's space)
            ok = b.done.clone()
            ok[:-1] |= b.done[1:] & (b.episode_id[:-1] == b.episode_id[1:])
            x_goal = (goal - model.policy.action_mean) / model.policy.action_std
            b.chain[ok, -1, :, :2] = x_goal
            trainer.update(b)
        with torch.no_grad():
            ctx = model.encode(probe)
            target = goal.expand(32, model.policy.chunk_size, 2).clone()
            return float(
                flow_matching_loss(model.policy, ctx, target, generator=torch.Generator().manual_seed(0))
            )

    with_pool, without = run(200), run(0)
    assert with_pool < without - 0.05, (with_pool, without)


def test_success_chunks_is_validated() -> None:
    cfg = PIRLConfig()
    cfg.anchor.success_chunks = -1
    with pytest.raises(ValueError, match="success_chunks"):
        cfg.anchor.__post_init__()
