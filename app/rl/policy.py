"""The narrow interface PI-RL needs from any flow-matching policy.

PI-RL treats the denoising chain as the stochastic part of the policy, so all it needs from a model is:
encode an observation once per chunk, give the velocity field v(x_t, t | context), expose features for
the noise head (Flow-Noise) and the value head, and say which parameters are which. SmolVLA, pi0/pi05 and
the native flow policy each implement this in an adapter; the samplers and losses never see anything
model-specific.

Conventions (same as LeRobot/openpi): t = 1 is noise, t = 0 is the action; x_t = (1-t)*a + t*eps;
the network predicts v ~= eps - a. Actions inside the chain are in the model's normalised space and
padded to `model_action_dim`; only `[..., :chunk_size, :action_dim]` is ever executed or scored.
"""

from __future__ import annotations

import abc
from typing import Any

import torch
from torch import nn

Context = Any  # whatever the adapter needs per chunk (prefix embeddings, KV cache, features...)


class FlowPolicy(nn.Module, abc.ABC):
    """A flow-matching action-chunk policy, seen through what PI-RL needs."""

    #: Actions per chunk (H) produced by one chain.
    chunk_size: int
    #: Real action dimension (the slice that is executed and enters log-probs).
    action_dim: int
    #: Width of x_t inside the model (>= action_dim; pi0 pads to 32).
    model_action_dim: int
    #: Width of the per-step features `velocity` returns for the Flow-Noise head.
    noise_feature_dim: int
    #: False: `velocity` returns noise features [B, F] (one per chain); True: [B, H, F] (one per action
    #: token, as pi0's expert naturally gives).
    noise_features_per_token: bool = False
    #: Width of `value_features` for the value head.
    value_feature_dim: int

    @abc.abstractmethod
    def encode(self, obs: dict[str, Any]) -> Context:
        """Run the observation encoder once per chunk (batched). Must not depend on x_t or t."""

    @abc.abstractmethod
    def velocity(self, x_t: torch.Tensor, t: torch.Tensor, ctx: Context) -> tuple[torch.Tensor, torch.Tensor]:
        """v(x_t, t | ctx) with shape [B, H, model_action_dim], and features for the noise head at this
        step ([B, noise_feature_dim], or [B, H, noise_feature_dim] if `noise_features_per_token`).
        `t` has shape [B] (each chain may sit at a different t). x_t and t arrive as float32 (PI-RL keeps
        chains in float32); cast inside if the model runs in another dtype. Must be differentiable in the
        trainable parameters and deterministic given its inputs (PI-RL recomputes it to score stored
        chains)."""

    @abc.abstractmethod
    def value_features(self, ctx: Context) -> torch.Tensor:
        """Features [B, value_feature_dim] the value head reads (one value per chunk)."""

    @abc.abstractmethod
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Named parameter groups, e.g. {"expert": [...], "encoder": [...]}. The PI-RL config picks which
        groups train; everything else is frozen (requires_grad=False)."""

    def normalize_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Robot-unit actions [B, H, action_dim] -> the model's space (padded). Default: identity + pad."""
        pad = self.model_action_dim - actions.shape[-1]
        return torch.nn.functional.pad(actions, (0, pad)) if pad > 0 else actions

    def unnormalize_actions(self, x: torch.Tensor) -> torch.Tensor:
        """The model's space [B, H, model_action_dim] -> robot units [B, H, action_dim]."""
        return x[..., : self.action_dim]
