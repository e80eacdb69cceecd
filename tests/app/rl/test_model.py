"""PIRLModel's weight shipping: no copies where a push does not need one."""

from __future__ import annotations

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from tests.app.rl.toy import tiny_model


def test_trainable_tensors_are_the_live_weights_not_copies():
    model = tiny_model()
    live = model.trainable_tensors()
    params = dict(model.named_parameters())
    assert set(live) == {n for n, p in params.items() if p.requires_grad}
    assert all(t.data_ptr() == params[n].data_ptr() and not t.requires_grad for n, t in live.items())


def test_loading_bf16_weights_casts_in_place_without_a_full_size_temporary():
    model = tiny_model(seed=0)
    state = {n: t.bfloat16() for n, t in tiny_model(seed=1).get_trainable_state().items()}
    before = {n: p.data_ptr() for n, p in model.named_parameters()}
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        model.load_trainable_state(state)
    allocated = max((e.cpu_memory_usage for e in prof.events()), default=0)
    assert allocated < min(t.numel() * 4 for t in state.values() if t.numel() > 1)
    params = dict(model.named_parameters())
    assert all(params[n].data_ptr() == before[n] for n in params)  # written in place
    assert all(torch.equal(params[n], t.float()) for n, t in state.items())
    with pytest.raises(ValueError, match="shape mismatch"):
        model.load_trainable_state({next(iter(state)): torch.zeros(1, 2, 3)})
