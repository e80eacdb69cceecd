"""Behaviour cloning by flow matching: a few demos give a policy that reproduces them."""

from __future__ import annotations

import pytest
import torch

from app.rl.bc import bc_pretrain, make_chunks, normalization_stats
from app.rl.sampling import sample
from tests.app.rl.toy import tiny_model

torch.set_num_threads(1)


def _demos(n_eps: int, steps: int, gen: torch.Generator) -> list[dict[str, torch.Tensor]]:
    """A scripted expert in robot-like units: the action moves half-way from the state to a goal."""
    eps = []
    for _ in range(n_eps):
        goal = torch.tensor([30.0 + 10 * float(torch.randn(1, generator=gen)), -20.0])
        pos = 40 * torch.randn(2, generator=gen)
        states, actions = [], []
        for _ in range(steps):
            states.append(torch.cat([pos, goal[:1]]))
            act = pos + 0.5 * (goal - pos)
            actions.append(act)
            pos = act
        eps.append({"observation.state": torch.stack(states), "action": torch.stack(actions)})
    return eps


def test_make_chunks_pads_with_the_last_action() -> None:
    ep = {
        "observation.state": torch.zeros(3, 3),
        "action": torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]),
    }
    data = make_chunks([ep], chunk_size=4)
    assert data["action"].shape == (3, 4, 2) and data["observation.state"].shape == (3, 3)
    assert data["action"][1, :, 0].tolist() == [2.0, 3.0, 3.0, 3.0]
    with pytest.raises(ValueError, match="steps"):
        make_chunks([{"observation.state": torch.zeros(2, 3), "action": torch.zeros(3, 2)}], 4)


def test_bc_pretrain_fits_the_demos() -> None:
    gen = torch.Generator().manual_seed(0)
    demos = _demos(6, 6, gen)
    model = tiny_model(method="flow_noise")
    data = make_chunks(demos, chunk_size=model.policy.chunk_size)
    frozen_before = [p.requires_grad for p in model.policy.parameters()]
    obs = {"observation.state": data["observation.state"]}
    losses = bc_pretrain(model.policy, data, steps=400, batch_size=64, lr=3e-3, seed=0)
    assert [p.requires_grad for p in model.policy.parameters()] == frozen_before
    assert sum(losses[-20:]) / 20 < 0.3 * sum(losses[:20]) / 20
    stats = normalization_stats(data)
    torch.testing.assert_close(model.policy.action_mean, stats["action"]["mean"])
    pred = sample(model, obs, mode="deterministic", generator=torch.Generator().manual_seed(1)).actions
    err = (pred - data["action"]).abs().mean()
    spread = (data["action"] - data["action"].mean(0)).abs().mean()
    assert float(err) < 0.2 * float(spread), (float(err), float(spread))


def test_floored_stats_never_let_a_still_entry_blow_up() -> None:
    from app.rl.bc import floored_normalization_stats

    data = {
        "observation.state": torch.tensor([[0.0, 1.0, 5.0], [0.0, 3.0, 5.001]]),
        "action": torch.tensor([[[1.0, 0.0]], [[3.0, 0.0]]]),
    }
    stats = floored_normalization_stats(data, torch.tensor([2.0, 0.5, 0.01]), 0.25)
    state_std = stats["observation.state"]["std"]
    assert state_std[0] == 2.0 and state_std[2] == 0.01  # still entries get their own floor
    assert state_std[1] > 0.5  # a moving entry keeps its measured std
    assert stats["action"]["std"][1] == 0.25 and stats["action"]["std"][0] > 0.25
    scalar = floored_normalization_stats(data, 1.0, 0.25)["observation.state"]["std"]
    assert torch.all(scalar >= 1.0)
