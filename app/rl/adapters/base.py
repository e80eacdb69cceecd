"""What the SmolVLA, pi0 and pi0.5 adapters share: wrapping a LeRobot policy as a FlowPolicy.

Each VLA computes its velocity with its own `denoise_step(...)`; we call exactly that (never a copy), with
gradients enabled whenever the caller has them enabled (LeRobot's `sample_actions` is `@torch.no_grad`,
its `denoise_step` is not). The action expert's output tokens, which `denoise_step` does not return, are
read on their way into `action_out_proj` by a forward pre-hook: they are the very tensor the model turns
into v, so the Flow-Noise features can never drift from the velocity's computation.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from app.rl.policy import FlowPolicy

NoiseFeatures = Literal["token", "mean"]
ValueSource = Literal["expert", "prefix"]


@dataclass
class VLAContext:
    """One encoded observation batch: what `denoise_step` needs, plus the prefix's output tokens."""

    prefix_pad_masks: torch.Tensor  # [B, L] bool, valid prefix tokens
    past_key_values: Any  # the prefix KV cache (transformers DynamicCache)
    prefix_out: torch.Tensor | None  # [B, L, W_vlm] last hidden states of the VLM over the prefix
    state: torch.Tensor | None = None  # [B, max_state_dim] (pi0 feeds the state to the expert)
    cache: dict[str, torch.Tensor] = field(default_factory=dict)  # lazily computed features

    @property
    def batch_size(self) -> int:
        return self.prefix_pad_masks.shape[0]


class _InputCapture:
    """Holds the first positional input of a module while a `capture_input` block is active."""

    value: torch.Tensor | None = None


@contextlib.contextmanager
def capture_input(module: nn.Module) -> Iterator[_InputCapture]:
    """Record what flows into `module` (its first positional argument) during the block."""
    box = _InputCapture()

    def hook(_mod: nn.Module, args: tuple[Any, ...]) -> None:
        box.value = args[0]

    handle = module.register_forward_pre_hook(hook)
    try:
        yield box
    finally:
        handle.remove()


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of [B, L, W] tokens over the positions where mask [B, L] is true (float32)."""
    m = mask.to(torch.float32).unsqueeze(-1)
    return (tokens.to(torch.float32) * m).sum(1) / m.sum(1).clamp_min(1.0)


def params_of(*modules: nn.Module) -> list[nn.Parameter]:
    """Parameters of several modules, each once, in a stable order."""
    seen: set[int] = set()
    out: list[nn.Parameter] = []
    for mod in modules:
        for p in mod.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


class LeRobotVLAAdapter(FlowPolicy):
    """Common part of the VLA adapters. Subclasses say how to encode a batch and call `denoise_step`.

    `obs` is a batch as LeRobot's own pre-processor leaves it (normalised `observation.state`, images in
    0..1 under `observation.images.*`, `observation.language.tokens` / `.attention_mask`); actions inside
    the chain are in the policy's normalised, padded space. `set_action_stats` makes
    `normalize_actions` / `unnormalize_actions` speak robot units exactly as LeRobot's processors do.
    """

    def __init__(
        self,
        policy: nn.Module,
        *,
        noise_features: NoiseFeatures,
        value_source: ValueSource,
    ) -> None:
        super().__init__()
        if noise_features not in ("token", "mean"):
            raise ValueError(f"noise_features must be 'token' or 'mean', got {noise_features!r}")
        if value_source not in ("expert", "prefix"):
            raise ValueError(f"value_source must be 'expert' or 'prefix', got {value_source!r}")
        self.policy = policy
        cfg = policy.config
        self.chunk_size = cfg.chunk_size
        self.action_dim = cfg.output_features["action"].shape[0]
        self.model_action_dim = cfg.max_action_dim
        self.noise_features = noise_features
        self.noise_features_per_token = noise_features == "token"
        self.value_source = value_source
        self.noise_feature_dim = self.expert_width
        self.value_feature_dim = self.expert_width if value_source == "expert" else self.vlm_width
        # Robot units <-> the model's normalised action space (set from data by `set_action_stats`).
        self.register_buffer("action_shift", torch.zeros(self.action_dim))
        self.register_buffer("action_scale", torch.ones(self.action_dim))

    # -- model-specific ---------------------------------------------------------------------------------
    @property
    def model(self) -> nn.Module:
        """LeRobot's inner flow model (VLAFlowMatching / PI0Pytorch / PI05Pytorch)."""
        return self.policy.model

    @property
    def expert_width(self) -> int:
        return self.model.action_out_proj.in_features

    @property
    @abc.abstractmethod
    def vlm_width(self) -> int:
        """Width of the VLM's prefix tokens (the "prefix" value features)."""

    @abc.abstractmethod
    def _denoise(self, ctx: VLAContext, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The model's own `denoise_step` for this context: v [B, H, max_action_dim] (float32)."""

    # -- FlowPolicy --------------------------------------------------------------------------------------
    def velocity(
        self, x_t: torch.Tensor, t: torch.Tensor, ctx: VLAContext
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b = ctx.batch_size
        if x_t.shape != (b, self.chunk_size, self.model_action_dim):
            raise ValueError(
                f"x_t must be [B={b}, H={self.chunk_size}, D={self.model_action_dim}] (the padded model "
                f"action space), got {tuple(x_t.shape)}"
            )
        t = torch.as_tensor(t, dtype=torch.float32, device=x_t.device)
        t = t.expand(b) if t.dim() == 0 else t
        if t.shape != (b,):
            raise ValueError(f"t must be a scalar or [B={b}] (one time per chain), got {tuple(t.shape)}")
        with capture_input(self.model.action_out_proj) as tokens:
            v = self._denoise(ctx, x_t.to(torch.float32), t.to(torch.float32))
        feats = tokens.value  # [B, H, W] float32: the action expert's output tokens
        return v, (feats if self.noise_features_per_token else feats.mean(dim=1))

    def value_features(self, ctx: VLAContext) -> torch.Tensor:
        """Per-chunk features for the value head, detached (the critic never moves the policy).

        value_source "prefix": masked mean of the VLM's prefix output tokens. "expert": mean of the action
        expert's output tokens at the chain's start (x_t = 0, the noise mean; t = 1), a deterministic
        function of the observation, computed once per context."""
        if self.value_source == "prefix":
            if ctx.prefix_out is None:
                raise RuntimeError("this context has no prefix outputs; re-encode with value_source='prefix'")
            return masked_mean(ctx.prefix_out, ctx.prefix_pad_masks).detach()
        if "expert_value" not in ctx.cache:
            dev = ctx.prefix_pad_masks.device
            x = torch.zeros(ctx.batch_size, self.chunk_size, self.model_action_dim, device=dev)
            with torch.no_grad(), capture_input(self.model.action_out_proj) as tokens:
                self._denoise(ctx, x, torch.ones(ctx.batch_size, device=dev))
            ctx.cache["expert_value"] = tokens.value.mean(dim=1)
        return ctx.cache["expert_value"]

    # -- action space -------------------------------------------------------------------------------------
    @torch.no_grad()
    def set_action_stats(self, stats: dict[str, Any]) -> None:
        """Use the dataset's `action` statistics (`dataset.meta.stats["action"]`) so that
        `normalize_actions` / `unnormalize_actions` map robot units exactly as the policy's LeRobot
        processors do. The mode comes from `config.normalization_mapping["ACTION"]` (MEAN_STD for pi0 and
        SmolVLA, QUANTILES for pi0.5); every mode is affine: model = (robot - shift) / scale."""
        mode = str(getattr(self.policy.config.normalization_mapping.get("ACTION"), "value", "IDENTITY"))

        def stat(name: str) -> torch.Tensor:
            if name not in stats:
                raise KeyError(
                    f"{mode} action normalisation needs the {name!r} statistic; got {sorted(stats)}"
                )
            return torch.as_tensor(stats[name], dtype=torch.float32).reshape(self.action_dim)

        if mode == "MEAN_STD":
            shift, scale = stat("mean"), stat("std")
        elif mode in ("MIN_MAX", "QUANTILES", "QUANTILE10"):
            lo_name, hi_name = {"MIN_MAX": ("min", "max"), "QUANTILES": ("q01", "q99")}.get(
                mode, ("q10", "q90")
            )
            lo, hi = stat(lo_name), stat(hi_name)
            shift, scale = (lo + hi) / 2, (hi - lo) / 2
        elif mode == "IDENTITY":
            shift, scale = torch.zeros(self.action_dim), torch.ones(self.action_dim)
        else:
            raise ValueError(f"unsupported action normalisation mode {mode!r}")
        self.action_shift.copy_(shift)
        self.action_scale.copy_(torch.where(scale == 0, torch.full_like(scale, 1e-8), scale))

    def normalize_actions(self, actions: torch.Tensor) -> torch.Tensor:
        return super().normalize_actions((actions - self.action_shift) / self.action_scale)

    def unnormalize_actions(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., : self.action_dim] * self.action_scale + self.action_shift

    # -- helpers ----------------------------------------------------------------------------------------------
    def parameter_count(self) -> dict[str, int]:
        """Parameters per group (and "total"): what the docs and reports quote."""
        counts = {name: sum(p.numel() for p in ps) for name, ps in self.parameter_groups().items()}
        counts["total"] = sum(p.numel() for p in self.policy.parameters())
        return counts

    def sample_ode(self, obs: dict[str, Any], noise: torch.Tensor, num_steps: int) -> torch.Tensor:
        """The deterministic Euler chain t: 1 -> 0 through this adapter (what deployment runs); returns
        the final x in the model's padded space."""
        ctx = self.encode(obs)
        x, delta = noise, 1.0 / num_steps
        for k in range(num_steps):
            v, _ = self.velocity(x, torch.full((ctx.batch_size,), 1.0 - k / num_steps, device=x.device), ctx)
            x = x - delta * v
        return x
