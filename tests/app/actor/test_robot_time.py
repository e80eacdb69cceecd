"""Robot-minute accounting on a short sim run: training steps, drive-home steps and human-driven steps,
per episode (rollout meta and stats) and in the console's LoopStatus."""

from __future__ import annotations

import pytest

from app.actor.loop import Actor


def test_env_reset_and_human_steps_are_counted_per_episode_and_as_robot_minutes(run_config, served_learner):
    cfg = run_config(
        f"--transport.port={served_learner.port}",
        "--actor.episodes=3",
        "--actor.expert_takeover_prob=1.0",  # the scripted expert takes over in every episode
        "--actor.control.port=0",
    )
    actor = Actor(cfg, progress=lambda line: None)
    stats, metas, applied = [], [], []
    send_interaction, send_rollout = actor.client.send_interaction, actor.client.send_rollout
    actor.client.send_interaction = lambda m: (stats.append(m), send_interaction(m))[1]
    actor.client.send_rollout = lambda r: (metas.append((r.meta, r.batch)), send_rollout(r))[1]
    step = actor.guard.step
    actor.guard.step = lambda action, source="policy": (applied.append(source), step(action, source))[1]
    assert actor.run() == 0

    assert len(stats) == len(metas) == 3
    hz = actor.guard.layer.control_hz
    for s, (meta, batch) in zip(stats, metas, strict=True):
        assert s["control_hz"] == hz
        for key in ("steps", "human_steps", "reset_steps"):
            assert s[key] == meta[key]
        # the human steps are exactly the rows' human-driven steps
        assert meta["human_steps"] == int(batch["human_mask"].sum()) > 0
        assert 0 < meta["human_steps"] < meta["steps"]
    # every guard step was an episode step or a drive-home step (no hold steps in lockstep here)
    env, reset = applied.count("policy") + applied.count("human"), applied.count("reset")
    assert sum(s["steps"] for s in stats) == actor.env_steps == env
    assert sum(s["reset_steps"] for s in stats) == actor.episodes.reset_steps_total == reset
    assert stats[0]["reset_steps"] >= 1 and all(
        s["reset_steps"] > 10 for s in stats[1:]
    )  # from where it ended
    assert sum(s["human_steps"] for s in stats) == actor.runner.human_steps == applied.count("human")

    loop = actor.console.status().loop
    assert loop.robot_minutes == pytest.approx((env + reset) / hz / 60)
    assert loop.human_minutes == pytest.approx(applied.count("human") / hz / 60)
    assert 0 < loop.human_minutes < loop.robot_minutes
