"""The default update must not change: metrics and parameters on fixed seeds match a golden file that
was recorded from the trainer before the robot-minute options existed (replay, AWR, anchor, dual clip,
critic pre-training, last-layer training). Every new option defaults to off, so these numbers stay put.

Regenerate (only when a change of the default update is intended) with
`python -m tests.app.rl.test_trainer_regression`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from app.rl.config import OptimConfig, PPOConfig
from app.rl.trainer import PIRLTrainer
from tests.app.rl.toy import bandit_batch, tiny_model

GOLDEN = Path(__file__).with_name("golden_default_update.json")
TARGET = torch.tensor([0.8, -0.5])
SCENARIOS = ("flow_noise_ppo", "flow_sde_ppo", "flow_sde_grpo")


def _multi_chunk(batch, chunks: int = 4):
    """Turn one-chunk bandit rows into episodes of `chunks` rows (the last one done)."""
    n = len(batch)
    batch.episode_id[:] = torch.arange(n) // chunks
    batch.chunk_index[:] = torch.arange(n) % chunks
    batch.done[:] = (torch.arange(n) % chunks) == chunks - 1
    batch.group_id[:] = torch.arange(n) // (2 * chunks)
    return batch


def run_scenario(name: str) -> dict:
    method, algorithm = name.rsplit("_", 1)
    torch.set_num_threads(1)
    model = tiny_model(
        seed=7,
        method=method,
        algorithm=algorithm,
        exec_horizon=3,
        ppo=PPOConfig(epochs=2, minibatch_size=24),
        optim=OptimConfig(actor_lr=1e-3, value_lr=3e-3),
    )
    model.cfg.intervention.bc_coef = 0.5
    model.cfg.intervention.takeover_penalty = 0.3
    trainer = PIRLTrainer(model, seed=3)
    gen = torch.Generator().manual_seed(11)
    torch.manual_seed(5)  # the BC loss draws t and noise from the global generator
    history = []
    for u in range(3):
        batch, _ = bandit_batch(model, 48, gen, TARGET, version=trainer.policy_version)
        batch = _multi_chunk(batch)
        batch.intervention[4:8] = True
        batch.human_action[4:8] = 0.3
        batch.takeover_start[4] = True
        if u == 1:
            batch.policy_version[8:12] -= 2  # stale rows
            batch.done[8:12] = False
            batch.truncated[11] = True
            batch.bootstrap_value[11] = 0.7
        m = trainer.update(batch)
        m.pop("rl/update_seconds")
        history.append(m)
    params = {
        n: [float(p.detach().double().sum()), float(p.detach().double().abs().sum())]
        for n, p in model.named_parameters()
    }
    return {"metrics": history, "params": params}


def _close(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == pytest.approx(b, rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("name", SCENARIOS)
def test_default_update_matches_the_recorded_golden_run(name: str) -> None:
    golden = json.loads(GOLDEN.read_text())[name]
    got = run_scenario(name)
    assert len(got["metrics"]) == len(golden["metrics"])
    for u, (g, e) in enumerate(zip(got["metrics"], golden["metrics"], strict=True)):
        assert set(g) == set(e), (u, sorted(set(g) ^ set(e)))
        bad = {k: (g[k], e[k]) for k in e if not _close(g[k], e[k])}
        assert not bad, (u, bad)
    assert set(got["params"]) == set(golden["params"])
    bad = {
        n: (got["params"][n], v)
        for n, v in golden["params"].items()
        if not all(_close(a, b) for a, b in zip(got["params"][n], v, strict=True))
    }
    assert not bad, bad


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps({s: run_scenario(s) for s in SCENARIOS}, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
