"""Realtime pacing of the actor: steps land on a fixed schedule, whatever time the work between them takes."""

from __future__ import annotations

import time
from types import SimpleNamespace

from app.actor.loop import Actor


def fake_actor(hz: float):
    sent = []
    guard = SimpleNamespace(
        mode="realtime",
        layer=SimpleNamespace(control_hz=hz),
        submit=lambda action, source: sent.append((time.monotonic(), action)),
        hold=lambda why: sent.append((time.monotonic(), None)),
    )
    return SimpleNamespace(guard=guard, _next_step_t=None, _dropped=0), sent


def test_work_between_steps_does_not_stretch_the_period():
    actor, sent = fake_actor(20.0)  # 50 ms period
    decision = SimpleNamespace(action={"a.pos": 0.0}, source="policy")
    t0 = time.monotonic()
    for _ in range(12):
        Actor._apply(actor, decision)
        time.sleep(0.025)  # inference + bookkeeping: half a period
    wall = time.monotonic() - t0
    # on schedule: 12 periods (0.6 s); sleeping a full period after each step would take 0.9 s
    assert wall < 0.78, wall
    assert actor._dropped == 0 and len(sent) == 12


def test_a_stall_counts_dropped_periods_and_restarts_the_schedule_without_a_burst():
    actor, sent = fake_actor(20.0)
    decision = SimpleNamespace(action={"a.pos": 0.0}, source="policy")
    Actor._apply(actor, decision)
    time.sleep(0.2)  # four periods with nothing fresh: the guard held
    Actor._apply(actor, decision)
    Actor._apply(actor, decision)
    assert actor._dropped >= 2
    gaps = [b[0] - a[0] for a, b in zip(sent[1:], sent[2:], strict=False)]
    assert all(g >= 0.045 for g in gaps), gaps  # no catch-up burst after the stall
