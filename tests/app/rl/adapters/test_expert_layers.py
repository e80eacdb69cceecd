"""`rl.trainable_expert_layers` finds the action expert's layers of SmolVLA, pi0 and pi0.5."""

from __future__ import annotations

from app.rl.layers import expert_layers


def test_expert_layers_are_the_experts_transformer_layers_then_the_output_projection(built) -> None:
    layers = expert_layers(built.adapter)
    assert len(layers) >= 2 and all(layers)
    expert = {id(p) for p in built.adapter.parameter_groups()["expert"]}
    assert all(id(p) in expert for ps in layers for p in ps)
    out = {id(p) for p in built.adapter.model.action_out_proj.parameters()}
    assert {id(p) for p in layers[-1]} == out
