"""The PI-RL actor in-process against an in-process learner over real loopback gRPC, on the state-only
simulated SO-101: rollout rows, safe-point weight swaps, takeover rows, refusal of foreign weights."""

from __future__ import annotations

import threading

import pytest
import torch

from app.actor.loop import Actor, ActorError


def _actor(run_config, learner, *extra):
    cfg = run_config(f"--transport.port={learner.port}", *extra)
    lines: list[str] = []
    actor = Actor(cfg, progress=lines.append)
    sent = []
    original = actor.client.send_rollout
    actor.client.send_rollout = lambda r: (sent.append(r), original(r))
    return actor, sent, lines


def test_episodes_become_rollouts_and_weights_change_only_between_chunks(run_config, learner):
    # Episodes until two have run on new weights: how many the learner needs for its first update and push
    # depends on the machine's load, so the count is not fixed (capped at 200 so a learner that never
    # pushes fails the assertion below instead of hanging).
    actor, sent, lines = _actor(run_config, learner, "--actor.episodes=0")
    send = actor.client.send_rollout
    on_new_weights: list[int] = []

    def send_and_stop_two_episodes_after_new_weights(r):
        out = send(r)
        if actor.version and not on_new_weights:
            on_new_weights.append(len(sent))
        if (on_new_weights and len(sent) >= on_new_weights[0] + 2) or len(sent) >= 200:
            actor.shutdown.set()  # at an episode's end: the loop stops before the next one
        return out

    actor.client.send_rollout = send_and_stop_two_episodes_after_new_weights
    trace: list[tuple[str, int | None]] = []
    apply, update = actor.executor.pacer.apply, actor.weights.update
    actor.executor.pacer.apply = lambda d: (trace.append(("step", actor.version)), apply(d))[1]
    actor.weights.update = lambda: (update(), trace.append(("boundary", actor.version)))
    assert actor.run() == 0
    # the version seen by every control step equals the one at the start of its chunk
    current = None
    for kind, version in trace:
        if kind == "boundary":
            current = version
        else:
            assert version == current
    assert len({v for _, v in trace}) > 1, f"no weight update reached the actor during {len(sent)} episodes"
    assert any("first chunk with policy v0" in line for line in lines)
    assert len(sent) >= 3
    for r in sent:
        b = r.batch
        n = b["reward"].shape[0]
        assert torch.equal(b["chunk_index"], torch.arange(n))
        ends = b["done"] | b["truncated"]
        assert bool(ends[-1]) and not bool(ends[:-1].any())
        assert float(b["reward"].sum()) == pytest.approx(1.0 if r.meta["success"] else 0.0)
        assert len(set(b["episode_id"].tolist())) == 1
        assert b["policy_version"].max() == r.meta["policy_version"]
        assert b["chain"].shape[1:] == (5, 10, 6)  # K+1 states of the chunk
        assert not bool(b["intervention"].any())
    assert learner.learner.updates >= 1


class _CountingEvent(threading.Event):
    """The actor's shutdown event; counts the loop's idle waits."""

    def __init__(self) -> None:
        super().__init__()
        self.waits = 0

    def wait(self, timeout: float | None = None) -> bool:
        self.waits += 1
        return super().wait(timeout)


def test_the_next_episode_starts_right_after_the_reset_without_an_idle_wait(run_config, learner):
    """Auto-started episodes in the lockstep sim: reset, then start at once. A 50 ms idle wait after each
    reset was a third of the sim demo's actor time."""
    cfg = run_config(f"--transport.port={learner.port}", "--actor.episodes=6")
    shutdown = _CountingEvent()
    actor = Actor(cfg, progress=lambda line: None, shutdown=shutdown)
    resets = []
    reset = actor.episodes.reset
    actor.episodes.reset = lambda *a, **k: resets.append(reset(*a, **k)) or resets[-1]
    assert actor.run() == 0
    assert actor.episodes_done == 6 and len(resets) >= 5 and all(resets)
    assert shutdown.waits == 0, f"{shutdown.waits} idle waits in 6 episodes"


def test_expert_takeover_is_recorded_as_human_chunks(run_config, learner):
    actor, sent, _ = _actor(run_config, learner, "--actor.episodes=2", "--actor.expert_takeover_prob=1.0")
    assert actor.run() == 0
    for r in sent:
        b = r.batch
        assert bool(b["intervention"].any())
        assert int(b["takeover_start"].sum()) == 1
        human = b["human_action"][b["intervention"]]
        assert human.abs().sum() > 0  # the executed human actions travel for BC / the critic
        first = int(torch.nonzero(b["intervention"])[0])
        assert bool(b["intervention"][first:].all())  # the expert keeps control to the end


def test_an_actor_built_differently_refuses_the_learners_weights(run_config, learner):
    actor, _, _ = _actor(run_config, learner, "--actor.episodes=1", "--seed=1")
    with pytest.raises(ActorError, match="frozen"):
        actor.run()


def test_without_a_learner_the_actor_never_acts_and_says_why(run_config):
    from app.run.launch import free_port

    cfg = run_config(
        f"--transport.port={free_port()}", "--actor.wait_for_weights_s=1.0", "--actor.episodes=1"
    )
    lines: list[str] = []
    actor = Actor(cfg, progress=lines.append)
    steps = []
    actor.executor.pacer.apply = lambda d: steps.append(d)
    assert actor.run() == 3
    assert steps == [] and "is `pirl learner` running?" in lines[-1]


@pytest.mark.timing  # a live console channel: run alone (tests/conftest.py)
def test_console_channel_shows_status_and_commands_reach_the_robot(run_config, learner):
    import asyncio
    import time

    from app.control.client import ControlClient
    from app.control.protocol import Command, ControlConfig

    actor, _, _ = _actor(run_config, learner, "--actor.control.port=0", "--actor.episodes=0")
    thread = threading.Thread(target=actor.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while actor.control.address is None and time.monotonic() < deadline:
        time.sleep(0.05)
    port = actor.control.address[1]

    async def operate():
        client = ControlClient(ControlConfig(port=port))
        task = asyncio.create_task(client.run())
        first = await client.next_status(timeout=30)
        assert (await client.send(Command.ESTOP)).ok
        for _ in range(100):
            status = await client.next_status(timeout=10)
            if status.estop:
                break
        assert (await client.send(Command.QUIT)).ok
        client.close()
        await asyncio.wait_for(task, 10)
        return first, status

    first, last = asyncio.run(operate())
    thread.join(30)
    assert not thread.is_alive()
    assert first.robot == "sim_so101" and len(first.joints) == 6
    assert first.learner.connected and first.learner.policy_version is not None
    assert (
        first.learner.seconds_since_weights is not None and first.loop.target_hz == 0.0
    )  # lockstep sim: no wall-clock rate
    assert any("waiting for weights" in line.text for line in first.log)  # progress lines reach the log pane
    assert last.estop and actor.guard.closed
