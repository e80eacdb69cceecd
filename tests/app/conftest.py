"""Tiny PI-RL run configs shared by the in-process learner, actor and console tests (state-only sim, 1 s
episodes): small enough that a whole run fits in a few seconds on the 2-core CI machine."""

from __future__ import annotations

import pytest
import torch

from app.run.parse import parse_run_config


def tiny_run_config(tmp_path, *extra: str):
    torch.set_num_threads(1)
    args = [
        "--config", "configs/sim_pirl_reach.json",
        "--policy.native.obs_hidden=32", "--policy.native.expert_hidden=32", "--policy.native.time_embed_dim=8",
        "--policy.rl.value_hidden=[32]", "--policy.rl.noise.hidden=[16]",
        "--policy.rl.ppo.epochs=1", "--policy.rl.ppo.minibatch_size=32",
        "--algorithm.chunks_per_update=12", "--episode.time_limit_s=1.0",
        "--transport.port=0", "--transport.backoff_initial_s=0.05", "--transport.backoff_max_s=0.3",
        f"--learner.output_dir={tmp_path / 'run'}", "--learner.tensorboard=false", "--learner.progress=false",
        "--actor.progress_every=0", "--actor.sample_seed=0",
        *extra,
    ]  # fmt: skip
    return parse_run_config(args)


@pytest.fixture
def run_config(tmp_path, monkeypatch):
    monkeypatch.chdir(__import__("pathlib").Path(__file__).resolve().parents[2])
    return lambda *extra: tiny_run_config(tmp_path, *extra)
