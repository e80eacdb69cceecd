"""The actor's rollout rows flag exactly the control steps a human drove, when a takeover starts inside a
chunk (the gamepad's intervention button pressed mid-chunk) and when it ends inside one (hand-back), so
the learner's BC loss on human chunks never trains on the steps the policy drove.

The actor runs in-process against an in-process learner over real loopback gRPC, with LeRobot's own
GamepadTeleop behind a fake controller (tests/app/actor/test_teleop_takeover.py)."""

from __future__ import annotations

import torch

from app.rl.batch import RolloutBatch
from tests.app.actor.test_teleop_takeover import KEYS, FakePad, _actor
from tests.app.episode.test_executor import bc_positions


def _expected_mask(steps: list[dict], exec_h: int, chunks: int, chunk_size: int) -> torch.Tensor:
    """Per chunk and position, whether the human drove that step. A chunk runs exec_h steps, or ends
    early at the hand-back step."""
    mask = torch.zeros(chunks, chunk_size, dtype=torch.bool)
    chunk = pos = 0
    for s in steps:
        mask[chunk, pos] = s["human"]
        pos += 1
        if pos == exec_h or s["handed_back"]:
            chunk, pos = chunk + 1, 0
    return mask


def test_rollout_rows_and_bc_loss_see_exactly_the_steps_the_human_drove(run_config, learner, monkeypatch):
    from lerobot.teleoperators.gamepad import gamepad_utils

    FakePad.instances.clear()
    monkeypatch.setattr(gamepad_utils, "GamepadController", FakePad)  # button held over steps [8, 38)
    actor, sent, steps = _actor(
        run_config, learner, "--teleop.type=gamepad", "--actor.episodes=1", "--episode.time_limit_s=2.0"
    )
    assert actor.run() == 0
    assert [i for i, s in enumerate(steps) if s["human"]] == list(range(8, 38))
    (rollout,) = sent
    batch = RolloutBatch.from_dict(rollout.batch)
    h = actor.model.policy.chunk_size
    expect = _expected_mask(steps, actor.exec_h, len(batch), h)
    assert bool(expect[1, 3]) and not bool(expect[1, 2])  # the takeover began inside chunk 1 (step 8)
    assert bool(expect[7, 2]) and not bool(expect[7, 3])  # ...and was handed back inside chunk 7 (step 38)

    assert torch.equal(batch.human_steps(), expect)
    assert torch.equal(batch.intervention, expect.any(dim=1))
    executed = torch.tensor([[s["command"][k] for k in KEYS] for s in steps if s["human"]])
    assert torch.allclose(batch.human_action[expect], executed, atol=1e-4)  # what the arm was told
    assert float(batch.human_action[~expect].abs().sum()) == 0.0

    # The BC loss on human chunks, as the trainer calls it, trains on exactly those steps.
    assert torch.equal(bc_positions(actor.model, batch), expect)
