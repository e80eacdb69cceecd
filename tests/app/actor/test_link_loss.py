"""A learner that goes silent without closing anything: the actor must notice from missing traffic.

Two ways a link dies quietly, both of which once left the actor acting on stale weights for 22 s and more
(655 policy actions, no hold) because its watchdog was fed from "the connection is open":

- a black-holed route: TCP stays open, nothing is forwarded (`BlackHoleProxy.freeze()` of
  benchmarks/netfaults.py, between the actor and a real learner's gRPC server);
- a learner process frozen with SIGSTOP (its kernel still acknowledges TCP; nothing answers).

The actor's heartbeat (Ready() every 0.5 s at most, every reply feeding the LinkWatchdog) must hold the arm
within `safety.link_timeout_s` (+ one control period and scheduling slack), the arm must not drive home
while the link is down, and everything must resume once it is back. HTTP/2 keepalive must close the
frozen connection within keepalive_s + keepalive_timeout_s (gRPC's ping timeout was 60 s).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from app.actor.client import LearnerClient
from app.actor.loop import Actor
from app.transport.config import TransportConfig
from benchmarks.netfaults import BlackHoleProxy
from hardware.episodes import EpisodeState
from hardware.watchdog import LinkWatchdog

# wall-clock bounds on live threads and processes: run alone (tests/conftest.py, phase "timing")
pytestmark = pytest.mark.timing

REPO = Path(__file__).resolve().parents[3]
SLACK_S = 0.5  # scheduling slack on a loaded 2-core CI machine, on top of the timeout and one period


@pytest.mark.parametrize("link_timeout_s", [2.0])
def test_a_black_holed_learner_holds_the_arm_within_the_link_timeout_and_resets_only_once_it_is_back(
    run_config, served_learner, link_timeout_s
):
    proxy = BlackHoleProxy(served_learner.port)
    cfg = run_config(
        f"--transport.port={proxy.port}",
        f"--safety.link_timeout_s={link_timeout_s}",
        "--robot.realtime=true",  # the wall-clock arm: 30 Hz like a real one
        "--episode.time_limit_s=4.0",
        "--actor.episodes=2",
    )
    actor = Actor(cfg, progress=lambda line: None)
    hz = actor.guard.layer.control_hz
    applied: list[tuple[float, str]] = []  # (time, source) of every action handed to the arm
    submit = actor.guard.submit
    actor.guard.submit = lambda action, source="policy": (
        applied.append((time.monotonic(), source)),
        submit(action, source),
    )[1]  # noqa: E501
    ended: list[tuple[float, str]] = []
    actor.episodes.on_record(lambda r: ended.append((time.monotonic(), r.termination)))
    marks: dict[str, float] = {}
    seen: dict[str, object] = {}

    def saboteur() -> None:
        deadline = time.monotonic() + 60
        while not (actor.episodes.state is EpisodeState.RUNNING and actor.env_steps >= 15):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        marks["freeze"] = time.monotonic()
        proxy.freeze()
        while not ended:
            if time.monotonic() > marks["freeze"] + 10:
                break
            time.sleep(0.005)
        time.sleep(1.5)  # the link stays down: the arm must keep holding, no drive home
        g = actor.guard.status()
        seen.update(holding=g.holding, reason=g.hold_reason, state=actor.episodes.state, link=actor.link.ok)
        marks["thaw"] = time.monotonic()
        proxy.thaw()

    t = threading.Thread(target=saboteur, daemon=True)
    t.start()
    try:
        assert actor.run() == 0
    finally:
        t.join(timeout=30)
        proxy.close()

    t_freeze, t_thaw = marks["freeze"], marks["thaw"]
    t_end, why = ended[0]
    latency = t_end - t_freeze
    print(f"\nhold {latency * 1e3:.0f} ms after the link froze (link_timeout_s={link_timeout_s})")
    assert why == "link_lost"
    assert latency <= link_timeout_s + 1 / hz + SLACK_S, latency
    after_freeze = [src for ts, src in applied if t_freeze <= ts < t_end]
    assert len(after_freeze) <= (link_timeout_s + SLACK_S) * hz + 2  # not ~655 actions
    # link down: holding where the episode left the arm; no policy action, no drive home
    assert seen == {"holding": True, "reason": "link_lost", "state": EpisodeState.RESETTING, "link": False}
    assert [src for ts, src in applied if t_end < ts < t_thaw] == []
    # link back: the drive home, then the second episode
    resets = [ts for ts, src in applied if src == "reset" and ts > t_end]
    assert resets and resets[0] > t_thaw
    assert [r.termination for r in actor.episodes.records][1] != "link_lost"
    assert actor.episodes_done == 2


SERVER = """
import sys, threading
from app.learner.service import PIRLLearnerService
from app.transport.channel import make_server
from app.transport.config import TransportConfig
from benchmarks.netfaults import BlackHoleProxy

server, port = make_server(TransportConfig(port=0))
PIRLLearnerService(threading.Event()).add_to_server(server)
server.start()
print(port, flush=True)
server.wait_for_termination()
"""


def test_a_sigstopped_learner_is_lost_within_the_link_timeout_and_keepalive_closes_its_connection():
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    client = None
    try:
        port = int(proc.stdout.readline())
        cfg = TransportConfig(
            port=port, keepalive_s=1.0, keepalive_timeout_s=1.0, backoff_initial_s=0.05, backoff_max_s=0.3
        )
        link = LinkWatchdog(timeout_s=1.0, start_ok=False)
        client = LearnerClient(cfg, "stopped", link=link).start()
        deadline = time.monotonic() + 20
        while not (link.ok and client.status.connected):
            assert time.monotonic() < deadline, client.status
            time.sleep(0.02)
        time.sleep(1.5)  # heartbeats keep an idle link up (no weights flow: only Ready replies)
        assert link.ok and link.losses == 0

        os.kill(proc.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        while link.ok:
            assert time.monotonic() < t0 + 5
            time.sleep(0.005)
        lost_after = time.monotonic() - t0
        while client.status.connected:  # keepalive: 1 s without traffic, then a ping 1 s unanswered
            assert time.monotonic() < t0 + 10
            time.sleep(0.02)
        closed_after = time.monotonic() - t0
        print(
            f"\nlink lost {lost_after * 1e3:.0f} ms, connection closed {closed_after * 1e3:.0f} ms after SIGSTOP"
        )
        assert lost_after <= 1.0 + SLACK_S
        assert closed_after <= 1.0 + 1.0 + 0.5 + SLACK_S  # keepalive_s + keepalive_timeout_s + timer slop
        assert "UNAVAILABLE" in client.status.last_error

        os.kill(proc.pid, signal.SIGCONT)
        t1 = time.monotonic()
        while not link.ok:
            assert time.monotonic() < t1 + 10, client.status
            time.sleep(0.02)
        assert client.status.connected and client.status.reconnects >= 1
    finally:
        if client is not None:
            client.close()
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        proc.wait(timeout=10)
