"""A critic useful from the first update: regress the value head on Monte-Carlo returns of given episodes.

`pretrain_critic(model, episodes, ...)` takes whole episodes as a RolloutBatch (demos replayed through the
robot, BC rollouts: only obs, reward, done, truncated, bootstrap_value, episode_id and chunk_index are read),
computes G_i = r_i + gamma * G_{i+1} per episode (`gae.monte_carlo_returns`; the takeover penalty applies
as in the update), and trains ONLY the value head with its own AdamW for `steps` minibatch steps on the
Huber loss. The observation features are computed once, without gradients, so the encoder never moves and
a VLA pays one forward pass per chunk. The PPO critic warm-up (`rl.ppo.critic_warmup_updates`) still applies
afterwards.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from app.rl.batch import RolloutBatch
from app.rl.gae import monte_carlo_returns
from app.rl.model import PIRLModel


@torch.no_grad()
def value_features(model: PIRLModel, batch: RolloutBatch, minibatch: int = 256) -> torch.Tensor:
    """[N, F] value-head input features of every row (no gradients), in minibatches."""
    device = next(model.parameters()).device
    out = []
    model.eval()
    for start in range(0, len(batch), minibatch):
        mb = batch.index(slice(start, start + minibatch)).to(device)
        out.append(model.policy.value_features(model.encode(mb.obs)).float())
    return torch.cat(out)


def pretrain_critic(
    model: PIRLModel,
    episodes: RolloutBatch,
    steps: int,
    lr: float = 1e-3,
    batch_size: int = 256,
    gamma: float = 0.99,
    huber_delta: float | None = 10.0,
    takeover_penalty: float = 0.0,
    bootstrap_truncated: bool = True,
    seed: int = 0,
) -> dict[str, float]:
    """Train the value head on Monte-Carlo returns for `steps` steps. Returns cleanrl-style metrics
    (`critic_pretrain/value_mse_before`, `..._after`, `critic_pretrain/return_mean`, `critic_pretrain/steps`)."""
    if len(episodes) == 0:
        raise ValueError("pretrain_critic needs at least one episode")
    params = [p for p in model.value_head.parameters() if p.requires_grad]
    if not params:
        raise ValueError("pretrain_critic: the value head is frozen (add value_head to rl.trainable)")
    batch = episodes.sorted_by_episode()
    device = next(model.parameters()).device
    reward = batch.reward.float() - takeover_penalty * batch.takeover_start.float()
    done = batch.done if bootstrap_truncated else batch.done | batch.truncated
    returns = monte_carlo_returns(
        reward, done, batch.truncated, batch.bootstrap_value, batch.episode_id, gamma
    ).to(device)
    feats = value_features(model, batch)

    def mse() -> float:
        with torch.no_grad():
            return float(((model.value_head(feats).float() - returns) ** 2).mean())

    before = mse()
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    n = len(batch)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, n, (min(batch_size, n),), generator=gen).to(device)
        pred = model.value_head(feats[idx]).float()
        if huber_delta is None:
            loss = 0.5 * ((pred - returns[idx]) ** 2).mean()
        else:
            loss = F.huber_loss(pred, returns[idx], delta=huber_delta)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    return {
        "critic_pretrain/value_mse_before": before,
        "critic_pretrain/value_mse_after": mse(),
        "critic_pretrain/return_mean": float(returns.mean()),
        "critic_pretrain/steps": float(steps),
        "critic_pretrain/episodes": float(torch.unique(batch.episode_id).numel()),
    }
