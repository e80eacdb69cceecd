"""End to end with LeRobot's own processors: raw observation -> pre-processor -> adapter chain ->
robot-unit actions, equal to LeRobot's predict_action_chunk + post-processor for the same noise."""

from __future__ import annotations

import pytest
import torch

STATS = {
    "observation.state": {
        "mean": torch.zeros(6), "std": torch.full((6,), 2.0), "q01": -torch.ones(6) * 3, "q99": torch.ones(6) * 3,
    },
    "action": {
        "mean": torch.arange(6.0), "std": torch.full((6,), 3.0), "q01": -torch.arange(6.0), "q99": torch.arange(6.0) + 1,
    },
}  # fmt: skip


@pytest.mark.parametrize("name", ["smolvla", "pi0", "pi05"])
def test_processors_adapter_and_lerobot_agree_in_robot_units(name: str, tmp_path) -> None:
    from app.rl.adapters.factory import make_adapter, make_processors
    from app.rl.adapters.tiny import build_tiny_pi0, build_tiny_smolvla

    if name == "smolvla":
        policy, tok, size = build_tiny_smolvla(tmp_path), None, 64
        policy.config.num_steps = 4
    else:
        (policy, tok), size = build_tiny_pi0(name), 32
        policy.config.num_inference_steps = 4
    pre, post = make_processors(policy, tok, STATS)
    raw = {
        "observation.state": torch.randn(6),
        "observation.images.front": torch.rand(3, size, size),
        "task": "pick the red cube",
    }
    batch = pre(raw)
    assert batch["observation.language.tokens"].shape[0] == 1
    adapter = make_adapter(policy)
    adapter.set_action_stats(STATS["action"])
    noise = torch.randn(1, 10, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ours = adapter.unnormalize_actions(adapter.sample_ode(batch, noise.clone(), 4))
        if name == "smolvla":
            chunk = policy.predict_action_chunk(batch, noise=noise.clone())
        else:
            # pi0/pi05's predict_action_chunk draws its own noise: go one level down with the same inputs.
            imgs, masks = policy._preprocess_images(batch)  # noqa: SLF001
            args = [
                imgs,
                masks,
                batch["observation.language.tokens"],
                batch["observation.language.attention_mask"],
            ]
            if name == "pi0":
                args.append(policy.prepare_state(batch))
            chunk = policy.model.sample_actions(*args, noise=noise.clone(), num_steps=4)[..., :6]
        theirs = post(chunk)
    assert ours.abs().max() > 1.0  # robot units, not the normalised space
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-5)


def test_unknown_policy_type_is_refused() -> None:
    from app.rl.adapters.factory import make_adapter

    with pytest.raises(ValueError, match="supported: smolvla, pi0, pi05"):
        make_adapter(torch.nn.Linear(2, 2))
