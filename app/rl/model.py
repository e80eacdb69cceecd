"""PIRLModel: a FlowPolicy plus the heads PI-RL adds, with the trainable/frozen split applied.

This is the one object samplers, losses and the trainer see. It decides which parameters train (from
`PIRLConfig.trainable`), freezes the rest, and can ship only the trainable subset to the actor.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from app.rl.config import PIRLConfig
from app.rl.heads import NoiseHead, ValueHead
from app.rl.policy import Context, FlowPolicy

HEAD_GROUPS = ("noise_head", "value_head")


class PIRLModel(nn.Module):
    """FlowPolicy + Flow-Noise head (only for method "flow_noise") + value head."""

    def __init__(self, policy: FlowPolicy, cfg: PIRLConfig) -> None:
        super().__init__()
        self.policy = policy
        self.cfg = cfg
        self.noise_head: NoiseHead | None = None
        if cfg.method == "flow_noise":
            self.noise_head = NoiseHead(
                policy.noise_feature_dim,
                policy.chunk_size,
                policy.model_action_dim,
                hidden=cfg.noise.hidden,
                std_min=cfg.noise.std_min,
                std_max=cfg.noise.std_max,
                per_token=policy.noise_features_per_token,
            )
        self.value_head = ValueHead(policy.value_feature_dim, cfg.value_hidden)
        self.apply_trainable(cfg.trainable)

    # -- parameter groups ----------------------------------------------------------------------------
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The policy's groups plus "noise_head" (if any) and "value_head"."""
        groups = dict(self.policy.parameter_groups())
        clash = set(groups) & set(HEAD_GROUPS)
        if clash:
            raise ValueError(f"policy parameter groups may not be named {sorted(clash)} (reserved by PI-RL)")
        groups["noise_head"] = list(self.noise_head.parameters()) if self.noise_head is not None else []
        groups["value_head"] = list(self.value_head.parameters())
        return groups

    def apply_trainable(self, trainable: tuple[str, ...] | list[str]) -> None:
        """requires_grad=True exactly for the named groups; every other parameter (including ones the
        policy put in no group) is frozen."""
        groups = self.parameter_groups()
        unknown = [g for g in trainable if g not in groups]
        if unknown:
            raise ValueError(f"unknown trainable group(s) {unknown}; this model has {sorted(groups)}")
        for p in self.parameters():
            p.requires_grad_(False)
        for name in trainable:
            for p in groups[name]:
                p.requires_grad_(True)

    def actor_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters that are not the value head (they share the actor learning rate)."""
        value_ids = {id(p) for p in self.value_head.parameters()}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in value_ids]

    def value_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.value_head.parameters() if p.requires_grad]

    def trainable_parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    # -- shipping weights ----------------------------------------------------------------------------
    def get_trainable_state(self) -> dict[str, torch.Tensor]:
        """Only the trainable tensors (detached CPU copies), keyed like state_dict(): what the learner
        ships to the actor after an update. Frozen weights and buffers never change during RL."""
        return {n: p.detach().to("cpu").clone() for n, p in self.named_parameters() if p.requires_grad}

    def trainable_tensors(self) -> dict[str, torch.Tensor]:
        """The trainable tensors themselves, detached: no copy, on the model's device, changed by the next
        update. For a weight push, which copies them into its payload at once (a 450M-parameter clone
        is 1.8 GB of fresh memory per push)."""
        return {n: p.detach() for n, p in self.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        """Copy tensors from `get_trainable_state()` in place. Unknown names or wrong shapes raise."""
        params = dict(self.named_parameters())
        for name, value in state.items():
            if name not in params:
                raise KeyError(f"trainable state has {name!r}, which this model does not have")
            if params[name].shape != value.shape:
                raise ValueError(
                    f"shape mismatch for {name!r}: model {tuple(params[name].shape)}, got {tuple(value.shape)}"
                )
            params[name].copy_(value)  # casts and moves in one pass: no temporary full-size copy

    # -- forward pieces ------------------------------------------------------------------------------
    def encode(self, obs: dict[str, Any]) -> Context:
        return self.policy.encode(obs)

    def value(self, ctx: Context) -> torch.Tensor:
        """V per chunk [B] from an encoded observation."""
        feats = self.policy.value_features(ctx)
        if self.cfg.value_detach_features:
            feats = feats.detach()
        return self.value_head(feats)

    @torch.no_grad()
    def predict_value(self, obs: dict[str, Any]) -> torch.Tensor:
        """V(obs) [B] without gradients (e.g. the bootstrap value at a truncation)."""
        return self.value(self.encode(obs))

    @property
    def exec_horizon(self) -> int:
        h = self.cfg.exec_horizon
        return self.policy.chunk_size if h is None else min(h, self.policy.chunk_size)
