"""ReplayBuffer (whole episodes, version and FIFO eviction, weights_only checkpoints), the UTD schedule and
the replay path of PIRLTrainer.update."""

from __future__ import annotations

import io

import pytest
import torch

from app.rl.batch import RolloutBatch
from app.rl.config import OptimConfig, PPOConfig
from app.rl.replay import ReplayBuffer, UTDSchedule, minibatch_schedule
from app.rl.trainer import PIRLTrainer
from tests.app.rl.toy import bandit_batch, tiny_model

torch.set_num_threads(1)
TARGET = torch.tensor([0.8, -0.5])


def _model(**kw):
    model = tiny_model(
        seed=1,
        method="flow_sde",
        exec_horizon=4,
        ppo=PPOConfig(epochs=2, minibatch_size=8),
        optim=OptimConfig(actor_lr=1e-3, value_lr=3e-3),
    )
    model.cfg.replay.enabled = True
    model.cfg.staleness.decoupled = True
    model.cfg.staleness.max_staleness = 4
    for k, v in kw.items():
        setattr(model.cfg.replay, k, v)
    return model


def _episodes(model, first_id: int, n_eps: int, chunks: int, version: int, seed: int = 0) -> RolloutBatch:
    """n_eps episodes of `chunks` rows each, ids first_id.., all from `version`."""
    n = n_eps * chunks
    b, _ = bandit_batch(model, n, torch.Generator().manual_seed(seed + first_id), TARGET, version=version)
    b.episode_id[:] = first_id + torch.arange(n) // chunks
    b.chunk_index[:] = torch.arange(n) % chunks
    b.done[:] = (torch.arange(n) % chunks) == chunks - 1
    return b


def _ids(buf: ReplayBuffer) -> list[int]:
    return sorted(set(buf.batch().episode_id.tolist()))


def test_versions_evict_whole_episodes_beyond_the_last_s() -> None:
    model = _model()
    buf = ReplayBuffer(capacity_chunks=1000, max_versions=2)
    for v in range(4):
        buf.add(_episodes(model, 10 * v, 2, 3, version=v))
    assert _ids(buf) == [20, 21, 30, 31]  # versions 2 and 3 remain
    assert buf.total_added == 24 and buf.total_evicted == 12 and len(buf) == 12
    # an episode counts by its newest chunk: one that began under v2 and ended under v4 stays
    mixed = _episodes(model, 40, 1, 4, version=4)
    mixed.policy_version[:2] = 2
    buf.add(mixed)
    assert _ids(buf) == [30, 31, 40]
    hist = buf.staleness_histogram(4)
    assert hist == pytest.approx({0: 2 / 10, 1: 6 / 10, 2: 2 / 10})


def test_capacity_evicts_oldest_whole_episodes_and_keeps_the_newest_batch() -> None:
    model = _model()
    buf = ReplayBuffer(capacity_chunks=10, max_versions=4)
    buf.add(_episodes(model, 0, 2, 3, version=0))  # 6 rows: episodes 0, 1
    buf.add(_episodes(model, 10, 1, 2, version=0))  # 8 rows
    buf.add(_episodes(model, 20, 1, 4, version=0))  # 12 > 10: episode 0 (oldest, first) leaves
    assert _ids(buf) == [1, 10, 20] and len(buf) == 9
    buf.add(_episodes(model, 30, 3, 4, version=0))  # 12 rows alone: everything older leaves, it stays whole
    assert _ids(buf) == [30, 31, 32] and len(buf) == 12
    # rows repeating (episode, chunk) replace the stored ones; the episode counts as re-inserted
    again = _episodes(model, 30, 1, 4, version=1, seed=9)
    buf.add(again)
    stored = buf.batch()
    rows = stored.episode_id == 30
    assert int(rows.sum()) == 4 and torch.equal(stored.reward[rows], again.reward)


def test_replay_state_round_trips_through_weights_only_torch_load_bit_exactly() -> None:
    model = _model()
    buf = ReplayBuffer(capacity_chunks=20, max_versions=3)
    for v in range(4):
        b = _episodes(model, 10 * v, 2, 3, version=v)
        b.human_mask = torch.zeros(len(b), model.policy.chunk_size, dtype=torch.bool)
        b.human_mask[0, :2] = True
        b.intervention[0] = True
        buf.add(b)
    blob = io.BytesIO()
    torch.save(buf.state_dict(), blob)
    blob.seek(0)
    state = torch.load(blob, weights_only=True)
    other = ReplayBuffer(capacity_chunks=20, max_versions=3)
    other.load_state_dict(state)
    a, b = buf.batch().to_dict(), other.batch().to_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    assert torch.equal(buf._seq, other._seq)  # noqa: SLF001
    assert (other.total_added, other.total_evicted) == (buf.total_added, buf.total_evicted)
    # both evolve identically afterwards
    nxt = _episodes(model, 50, 2, 3, version=4)
    buf.add(nxt)
    other.add(nxt)
    assert _ids(buf) == _ids(other)
    assert torch.equal(buf._seq, other._seq)  # noqa: SLF001


def test_trainer_checkpoint_with_replay_resumes_bit_exactly() -> None:
    def fresh():
        model = _model(utd=0.5)
        return model, PIRLTrainer(model, seed=0)

    model, trainer = fresh()
    for v in range(2):
        trainer.update(_episodes(model, 10 * v, 3, 2, version=v))
    blob = io.BytesIO()
    torch.save(
        {
            "trainer": trainer.state_dict(),
            "weights": model.state_dict(),
            "gen": trainer.generator.get_state(),
        },
        blob,
    )
    blob.seek(0)
    saved = torch.load(blob, weights_only=True)
    model2, trainer2 = fresh()
    model2.load_state_dict(saved["weights"])
    trainer2.load_state_dict(saved["trainer"])
    trainer2.generator.set_state(saved["gen"])
    assert len(trainer2.replay) == len(trainer.replay) == 12
    nxt = _episodes(model, 20, 3, 2, version=2)
    m1, m2 = trainer.update(nxt), trainer2.update(nxt)
    for n, p in model.named_parameters():
        assert torch.equal(p, dict(model2.named_parameters())[n]), n
    for k in m1:
        if k != "rl/update_seconds":
            assert m1[k] == m2[k] or (m1[k] != m1[k] and m2[k] != m2[k]), k


def test_utd_schedule_counts_gradient_steps_per_new_chunk() -> None:
    s = UTDSchedule(utd=0.25, min_steps=1, max_steps=100)
    assert [s.steps(10) for _ in range(4)] == [2, 3, 2, 3]  # 2.5 per update, the half carries over
    s = UTDSchedule(utd=0.1, min_steps=0, max_steps=100)
    assert [s.steps(4) for _ in range(5)] == [0, 0, 1, 0, 1]  # 0.4 per update
    s = UTDSchedule(utd=2.0, min_steps=1, max_steps=5)
    assert s.steps(10) == 5  # clamped
    state = s.state_dict()
    s2 = UTDSchedule(utd=2.0)
    s2.load_state_dict(state)
    assert s2.carry == s.carry


def test_minibatch_schedule_draws_distinct_rows_and_covers_the_buffer() -> None:
    sched = minibatch_schedule(10, 4, 5, torch.Generator().manual_seed(0))
    assert len(sched) == 5 and all(len(ix) == 4 and len(set(ix.tolist())) == 4 for ix in sched)
    assert set(torch.cat(sched[:2]).tolist()) | set(sched[2].tolist()) == set(range(10))
    assert [len(ix) for ix in minibatch_schedule(3, 8, 2, torch.Generator())] == [3, 3]


def test_replay_update_runs_utd_times_new_chunks_steps_over_the_buffer() -> None:
    model = _model(utd=0.5, max_versions=2)
    trainer = PIRLTrainer(model, seed=0)
    sizes, steps = [], []
    for v in range(4):
        m = trainer.update(_episodes(model, 10 * v, 3, 2, version=trainer.policy_version))
        sizes.append(m["replay/size_chunks"])
        steps.append(m["rl/minibatch_steps"])
        assert m["replay/grad_steps"] == m["rl/minibatch_steps"] == 3  # 0.5 x 6 new chunks
        assert m["replay/utd"] == pytest.approx(0.5) and m["replay/new_chunks"] == 6
        assert m["rl/chunks"] == m["replay/size_chunks"]
    assert sizes == [6, 12, 12, 12]  # two versions of 6 chunks
    assert m["replay/staleness_hist_0"] == pytest.approx(0.5) and m[
        "replay/staleness_hist_1"
    ] == pytest.approx(0.5)
    assert m["replay/staleness_hist_2"] == 0.0
    assert "losses/masked_by_weight_frac" in m and "charts/human_chunk_frac" in m


def test_replay_values_are_recomputed_with_the_current_critic() -> None:
    model = _model(utd=1.0)
    trainer = PIRLTrainer(model, seed=0)
    batch = _episodes(model, 0, 4, 2, version=0)
    batch.value[:] = 123.0  # stale rollout values must not be used
    trainer.update(batch)
    p = trainer.prepare(trainer.replay.batch())
    with torch.no_grad():
        v = model.predict_value(p.batch.obs)
    torch.testing.assert_close(p.old_value, v)
    assert float(p.old_value.abs().max()) < 100
