"""Low-rank adapters (LoRA) for nn.Linear layers, so RL can train a few parameters of a big frozen layer.

`add_lora` swaps matching nn.Linear children for LoRALinear in place: y = W x + b + (alpha/r) * B A x with
A [r, in] random and B [out, r] zero, so the wrapped model computes exactly what it did before until B
moves. The adapters' parameters are the "lora" group; the base weights keep their own group and stay
frozen unless the config names that group too. Apply it at construction (from config) so saved
state-dict keys are stable.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn


class LoRALinear(nn.Module):
    """nn.Linear plus a zero-initialised low-rank update."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.base = base
        self.lora_a = nn.Parameter(torch.randn(rank, base.in_features) / math.sqrt(base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_a.t() @ self.lora_b.t()) * self.scale


def add_lora(
    module: nn.Module,
    rank: int,
    alpha: float,
    include: Callable[[str, nn.Linear], bool] | None = None,
) -> list[nn.Parameter]:
    """Wrap every nn.Linear under `module` (or those `include(name, layer)` accepts); returns the new
    LoRA parameters."""
    params: list[nn.Parameter] = []
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Linear) and (include is None or include(name, child)):
            wrapped = LoRALinear(child, rank, alpha)
            setattr(module, name, wrapped)
            params += [wrapped.lora_a, wrapped.lora_b]
        elif not isinstance(child, LoRALinear):
            params += add_lora(child, rank, alpha, include)
    return params


def lora_parameters(module: nn.Module) -> list[nn.Parameter]:
    """All LoRA parameters under `module`."""
    return [p for m in module.modules() if isinstance(m, LoRALinear) for p in (m.lora_a, m.lora_b)]
