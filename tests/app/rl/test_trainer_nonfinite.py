"""The trainer's non-finite guard: a NaN/inf loss or gradient skips the optimiser step (weights and AdamW
moments untouched), the skip is counted in `losses/skipped_nonfinite` and warned about, and the next good
update trains as usual (NaN poisoning used to be permanent: every later update `vloss nan`)."""

from __future__ import annotations

import logging
import math

import pytest
import torch

import app.rl.trainer as trainer_mod
from app.rl.config import OptimConfig, PPOConfig
from app.rl.trainer import SKIPPED_KEY, PIRLTrainer
from tests.app.rl.toy import bandit_batch, tiny_model

torch.set_num_threads(1)
TARGET = torch.tensor([0.8, -0.5])


def _setup(max_grad_norm: float = 0.5):
    model = tiny_model(
        method="flow_noise",
        algorithm="ppo",
        exec_horizon=4,
        ppo=PPOConfig(epochs=2, minibatch_size=16, max_grad_norm=max_grad_norm),
        optim=OptimConfig(actor_lr=1e-3, value_lr=3e-3),
    )
    trainer = PIRLTrainer(model, seed=0)
    batch, _ = bandit_batch(model, 32, torch.Generator().manual_seed(0), TARGET)
    return model, trainer, batch


def _trainable(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _nan_loss(*args, **kwargs):
    return torch.tensor(float("nan"), requires_grad=True)


def _nan_gradient(real):
    """A finite value whose gradient is NaN (the gradient of sqrt below 0 through an untaken branch)."""

    def loss(value, *args, **kwargs):
        base = real(value, *args, **kwargs)
        poison = torch.where(torch.tensor(True), torch.zeros(()), torch.sqrt(-value.abs().sum() - 1.0))
        return base + poison

    return loss


def test_a_nan_loss_skips_every_step_leaves_weights_and_optimiser_untouched_then_trains(monkeypatch, caplog):
    model, trainer, batch = _setup()
    before = _trainable(model)
    monkeypatch.setattr(trainer_mod, "value_loss", _nan_loss)
    with caplog.at_level(logging.WARNING, logger="pirl.rl.trainer"):
        metrics = trainer.update(batch)
    steps = int(metrics["rl/minibatch_steps"])
    assert steps == 4 and metrics[SKIPPED_KEY] == steps
    after = _trainable(model)
    assert all(torch.equal(before[n], after[n]) for n in before)  # unchanged, hence finite
    assert not trainer.optimizer.state  # AdamW never stepped: its moments hold no NaN
    assert "losses/value_loss" not in metrics  # no NaN average reported as a loss
    assert all(math.isfinite(v) for v in metrics.values())
    assert any("skipped 4 of 4 minibatch steps with a non-finite loss" in r.message for r in caplog.records)
    assert trainer.policy_version == 1

    monkeypatch.undo()  # the next good batch trains as usual
    batch2, _ = bandit_batch(model, 32, torch.Generator().manual_seed(1), TARGET, version=1)
    metrics = trainer.update(batch2)
    assert SKIPPED_KEY not in metrics and math.isfinite(metrics["losses/value_loss"])
    moved = _trainable(model)
    assert any(not torch.equal(before[n], moved[n]) for n in before)
    assert all(bool(t.isfinite().all()) for t in moved.values())


@pytest.mark.parametrize("max_grad_norm", [0.5, 0.0])
def test_a_nan_gradient_with_a_finite_loss_is_skipped(monkeypatch, max_grad_norm):
    model, trainer, batch = _setup(max_grad_norm)
    before = _trainable(model)
    monkeypatch.setattr(trainer_mod, "value_loss", _nan_gradient(trainer_mod.value_loss))
    metrics = trainer.update(batch)
    assert metrics[SKIPPED_KEY] == metrics["rl/minibatch_steps"]
    assert all(torch.equal(before[n], p) for n, p in _trainable(model).items())
    assert all(p.grad is None for p in model.parameters())  # nothing left over for the next step


def test_only_the_bad_steps_are_skipped_and_the_averages_stay_finite(monkeypatch):
    model, trainer, batch = _setup()
    before = _trainable(model)
    real, calls = trainer_mod.value_loss, []

    def sometimes_nan(*args, **kwargs):
        calls.append(1)
        return _nan_loss() if len(calls) == 2 else real(*args, **kwargs)

    monkeypatch.setattr(trainer_mod, "value_loss", sometimes_nan)
    metrics = trainer.update(batch)
    assert metrics[SKIPPED_KEY] == 1.0 and metrics["rl/minibatch_steps"] == 4
    assert math.isfinite(metrics["losses/value_loss"]) and math.isfinite(metrics["losses/total_loss"])
    after = _trainable(model)
    assert any(not torch.equal(before[n], after[n]) for n in before)
    assert all(bool(t.isfinite().all()) for t in after.values())


def test_non_finite_weights_after_an_update_are_an_error_not_pushed(monkeypatch):
    model, trainer, batch = _setup()
    with torch.no_grad():
        next(p for p in model.parameters() if p.requires_grad).view(-1)[0] = float("inf")
    with pytest.raises(FloatingPointError, match="not finite"):
        trainer.update(batch)
