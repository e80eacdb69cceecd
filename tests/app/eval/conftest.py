"""Small saved pirl_flow policies for the eval tests (untrained: what matters here is the path, the
bookkeeping and the files, not the success rate; successes come from the scripted expert's takeovers)."""

from __future__ import annotations

import pytest
import torch

from app.rl.config import PIRLConfig
from app.rl.lerobot_policy import PIRLFlowConfig, PIRLFlowPolicy
from app.rl.native import NativeFlowConfig


def save_policy(path, state_dim: int = 9, action_dim: int = 6, image_keys: tuple[str, ...] = ()) -> str:
    torch.manual_seed(0)
    native = NativeFlowConfig(
        state_dim=state_dim,
        action_dim=action_dim,
        chunk_size=10,
        obs_hidden=32,
        expert_hidden=32,
        time_embed_dim=8,
        image_keys=image_keys,
        image_size=(32, 32),
        image_channels=4,
    )
    cfg = PIRLFlowConfig(
        native=native, rl=PIRLConfig(num_steps=4, exec_horizon=5), device="cpu", push_to_hub=False
    )
    PIRLFlowPolicy(cfg).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def reach_policy(tmp_path_factory) -> str:
    """A policy for the sim reach task: 9 state values (6 joints + target x/y/z), 6 actions."""
    return save_policy(tmp_path_factory.mktemp("policy") / "reach")


@pytest.fixture(scope="session")
def joints_policy(tmp_path_factory) -> str:
    """A policy for a bare arm: 6 joint positions in, 6 out (the real follower without task keys)."""
    return save_policy(tmp_path_factory.mktemp("policy") / "joints", state_dim=6)
