"""A small native flow-matching policy that trains in minutes on a CPU (adapter (c) of the FlowPolicy).

Observation encoder: normalised state (+ optional environment state) through an MLP, plus an optional
tiny conv encoder per camera. Action expert: an MLP over [flattened x_t, sinusoidal time embedding,
observation embedding] that predicts the velocity of the whole chunk. Its last hidden layer feeds the
Flow-Noise head; the observation embedding feeds the value head.

Normalisation statistics are buffers (saved with the weights) set from data by `set_normalization`, so the
policy speaks robot units at its boundary and unit-scale numbers inside.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from app.rl.config import as_tuple
from app.rl.lora import LoRALinear, add_lora, lora_parameters
from app.rl.policy import FlowPolicy

STATE_KEY = "observation.state"
ENV_STATE_KEY = "observation.environment_state"
IMAGE_PREFIX = "observation.images."


@dataclass
class NativeFlowConfig:
    """Shape and width of the native flow policy."""

    state_dim: int = 6  # size of observation.state
    env_state_dim: int = 0  # size of observation.environment_state (0: not used)
    # Camera names read from observation.images.<cam> ([B, 3, H, W] floats in 0..1); empty: no images.
    image_keys: tuple[str, ...] = ()
    action_dim: int = 6  # robot action dimension
    chunk_size: int = 10  # actions per chunk (H)
    obs_hidden: int = 128  # width of the observation encoder (and of the value features)
    expert_hidden: int = 256  # width of the velocity MLP (and of the noise features)
    expert_layers: int = 2  # hidden layers of the velocity MLP
    time_embed_dim: int = 32  # sinusoidal embedding of t
    image_channels: int = 16  # channels of the first conv of the image encoder (second is 2x)
    # Camera frame size (height, width) advertised in the LeRobot features; the encoder pools globally,
    # so other sizes work too.
    image_size: tuple[int, int] = (96, 96)

    def __post_init__(self) -> None:
        self.image_keys = as_tuple(self.image_keys, str)
        self.image_size = as_tuple(self.image_size, int)  # type: ignore[assignment]
        bad = [k for k in self.image_keys if not k or "." in k]
        if bad:
            raise ValueError(
                f"camera names must be non-empty and dot-free (observation.images.<cam>); got {bad}"
            )
        if self.state_dim < 1 or self.action_dim < 1 or self.chunk_size < 1:
            raise ValueError(
                f"native policy needs state_dim, action_dim and chunk_size >= 1; got {self.state_dim}, "
                f"{self.action_dim}, {self.chunk_size}"
            )

    # LoRA on the expert's linear layers (0: none). Their parameters form the "lora" group; train them
    # with rl.trainable=("lora", "noise_head", "value_head") to keep the pre-trained expert frozen.
    lora_rank: int = 0
    lora_alpha: float = 16.0  # LoRA scale is lora_alpha / lora_rank


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """[B] in [0, 1] -> [B, dim]; periods log-spaced from 4e-3 to 4 (as pi0's time embedding)."""
    half = dim // 2
    frac = torch.linspace(0.0, 1.0, half, dtype=t.dtype, device=t.device)
    period = 4e-3 * (4.0 / 4e-3) ** frac
    ang = t[:, None] * (2 * math.pi / period)[None, :]
    return torch.cat([torch.sin(ang), torch.cos(ang)], dim=-1)


class _ImageEncoder(nn.Module):
    """Two strided convs and a global average: a few thousand parameters per camera."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, channels, 5, stride=2, padding=2),
            nn.SiLU(),
            nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.out_dim = 2 * channels

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.net(img * 2.0 - 1.0)


class NativeFlowPolicy(FlowPolicy):
    """State (+ images) -> action chunk by flow matching; the velocity MLP is the "expert" group."""

    def __init__(self, cfg: NativeFlowConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.chunk_size = cfg.chunk_size
        self.action_dim = cfg.action_dim
        self.model_action_dim = cfg.action_dim
        self.noise_feature_dim = cfg.expert_hidden
        self.value_feature_dim = cfg.obs_hidden
        self.noise_features_per_token = False

        self.register_buffer("state_mean", torch.zeros(cfg.state_dim))
        self.register_buffer("state_std", torch.ones(cfg.state_dim))
        self.register_buffer("env_mean", torch.zeros(cfg.env_state_dim))
        self.register_buffer("env_std", torch.ones(cfg.env_state_dim))
        self.register_buffer("action_mean", torch.zeros(cfg.action_dim))
        self.register_buffer("action_std", torch.ones(cfg.action_dim))

        self.image_encoders = nn.ModuleDict({k: _ImageEncoder(cfg.image_channels) for k in cfg.image_keys})
        in_dim = cfg.state_dim + cfg.env_state_dim + sum(e.out_dim for e in self.image_encoders.values())
        self.obs_encoder = nn.Sequential(
            nn.Linear(in_dim, cfg.obs_hidden),
            nn.SiLU(),
            nn.Linear(cfg.obs_hidden, cfg.obs_hidden),
            nn.SiLU(),
        )
        flat = cfg.chunk_size * cfg.action_dim
        layers: list[nn.Module] = []
        d = flat + cfg.time_embed_dim + cfg.obs_hidden
        for _ in range(cfg.expert_layers):
            layers += [nn.Linear(d, cfg.expert_hidden), nn.SiLU()]
            d = cfg.expert_hidden
        self.expert_trunk = nn.Sequential(*layers)
        self.expert_out = nn.Linear(cfg.expert_hidden, flat)
        if cfg.lora_rank > 0:
            add_lora(self.expert_trunk, cfg.lora_rank, cfg.lora_alpha)
            self.expert_out = LoRALinear(self.expert_out, cfg.lora_rank, cfg.lora_alpha)

    # -- normalisation -------------------------------------------------------------------------------
    @torch.no_grad()
    def set_normalization(self, stats: dict[str, dict[str, torch.Tensor]]) -> None:
        """stats[key] = {"mean": ..., "std": ...} for observation.state, observation.environment_state
        and action (any subset). Stds below 1e-3 are clamped so constant features do not blow up."""
        names = {STATE_KEY: "state", ENV_STATE_KEY: "env", "action": "action"}
        for key, st in stats.items():
            if key not in names:
                raise KeyError(f"unknown normalisation key {key!r}; expected one of {sorted(names)}")
            mean_buf = getattr(self, f"{names[key]}_mean")
            std_buf = getattr(self, f"{names[key]}_std")
            mean = torch.as_tensor(st["mean"], dtype=mean_buf.dtype).reshape(-1)
            std = torch.as_tensor(st["std"], dtype=std_buf.dtype).reshape(-1)
            if mean.shape != mean_buf.shape or std.shape != std_buf.shape:
                raise ValueError(f"normalisation stats for {key!r} must have shape {tuple(mean_buf.shape)}")
            mean_buf.copy_(mean)
            std_buf.copy_(std.clamp_min(1e-3))

    def normalize_actions(self, actions: torch.Tensor) -> torch.Tensor:
        return (actions - self.action_mean) / self.action_std

    def unnormalize_actions(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., : self.action_dim] * self.action_std + self.action_mean

    # -- FlowPolicy ----------------------------------------------------------------------------------
    def encode(self, obs: dict[str, Any]) -> torch.Tensor:
        if STATE_KEY not in obs:
            raise KeyError(f"observation needs {STATE_KEY!r} [B, {self.cfg.state_dim}]; got {sorted(obs)}")
        state = obs[STATE_KEY].to(self.state_mean.dtype)
        if state.dim() != 2 or state.shape[-1] != self.cfg.state_dim:
            raise ValueError(f"{STATE_KEY} must be [B, {self.cfg.state_dim}], got {tuple(state.shape)}")
        parts = [(state - self.state_mean) / self.state_std]
        if self.cfg.env_state_dim:
            if ENV_STATE_KEY not in obs:
                raise KeyError(f"observation needs {ENV_STATE_KEY!r} [B, {self.cfg.env_state_dim}]")
            env = obs[ENV_STATE_KEY].to(self.env_mean.dtype)
            parts.append((env - self.env_mean) / self.env_std)
        for cam, enc in self.image_encoders.items():
            key = IMAGE_PREFIX + cam
            if key not in obs:
                raise KeyError(f"observation needs {key!r} [B, 3, H, W] in 0..1")
            parts.append(enc(obs[key].to(self.state_mean.dtype)))
        return self.obs_encoder(torch.cat(parts, dim=-1))

    def velocity(
        self, x_t: torch.Tensor, t: torch.Tensor, ctx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b = x_t.shape[0]
        inp = torch.cat([x_t.reshape(b, -1), sinusoidal_embedding(t, self.cfg.time_embed_dim), ctx], dim=-1)
        h = self.expert_trunk(inp)
        v = self.expert_out(h).view(b, self.chunk_size, self.model_action_dim)
        return v, h

    def value_features(self, ctx: torch.Tensor) -> torch.Tensor:
        return ctx

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        lora = lora_parameters(self)
        lora_ids = {id(p) for p in lora}
        expert = list(self.expert_trunk.parameters()) + list(self.expert_out.parameters())
        groups = {
            "encoder": list(self.obs_encoder.parameters()) + list(self.image_encoders.parameters()),
            "expert": [p for p in expert if id(p) not in lora_ids],
        }
        if lora:
            groups["lora"] = lora
        return groups
