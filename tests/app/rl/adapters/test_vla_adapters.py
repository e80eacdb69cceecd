"""The SmolVLA / pi0 / pi0.5 adapters against LeRobot's own code, on tiny models built offline."""

from __future__ import annotations

import pytest
import torch

from tests.app.rl.adapters.conftest import Built


def _noise(b: Built, seed: int = 7) -> torch.Tensor:
    a = b.adapter
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b.obs["observation.state"].shape[0], a.chunk_size, a.model_action_dim, generator=g)


def test_shapes_and_dims(built: Built) -> None:
    a = built.adapter
    assert (a.chunk_size, a.action_dim, a.model_action_dim) == (10, 6, 32)
    with torch.no_grad():
        ctx = a.encode(built.obs)
        x = _noise(built)
        v, feats = a.velocity(x, torch.tensor([1.0, 0.5, 0.25]), ctx)
        vf = a.value_features(ctx)
    assert v.shape == (3, 10, 32) and v.dtype == torch.float32
    assert a.noise_features_per_token and feats.shape == (3, 10, a.noise_feature_dim)
    assert vf.shape == (3, a.value_feature_dim) and torch.isfinite(vf).all()
    # pi0.5's value reads the VLM prefix (its width), the others the action expert.
    want = a.vlm_width if built.name == "pi05" else a.expert_width
    assert a.value_feature_dim == want
    assert not vf.requires_grad


def test_velocity_equals_models_own_denoise_step(built: Built) -> None:
    a, m = built.adapter, built.adapter.model
    with torch.no_grad():
        ctx = a.encode(built.obs)
        x = _noise(built)
        t = torch.tensor([0.9, 0.6, 0.3])
        v, _ = a.velocity(x, t, ctx)
        # LeRobot's own prefix + denoise_step, written out as its sample_actions does.
        if built.name == "smolvla":
            from lerobot.policies.common.vla_utils import make_att_2d_masks

            pol, o = a.policy, built.obs
            imgs, masks = pol.prepare_images(o)
            embs, pad, att = m.embed_prefix(
                imgs,
                masks,
                o["observation.language.tokens"],
                o["observation.language.attention_mask"],
                state=pol.prepare_state(o),
            )
            _, kv = m.vlm_with_expert.forward(
                attention_mask=make_att_2d_masks(pad, att),
                position_ids=torch.cumsum(pad, dim=1) - 1,
                past_key_values=None,
                inputs_embeds=[embs, None],
                use_cache=True,
            )
            ref = m.denoise_step(prefix_pad_masks=pad, past_key_values=kv, x_t=x, timestep=t)
        else:
            kw = dict(
                prefix_pad_masks=ctx.prefix_pad_masks, past_key_values=ctx.past_key_values, x_t=x, timestep=t
            )
            ref = m.denoise_step(**kw, **({} if built.name == "pi05" else {"state": ctx.state}))
    assert torch.equal(v, ref)
    # The context is reusable: a second call gives bit-identical output.
    with torch.no_grad():
        assert torch.equal(a.velocity(x, t, ctx)[0], v)


@pytest.mark.parametrize("num_steps", [4, 10])
def test_ode_chain_equals_lerobot_sample_actions(built: Built, num_steps: int) -> None:
    noise = _noise(built, seed=3)
    with torch.no_grad():
        ours = built.adapter.sample_ode(built.obs, noise.clone(), num_steps)
    theirs = built.lerobot_sample(noise.clone(), num_steps)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    assert ours.abs().max() > 0.1  # a real chain, not zeros


def test_gradients_reach_only_the_chosen_groups(built: Built) -> None:
    a = built.adapter
    groups = a.parameter_groups()
    assert "expert" in groups and "vlm" in groups
    ids = [id(p) for ps in groups.values() for p in ps]
    assert len(ids) == len(set(ids)), "a parameter sits in two groups"
    for p in a.parameters():
        p.requires_grad_(False)
        p.grad = None
    for p in groups["expert"]:
        p.requires_grad_(True)
    try:
        ctx = a.encode(built.obs)
        v, feats = a.velocity(_noise(built), torch.tensor([1.0, 0.5, 0.25]), ctx)
        assert v.requires_grad and feats.requires_grad
        (v.square().mean() + feats.mean()).backward()
        got = [p.grad is not None for p in groups["expert"]]
        assert all(got)
        nonzero = sum(bool(p.grad.abs().sum() > 0) for p in groups["expert"])
        # pi0.5's adaRMS modulation starts at zero, so its time MLP gets zero gradient at init.
        assert nonzero >= 0.8 * len(groups["expert"])
        others = [p for name, ps in groups.items() if name != "expert" for p in ps]
        assert all(p.grad is None for p in others)
    finally:
        for p in a.parameters():
            p.requires_grad_(False)
            p.grad = None


def test_velocity_runs_without_grad_when_caller_says_so(built: Built) -> None:
    a = built.adapter
    groups = a.parameter_groups()
    for p in groups["expert"]:
        p.requires_grad_(True)
    try:
        with torch.no_grad():
            v, _ = a.velocity(_noise(built), torch.tensor([1.0, 0.5, 0.25]), a.encode(built.obs))
        assert not v.requires_grad
    finally:
        for p in a.parameters():
            p.requires_grad_(False)


def test_bad_inputs_say_what_is_wrong(built: Built) -> None:
    a = built.adapter
    obs = {k: v for k, v in built.obs.items() if k != "observation.language.tokens"}
    with pytest.raises(KeyError, match="observation.language.tokens"):
        a.encode(obs)
    with torch.no_grad():
        ctx = a.encode(built.obs)
        with pytest.raises(ValueError, match="padded model action space"):
            a.velocity(torch.zeros(3, a.chunk_size, a.action_dim), torch.ones(3), ctx)


def test_action_stats_round_trip(built: Built) -> None:
    a = built.adapter
    stats = {
        "mean": torch.arange(6.0),
        "std": torch.full((6,), 2.0),
        "q01": -torch.ones(6),
        "q99": torch.ones(6) * 3,
    }
    a.set_action_stats(stats)
    try:
        assert not torch.equal(a.action_scale, torch.ones(6))
        act = torch.randn(3, a.chunk_size, 6) * 5
        x = a.normalize_actions(act)
        assert x.shape == (3, a.chunk_size, 32) and torch.all(x[..., 6:] == 0)
        torch.testing.assert_close(a.unnormalize_actions(x), act)
        with pytest.raises(KeyError, match="statistic"):
            a.set_action_stats({"max": torch.ones(6)})
    finally:
        a.set_action_stats(
            {"mean": torch.zeros(6), "std": torch.ones(6), "q01": -torch.ones(6), "q99": torch.ones(6)}
        )


def test_time_must_be_scalar_or_one_per_chain(built: Built) -> None:
    a = built.adapter
    with torch.no_grad():
        ctx = a.encode(built.obs)
        x = _noise(built)
        v_scalar, _ = a.velocity(x, torch.tensor(0.5), ctx)
        v_rows, _ = a.velocity(x, torch.full((3,), 0.5), ctx)
        assert torch.equal(v_scalar, v_rows)
        with pytest.raises(ValueError, match="one time per chain"):
            a.velocity(x, torch.ones(2), ctx)


def test_one_context_serves_per_step_backward_passes(built: Built) -> None:
    """With the prefix frozen, each velocity call owns its graph: step-by-step backward works and
    accumulates the same gradient as one backward over the summed loss."""
    a = built.adapter
    expert = a.parameter_groups()["expert"]
    for p in a.parameters():
        p.requires_grad_(False)
    for p in expert:
        p.requires_grad_(True)
    try:
        ctx = a.encode(built.obs)
        xs = [_noise(built, seed=s) for s in (1, 2)]
        ts = [torch.full((3,), 0.75), torch.full((3,), 0.25)]
        for x, t in zip(xs, ts, strict=True):
            a.velocity(x, t, ctx)[0].square().mean().backward()
        per_step = [p.grad.clone() for p in expert]
        for p in expert:
            p.grad = None
        sum(a.velocity(x, t, ctx)[0].square().mean() for x, t in zip(xs, ts, strict=True)).backward()
        for g_step, p in zip(per_step, expert, strict=True):
            torch.testing.assert_close(g_step, p.grad, rtol=1e-5, atol=1e-7)
    finally:
        for p in a.parameters():
            p.requires_grad_(False)
            p.grad = None
