"""NaN poisoning is not permanent: an update whose loss is NaN leaves the learner's weights as they were
(and says so), the next good update trains, and the checkpoint writer never saves non-finite weights (the
learner logs the refusal and keeps the previous checkpoints)."""

from __future__ import annotations

import json
import logging

import pytest
import torch

import app.rl.trainer as trainer_mod
from app.learner.checkpoint import CheckpointManager, NonFiniteWeightsError
from app.learner.loop import Learner
from app.rl.trainer import SKIPPED_KEY
from tests.app.learner.test_learner import _prime, _rollout


def _weights(learner: Learner) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in learner.algorithm.model.trainable_tensors().items()}


def _metrics(learner: Learner) -> dict:
    return json.loads((learner.out / "metrics.jsonl").read_text().splitlines()[-1])


def test_save_refuses_non_finite_weights_and_keeps_the_previous_checkpoint(tmp_path):
    mgr = CheckpointManager(tmp_path / "checkpoints", keep=2)
    good = mgr.save(1, {"trainable": {"w": torch.ones(4)}}, {"updates": 1})
    for bad in (float("nan"), float("inf")):
        w = torch.ones(4)
        w[2] = bad
        with pytest.raises(
            NonFiniteWeightsError, match=r"v2: 1 weight tensor\(s\) hold NaN or inf \(trainable.w\)"
        ):
            mgr.save(2, {"trainable": {"w": w}, "algorithm": {}}, {"updates": 2})
    assert mgr.finished() == [good] and mgr.latest() == good
    assert (tmp_path / "checkpoints" / "LAST").read_text().strip() == "000001"
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))  # refused before anything was written
    # only the trainable weights are checked: not the optimiser's moments, not other entries
    mgr.save(3, {"trainable": {"w": torch.ones(4)}, "algorithm": {"m": torch.tensor([float("nan")])}}, {})


def test_a_nan_loss_update_leaves_the_weights_and_the_next_good_update_trains(
    run_config, monkeypatch, caplog
):
    learner = Learner(run_config("--learner.save_every=1"), progress=None)
    _prime(learner)
    before = _weights(learner)
    monkeypatch.setattr(
        trainer_mod, "value_loss", lambda *a, **k: torch.tensor(float("nan"), requires_grad=True)
    )
    learner.pending = [_rollout(learner, 0, 0), _rollout(learner, 1, 0)]
    with caplog.at_level(logging.WARNING):
        learner._update()
    m = _metrics(learner)
    assert m[SKIPPED_KEY] == m["rl/minibatch_steps"] >= 1 and m.get("losses/value_loss") is None
    assert any("non-finite loss" in r.getMessage() for r in caplog.records)
    after = _weights(learner)
    assert all(torch.equal(before[k], after[k]) for k in before)
    # the weights are finite, so the periodic checkpoint was written
    assert CheckpointManager(learner.out / "checkpoints").latest().name == "000001"

    monkeypatch.undo()
    learner.pending = [_rollout(learner, 2, 1), _rollout(learner, 3, 1)]
    learner._update()
    m = _metrics(learner)
    assert SKIPPED_KEY not in m and m["losses/value_loss"] is not None
    trained = _weights(learner)
    assert any(not torch.equal(before[k], trained[k]) for k in before)
    assert CheckpointManager(learner.out / "checkpoints").latest().name == "000002"


def test_the_learner_logs_a_refused_save_and_keeps_training(run_config, monkeypatch, caplog):
    learner = Learner(run_config("--learner.save_every=1"), progress=None)
    _prime(learner)
    learner.pending = [_rollout(learner, 0, 0), _rollout(learner, 1, 0)]
    learner._update()  # v1, saved
    real_update = learner.algorithm.update

    def poisoning_update(batches):  # a bug that lets NaN weights through the trainer's own guard
        stats = real_update(batches)
        with torch.no_grad():
            next(iter(learner.algorithm.model.trainable_tensors().values())).view(-1)[0] = float("nan")
        return stats

    monkeypatch.setattr(learner.algorithm, "update", poisoning_update)
    learner.pending = [_rollout(learner, 2, 1), _rollout(learner, 3, 1)]
    with caplog.at_level(logging.ERROR):
        learner._update()  # no exception: logged
    assert any("refused to save checkpoint v2" in r.getMessage() for r in caplog.records)
    mgr = CheckpointManager(learner.out / "checkpoints")
    assert [p.name for p in mgr.finished()] == ["000001"] and mgr.latest().name == "000001"
    assert learner.updates == 2
