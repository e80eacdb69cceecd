"""The two small heads PI-RL adds to any flow policy: the Flow-Noise std head and the chunk value head."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


def _mlp(in_dim: int, hidden: Sequence[int], out_dim: int, act: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    d = in_dim
    for h in hidden:
        layers += [nn.Linear(d, h), act()]
        d = h
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


class NoiseHead(nn.Module):
    """Learned per-element std of a Flow-Noise step, bounded through the log-variance.

    logvar = lo + (hi - lo) * (tanh(o) + 1) / 2 with lo, hi = log(std_min^2), log(std_max^2), so the std
    can never collapse or explode whatever the optimiser does. Reads either one feature vector per chain
    ([B, F] -> one output per chunk element; per_token=False) or one per action token ([B, H, F] -> one per
    action dim; per_token=True). The last layer starts at zero, so the initial std is the geometric mean of
    the bounds.
    """

    def __init__(
        self,
        feature_dim: int,
        chunk_size: int,
        action_dim: int,
        hidden: Sequence[int] = (128, 64),
        std_min: float = 0.08,
        std_max: float = 0.16,
        per_token: bool = False,
    ) -> None:
        super().__init__()
        self.chunk_size, self.action_dim = chunk_size, action_dim
        self.logvar_min = 2.0 * math.log(std_min)
        self.logvar_max = 2.0 * math.log(std_max)
        self.per_token = per_token
        self.mlp = _mlp(feature_dim, hidden, action_dim if per_token else chunk_size * action_dim, nn.Tanh)
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """std [B, H, action_dim] from step features [B, F] or [B, H, F]."""
        want = 3 if self.per_token else 2
        if features.dim() != want:
            raise ValueError(
                f"noise features must have {want} dims ({'[B, H, F]' if self.per_token else '[B, F]'}), got "
                f"shape {tuple(features.shape)}; check the adapter's noise_features_per_token"
            )
        o = self.mlp(features.to(self.mlp[0].weight.dtype))
        if not self.per_token:
            o = o.view(-1, self.chunk_size, self.action_dim)
        logvar = self.logvar_min + (self.logvar_max - self.logvar_min) * (torch.tanh(o) + 1.0) / 2.0
        return torch.exp(0.5 * logvar)


class ValueHead(nn.Module):
    """V(observation) for one chunk: an MLP from the adapter's value features to a scalar."""

    def __init__(self, feature_dim: int, hidden: Sequence[int] = (256, 128)) -> None:
        super().__init__()
        self.mlp = _mlp(feature_dim, hidden, 1, nn.SiLU)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """[B, F] -> [B]."""
        return self.mlp(features.to(self.mlp[0].weight.dtype)).squeeze(-1)
