"""Small shared builders for the PI-RL tests: a tiny native model and a one-chunk bandit rollout."""

from __future__ import annotations

import torch

from app.rl.batch import RolloutBatch
from app.rl.config import PIRLConfig
from app.rl.model import PIRLModel
from app.rl.native import NativeFlowConfig, NativeFlowPolicy
from app.rl.sampling import sample

STATE_DIM, ACTION_DIM, CHUNK = 3, 2, 4


def tiny_native(chunk: int = CHUNK, **kw) -> NativeFlowPolicy:
    cfg = NativeFlowConfig(
        state_dim=STATE_DIM,
        action_dim=ACTION_DIM,
        chunk_size=chunk,
        obs_hidden=32,
        expert_hidden=64,
        time_embed_dim=16,
        **kw,
    )
    return NativeFlowPolicy(cfg)


def tiny_model(seed: int = 0, chunk: int = CHUNK, **rl_kw) -> PIRLModel:
    torch.manual_seed(seed)
    return PIRLModel(tiny_native(chunk), PIRLConfig(**rl_kw))


def rand_obs(n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    return {"observation.state": torch.randn(n, STATE_DIM, generator=gen)}


def bandit_batch(
    model: PIRLModel,
    n: int,
    gen: torch.Generator,
    target: torch.Tensor,
    version: int = 0,
    group_size: int = 8,
) -> tuple[RolloutBatch, float]:
    """n one-chunk episodes with reward -mean|action - target| over the executed slice."""
    obs = rand_obs(n, gen)
    s = sample(model, obs, generator=gen)
    h = model.exec_horizon
    reward = -(s.actions[:, :h] - target).abs().mean(dim=(1, 2))
    zeros_b = torch.zeros(n, dtype=torch.bool)
    batch = RolloutBatch(
        obs=obs,
        chain=s.chain,
        sde_step=s.sde_step,
        logprob=s.logprob,
        value=s.value,
        reward=reward,
        done=torch.ones(n, dtype=torch.bool),
        truncated=zeros_b,
        bootstrap_value=torch.zeros(n),
        intervention=zeros_b.clone(),
        human_action=torch.zeros(n, model.policy.chunk_size, model.policy.action_dim),
        takeover_start=zeros_b.clone(),
        policy_version=torch.full((n,), version, dtype=torch.long),
        episode_id=torch.arange(n),
        chunk_index=torch.zeros(n, dtype=torch.long),
        group_id=torch.arange(n) // group_size,
    )
    return batch, float(reward.mean())
