"""`rl.trainable_expert_layers = N`: train only the noise head, the value head and the last N expert layers.

The FlowPolicy interface names parameter groups, not layers, so the expert's layers are found here:

- a policy may expose `expert_layers() -> list[list[nn.Parameter]]` (input to output order); that wins;
- the native policy: each Linear of `expert_trunk`, then `expert_out` (3 layers by default);
- SmolVLA / pi0 / pi0.5 adapters (LeRobot models under `.model`): the action expert's transformer
  `layers`, then `action_out_proj` (the last "layer" is the output projection).

A LoRA-wrapped linear layer trains only its adapters (lora_a, lora_b), its base weight stays frozen.
Applied by `PIRLTrainer.__init__` before it builds the optimiser, so it overrides `rl.trainable`.
"""

from __future__ import annotations

from torch import nn

from app.rl.lora import LoRALinear
from app.rl.model import PIRLModel

# attribute paths (from the adapter) of the action expert's layer list, per LeRobot VLA family
_VLA_LAYER_PATHS = (
    ("model", "vlm_with_expert", "lm_expert", "layers"),  # SmolVLA
    ("model", "paligemma_with_expert", "gemma_expert", "model", "layers"),  # pi0 / pi0.5
)


def _layer_params(module: nn.Module) -> list[nn.Parameter]:
    if isinstance(module, LoRALinear):
        return [module.lora_a, module.lora_b]
    return list(module.parameters())


def _get_path(obj: object, path: tuple[str, ...]) -> object | None:
    for name in path:
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    return obj


def expert_layers(policy: nn.Module) -> list[list[nn.Parameter]]:
    """The action expert's layers as parameter lists, from input to output."""
    own = getattr(policy, "expert_layers", None)
    if callable(own):
        return [list(ps) for ps in own()]
    trunk, out = getattr(policy, "expert_trunk", None), getattr(policy, "expert_out", None)
    if isinstance(trunk, nn.Sequential) and isinstance(out, nn.Module):
        linears = [m for m in trunk if isinstance(m, (nn.Linear, LoRALinear))]
        return [_layer_params(m) for m in [*linears, out]]
    for path in _VLA_LAYER_PATHS:
        layers = _get_path(policy, path)
        proj = _get_path(policy, ("model", "action_out_proj"))
        if isinstance(layers, nn.ModuleList) and isinstance(proj, nn.Module):
            return [_layer_params(m) for m in [*layers, proj]]
    raise ValueError(
        f"rl.trainable_expert_layers needs the expert's layers, but {type(policy).__name__} exposes none; "
        "give it an expert_layers() method returning a list of parameter lists (input to output)"
    )


def apply_trainable_expert_layers(model: PIRLModel, n: int) -> None:
    """requires_grad=True exactly for the noise head, the value head and the last n expert layers."""
    layers = expert_layers(model.policy)
    if not 1 <= n <= len(layers):
        raise ValueError(f"rl.trainable_expert_layers must be in [1, {len(layers)}] for this model, got {n}")
    model.apply_trainable(("noise_head", "value_head"))
    for params in layers[-n:]:
        for p in params:
            p.requires_grad_(True)
