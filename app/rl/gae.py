"""Generalised advantage estimation over chunks (the outer MDP), with bootstrap of truncated episodes."""

from __future__ import annotations

import torch


def episode_ends(episode_id: torch.Tensor) -> torch.Tensor:
    """[N] bool: the row is the last of its episode in this (episode-contiguous) batch."""
    last = torch.ones_like(episode_id, dtype=torch.bool)
    last[:-1] = episode_id[1:] != episode_id[:-1]
    return last


@torch.no_grad()
def compute_gae(
    reward: torch.Tensor,
    value: torch.Tensor,
    done: torch.Tensor,
    truncated: torch.Tensor,
    bootstrap_value: torch.Tensor,
    episode_id: torch.Tensor,
    gamma: float = 0.99,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns (advantage + value), both [N].

    Rows must be grouped by episode and in time order. For row i the next value is V[i+1] inside an
    episode; after the episode's last row it is 0 if `done` (terminal), else `bootstrap_value[i]` (a
    truncation, or an episode the batch cut mid-way). `done` wins over `truncated` on the same row.
    delta_i = r_i + gamma*V_next - V_i; A_i = delta_i + gamma*lam*A_{i+1} (A resets at episode ends).
    """
    n = reward.shape[0]
    for name, x in (
        ("value", value),
        ("done", done),
        ("truncated", truncated),
        ("bootstrap", bootstrap_value),
    ):
        if x.shape[0] != n:
            raise ValueError(f"compute_gae: {name} has {x.shape[0]} rows, reward has {n}")
    reward = reward.to(torch.float32)
    value = value.to(torch.float32)
    last = episode_ends(episode_id)
    next_value = torch.zeros(n, dtype=torch.float32, device=reward.device)
    if n > 1:
        next_value[:-1] = value[1:]
    tail = torch.where(done.bool(), torch.zeros_like(value), bootstrap_value.to(torch.float32))
    next_value = torch.where(last, tail, next_value)
    delta = reward + gamma * next_value - value
    deltas, lasts = delta.tolist(), last.tolist()
    out = [0.0] * n
    running = 0.0
    for i in range(n - 1, -1, -1):
        running = deltas[i] + (0.0 if lasts[i] else gamma * lam * running)
        out[i] = running
    adv = torch.tensor(out, dtype=torch.float32, device=reward.device)
    return adv, adv + value


@torch.no_grad()
def monte_carlo_returns(
    reward: torch.Tensor,
    done: torch.Tensor,
    truncated: torch.Tensor,
    bootstrap_value: torch.Tensor,
    episode_id: torch.Tensor,
    gamma: float = 0.99,
) -> torch.Tensor:
    """Discounted returns G_i = r_i + gamma * G_{i+1} within each episode [N] (rows grouped by episode, in
    time order). After an episode's last row G continues from 0 if `done`, else from `bootstrap_value`
    (a truncation, or a cut episode): exactly `compute_gae` with V = 0 and lambda = 1."""
    zeros = torch.zeros(reward.shape[0], dtype=torch.float32, device=reward.device)
    _, returns = compute_gae(reward, zeros, done, truncated, bootstrap_value, episode_id, gamma, 1.0)
    return returns
