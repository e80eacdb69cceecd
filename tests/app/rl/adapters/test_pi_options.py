"""pi0 / pi0.5 under LeRobot's own options: bfloat16 precision and gradient checkpointing."""

from __future__ import annotations

import pytest
import torch

from tests.app.rl.adapters.conftest import make_obs


def _build(variant: str, **kw):
    from app.rl.adapters.pi0 import PI0Adapter
    from app.rl.adapters.tiny import build_tiny_pi0

    policy, tok = build_tiny_pi0(variant, **kw)
    return PI0Adapter(policy), make_obs(policy, tok, batch=2)


@pytest.mark.parametrize("variant", ["pi0", "pi05"])
def test_bfloat16_chain_equals_lerobot_and_outputs_float32(variant: str) -> None:
    a, obs = _build(variant, dtype="bfloat16")
    dtypes = {p.dtype for p in a.policy.parameters()}
    assert dtypes == {torch.bfloat16, torch.float32}
    noise = torch.randn(2, 10, 32, generator=torch.Generator().manual_seed(0))
    pol = a.policy
    with torch.no_grad():
        ours = a.sample_ode(obs, noise.clone(), 4)
        imgs, masks = pol._preprocess_images(obs)  # noqa: SLF001
        args = [imgs, masks, obs["observation.language.tokens"], obs["observation.language.attention_mask"]]
        if variant == "pi0":
            args.append(pol.prepare_state(obs))
        theirs = pol.model.sample_actions(*args, noise=noise.clone(), num_steps=4)
        ctx = a.encode(obs)
        v, feats = a.velocity(noise, torch.ones(2), ctx)
    assert torch.equal(ours, theirs)
    assert v.dtype == feats.dtype == a.value_features(ctx).dtype == torch.float32


@pytest.mark.parametrize("variant", ["pi0", "pi05"])
def test_gradient_checkpointing_keeps_the_prefix_cache_and_the_gradients(variant: str) -> None:
    a, obs = _build(variant)
    expert = a.parameter_groups()["expert"]
    for p in a.parameters():
        p.requires_grad_(False)
    for p in expert:
        p.requires_grad_(True)
    x, t = torch.randn(2, 10, 32), torch.tensor([0.75, 0.25])

    def grads() -> list[torch.Tensor]:
        for p in expert:
            p.grad = None
        v, feats = a.velocity(x, t, a.encode(obs))
        (v.square().sum() + feats.sum()).backward()
        return [p.grad.clone() for p in expert]

    plain = grads()
    a.train()
    a.policy.model.gradient_checkpointing_enable()
    ckpt = grads()
    assert all(torch.equal(g0, g1) for g0, g1 in zip(plain, ckpt, strict=True))
