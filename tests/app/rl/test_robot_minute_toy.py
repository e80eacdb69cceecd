"""Per-sample learning speed of the robot-minute preset against the on-policy baseline on the toy bandit.

Reported, not asserted (one seed of a toy says little): `pytest -s` prints the curves, and
`python -m tests.app.rl.test_robot_minute_toy` runs the longer comparison quoted in docs/algorithm.md.
The bandit's reward is -mean|action - target| (always < 0), so the toy's AWR success threshold is -0.5.
"""

from __future__ import annotations

import math

import torch

from app.rl.config import OptimConfig, PPOConfig
from app.rl.config_robot_minute import robot_minute_preset
from app.rl.sampling import sample
from app.rl.trainer import PIRLTrainer
from tests.app.rl.toy import bandit_batch, rand_obs, tiny_model

TARGET = torch.tensor([0.8, -0.5])


def evaluate(model, n: int = 512) -> float:
    """Mean reward of n fresh train-mode chunks (fixed seed)."""
    gen = torch.Generator().manual_seed(123)
    s = sample(model, rand_obs(n, gen), generator=gen)
    return float(-(s.actions[:, : model.exec_horizon] - TARGET).abs().mean(dim=(1, 2)).mean())


def learning_curve(
    preset: bool, budget: int, per_update: int, method: str = "flow_noise", seed: int = 0
) -> list[tuple[int, float]]:
    """(chunks used, evaluation reward) after every update, with the same model/optimiser settings as the
    bandit tests of test_trainer.py."""
    torch.set_num_threads(1)
    model = tiny_model(
        seed=seed,
        method=method,
        exec_horizon=4,
        ppo=PPOConfig(epochs=4, minibatch_size=64),
        optim=OptimConfig(actor_lr=1e-3, value_lr=3e-3),
    )
    if preset:
        model.cfg = robot_minute_preset(model.cfg, awr__success_reward=-0.5)
    trainer = PIRLTrainer(model, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    used, curve = 0, [(0, evaluate(model))]
    while used < budget:
        batch, _ = bandit_batch(model, per_update, gen, TARGET, version=trainer.policy_version)
        trainer.update(batch)
        used += per_update
        curve.append((used, evaluate(model)))
    return curve


def report(budget: int, methods: tuple[str, ...]) -> dict[str, list[tuple[int, float]]]:
    out = {}
    for method in methods:
        out[f"{method} baseline (128/update)"] = learning_curve(False, budget, 128, method)
        out[f"{method} baseline (32/update)"] = learning_curve(False, budget, 32, method)
        out[f"{method} robot-minute preset (32/update)"] = learning_curve(True, budget, 32, method)
    return out


def _print(curves: dict[str, list[tuple[int, float]]], every: int) -> None:
    for name, curve in curves.items():
        pts = " ".join(f"{u}:{r:.3f}" for u, r in curve if u % every == 0)
        print(f"{name:42s} {pts}")


def test_preset_learning_speed_is_reported_on_the_toy_bandit() -> None:
    curves = report(256, ("flow_noise",))
    _print(curves, 128)
    assert all(math.isfinite(r) for c in curves.values() for _, r in c)


if __name__ == "__main__":
    _print(report(2048, ("flow_noise", "flow_sde")), 512)
