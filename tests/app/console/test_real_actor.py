"""The console against the real PI-RL actor (app/actor/loop.py) on the simulated SO-101, fed by a real
in-process learner over gRPC on loopback: every key changes the actor's state, and killing the console
(-9) leaves the actor running with the robot inside its limits.

One learner + actor pair serves the whole module (start-up is the cost); the kill test runs first, the
key test ends with quit.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest

from app.console.app import ConsoleApp
from app.console.widgets import CameraPanel, ConfirmScreen
from app.control.protocol import Command, ControlConfig
from tests.app.console.helpers import PtyConsole, until, wait

# wall-clock bounds on live threads and processes: run alone (tests/conftest.py, phase "timing")
pytestmark = pytest.mark.timing

REPO = Path(__file__).resolve().parents[3]


def tiny_config(tmp: Path, camera: bool = False) -> Path:
    cfg = json.loads((REPO / "configs" / "sim_pirl_reach.json").read_text())
    if camera:  # rendered for the console only (the policy stays state-only: no actor.image_keys)
        cam = {"type": "sim_mujoco", "camera": "front", "width": 64, "height": 48, "fps": 10}
        cfg["robot"]["cameras"] = {"front": cam}
    cfg["policy"]["native"].update({"obs_hidden": 32, "expert_hidden": 32, "time_embed_dim": 8})
    cfg["policy"]["rl"]["noise"] = {"hidden": [16]}
    cfg["policy"]["rl"]["ppo"] = {"epochs": 1, "minibatch_size": 32}
    cfg["algorithm"]["chunks_per_update"] = 10_000  # no update during the test: weights stay v0
    cfg["episode"]["time_limit_s"] = 30.0  # episodes outlast the key presses
    cfg["learner"].update({"output_dir": str(tmp / "run"), "tensorboard": False})
    cfg["transport"].update({"port": 0, "backoff_initial_s": 0.1, "backoff_max_s": 0.5})
    path = tmp / ("tiny_camera.json" if camera else "tiny.json")
    path.write_text(json.dumps(cfg))
    return path


class ActorThread:
    """An Actor built exactly as `pirl actor` builds it, running on its own thread."""

    def __init__(self, path: Path, learner_port: int, *overrides: str) -> None:
        import socket

        from app.actor.loop import Actor
        from app.run.parse import parse_run_config

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.control_port = s.getsockname()[1]
        args = [
            "--config",
            str(path),
            f"--transport.port={learner_port}",
            f"--actor.control.port={self.control_port}",
            "--actor.control.console_timeout_s=1.0",
            *overrides,
        ]
        self.lines: list[str] = []
        self.stop_event = threading.Event()
        self.actor = Actor(parse_run_config(args), progress=self.lines.append, shutdown=self.stop_event)
        self.rc: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True, name="actor")
        self.thread.start()

    def _run(self) -> None:
        self.rc = self.actor.run()

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(15)


class RealRun:
    """One in-process Learner (as `pirl learner` builds it) that actors connect to over gRPC."""

    def __init__(self, tmp: Path) -> None:
        import torch

        from app.learner.loop import Learner
        from app.run.parse import parse_run_config

        torch.set_num_threads(1)
        self.path = tiny_config(tmp)
        self.camera_path = tiny_config(tmp, camera=True)
        self.stop_event = threading.Event()
        self.learner = Learner(
            parse_run_config(["--config", str(self.path)]), progress=None, shutdown=self.stop_event
        )
        self.port = self.learner.start_server()
        self.thread = threading.Thread(target=self.learner.run, daemon=True, name="learner")
        self.thread.start()
        self.actors: list[ActorThread] = []

    def start_actor(self, *overrides: str, camera: bool = False) -> ActorThread:
        self.actors.append(ActorThread(self.camera_path if camera else self.path, self.port, *overrides))
        return self.actors[-1]

    def stop(self) -> None:
        for a in self.actors:
            a.stop()
        self.stop_event.set()
        self.thread.join(15)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    r = RealRun(tmp_path_factory.mktemp("real"))
    yield r
    r.stop()


def within_limits(actor) -> None:
    limits = actor.guard.limits
    for key, value in actor.guard.present().items():
        lo, hi = limits[key.removesuffix(".pos")]
        assert lo - 1.0 <= value <= hi + 1.0, f"{key}={value:.1f} outside [{lo}, {hi}]"


def test_killing_the_console_leaves_the_actor_stepping_safely(run):
    a = run.start_actor()
    console = PtyConsole(a.control_port)
    try:
        wait(lambda: a.actor.control is not None and a.actor.control.console_alive, 60, "console heartbeat")
        wait(lambda: a.actor.env_steps > 0, 60, "episodes running (weights arrived)")
        console.proc.send_signal(signal.SIGKILL)
        console.proc.wait(5)
        wait(lambda: not a.actor.control.console_alive, 3, "actor notices the console is gone")
        steps = a.actor.env_steps
        # sample the arm while the actor goes on alone: at least 2 s, and until it has stepped again (up to
        # 10 s: a loaded machine may be between episodes, where only reset steps are taken, for a while)
        start = time.monotonic()
        while time.monotonic() - start < 2.0 or (
            a.actor.env_steps <= steps and time.monotonic() - start < 10.0
        ):
            within_limits(a.actor)
            time.sleep(0.01)
        assert a.actor.env_steps > steps, "the actor stopped stepping when the console died"
        assert a.alive and not a.actor.guard.estopped
    finally:
        console.close()
        a.stop()
    assert a.rc == 0 and a.actor.guard.closed


@pytest.mark.slow  # 13-23 s on a loaded 2-core machine: the wall-clock sim resets between episodes
async def test_every_key_drives_the_real_actor(run):
    """Operator-confirmed episodes on a wall-clock sim (`episode.auto_start=false`, `robot.realtime=true`),
    as on a real robot."""
    a = run.start_actor("--episode.auto_start=false", "--robot.realtime=true")
    actor = a.actor
    app = ConsoleApp(ControlConfig(port=a.control_port, heartbeat_s=0.2))
    state = lambda: actor.episodes.state.value  # noqa: E731
    during_reset: list[list[float]] = []  # joint positions the console saw while the arm went home
    show = app.show_status

    def watch(status):
        if status.episode.state == "resetting":
            during_reset.append([j.present for j in status.joints])
        show(status)

    app.show_status = watch  # the control link is built on mount with this callback
    # No task-success detection: the scripted expert reaches the target in a few steps, and the episode must
    # outlast the takeover and hand back (they are timed by keys, not by the sim).
    actor.episodes.task_success = None

    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.connected and app.status is not None, 30, "first status")
        await until(pilot, lambda: app.status.episode.state == "waiting_confirmation", 60, "ready to confirm")
        assert app.status.robot == "sim_so101" and app.status.learner.connected

        await pilot.press("g")  # start = confirm the next episode
        await until(pilot, lambda: state() == "running", 10, "episode running")
        await until(pilot, lambda: app.status.episode.state == "running", what="console shows running")
        await until(pilot, lambda: app.status.loop.inference_ms is not None, what="a chunk sampled")
        st = app.status  # what the panels get from the real actor, not only from the fixed sample
        assert 0 < st.episode.time_left_s <= 30 and st.episode.length_s == 30
        assert st.loop.target_hz == 30 and st.loop.hz > 0  # wall-clock sim: the guard's control thread
        assert st.learner.seconds_since_weights is not None and st.learner.policy_version == 0
        assert st.episode.takeover_source == "sim expert" and len(st.joints) == 6
        assert any("first chunk with policy v0" in line.text for line in st.log)

        await pilot.press("t")  # takeover: the scripted expert stands in for the human in the sim
        await until(pilot, lambda: actor.takeover.active, what="takeover active")
        await until(pilot, lambda: app.status.episode.intervention, what="console shows HUMAN")
        await pilot.press("t")  # the footer now says "hand back"
        await until(pilot, lambda: not actor.takeover.active, what="handed back")
        assert state() == "running" and actor.takeover.interventions == 1
        assert any(k.command is Command.TAKEOVER_OFF for k in app.acks)

        for key, success in (("s", True), ("f", False)):
            done = len(actor.episodes.records)
            await pilot.press(key)
            await until(pilot, lambda d=done: len(actor.episodes.records) > d, 30, f"episode ended by {key}")
            assert actor.episodes.records[-1].success is success
            await until(pilot, lambda: app.status.episode.state == "waiting_confirmation", 30, "confirm")
            assert app.status.episode.outcome == ("success" if success else "failure")  # the one just ended
            assert app.status.history[-1].success is success
            await pilot.press("g")
            await until(pilot, lambda: state() == "running", 10, "next episode")
            # the console must see it too: else its last status (waiting, the previous outcome) still stands and
            # the next round's wait for "waiting_confirmation" would pass on that stale status
            await until(pilot, lambda: app.status.episode.state == "running", what="console shows running")

        # the console stays live while the actor drives home (a blocking move): several statuses
        assert len(during_reset) >= 3, len(during_reset)

        done = len(actor.episodes.records)
        await pilot.press("r")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await until(pilot, lambda: len(actor.episodes.records) > done, 30, "re-record")
        assert actor.episodes.records[-1].rerecord
        await until(pilot, lambda: app.status.episode.state == "waiting_confirmation", 30, "confirm")
        await pilot.press("g")
        await until(pilot, lambda: state() == "running", 10, "next episode")

        await pilot.press("space")
        await until(pilot, lambda: actor.guard.estopped, what="e-stop latched")
        await until(pilot, lambda: app.status.estop and app.status.holding, what="console shows the hold")
        at_stop = actor.guard.present()
        await pilot.pause(0.5)  # wall-clock sim: the servos catch the arm's momentum, then it stands
        held = actor.guard.present()
        stopping = max(abs(v - at_stop[k]) for k, v in held.items())
        assert stopping < 5.0, f"robot travelled {stopping:.2f} after the e-stop"
        await pilot.pause(0.5)
        moved = max(abs(v - held[k]) for k, v in actor.guard.present().items())
        assert moved < 0.5, f"robot moved {moved:.2f} while e-stopped"
        within_limits(actor)
        await pilot.press("c", "y")
        await until(pilot, lambda: not actor.guard.estopped, what="e-stop cleared")

        await until(pilot, lambda: app.status.episode.state == "waiting_confirmation", 30, "reset home")
        await pilot.press("h", "y")  # reset while no episode runs: taken, nothing moves
        await until(pilot, lambda: any(k.command is Command.RESET for k in app.acks), what="reset taken")
        assert all(ack.ok for ack in app.acks), [k for k in app.acks if not k.ok]
        assert actor.takeover.human is not None  # the sim's expert: takeover had something to hand to

        await pilot.press("t")  # takeover asked between episodes: the next one starts with the human
        await until(pilot, lambda: app.status.episode.intervention, what="console shows the human is next")
        await pilot.press("g")
        await until(pilot, lambda: actor.takeover.interventions >= 1, 10, "next episode driven by the human")

        await pilot.press("q", "y")
        await until(pilot, lambda: not a.alive, 30, "actor shut down")
    assert a.rc == 0 and actor.guard.closed


async def test_pause_and_reset_during_an_episode(run):
    """Operator stops between chunks end the episode cleanly (truncated, sent), and the actor goes on.
    Wall-clock sim: 30 s episodes, so no episode reaches its time limit while the keys are pressed."""
    a = run.start_actor("--robot.realtime=true", camera=True)
    actor = a.actor
    app = ConsoleApp(ControlConfig(port=a.control_port, heartbeat_s=0.2))
    async with app.run_test(size=(80, 24)) as pilot:
        # a chunk recorded in this episode: the pause cuts the episode short after real transitions
        await until(pilot, lambda: actor.episodes.steps > actor.exec_h, 60, "running")
        await until(
            pilot,
            lambda: app.status is not None and app.status.episode.state == "running",
            10,
            "console: running",
        )
        done, sent = len(actor.episodes.records), actor.episodes_done
        await pilot.press("p")  # pause mid-episode
        await until(pilot, lambda: actor.paused and actor.episodes_done > sent, what="paused")
        assert (
            len(actor.episodes.records) == done + 1 and actor.episodes.records[-1].termination == "operator"
        )
        assert actor.guard.holding  # the episode went to the learner cut short, and the arm holds
        await until(pilot, lambda: app.status.episode.state == "paused", what="console shows paused")
        assert app.status.episode.outcome == "operator" and "front" in app.status.cameras
        assert "▀" in str(app.query_one(CameraPanel).render())  # the actor's own camera, in half-blocks
        steps = actor.env_steps
        await pilot.pause(1.0)
        assert a.alive, "actor died on pause"
        assert actor.env_steps == steps, "the actor stepped while paused"
        await pilot.press("g")  # start again: reset, then the sim starts the next episode on its own
        await until(pilot, lambda: actor.episodes.state.value == "running", 30, "running again")
        await until(pilot, lambda: actor.env_steps > steps, 30, "stepping again")
        done = len(actor.episodes.records)
        await pilot.press("h", "y")  # reset mid-episode
        await until(pilot, lambda: len(actor.episodes.records) > done, 10, "episode ended by reset")
        assert actor.episodes.records[-1].termination == "operator"
        await until(
            pilot,
            lambda: actor.env_steps > steps + 1 and actor.episodes.state.value == "running",
            30,
            "next episode after the reset",
        )
        assert a.alive, "actor died on reset"
    a.stop()
    assert a.rc == 0


@pytest.mark.slow  # the actor is a second Python process that imports torch and LeRobot (10-30 s)
def test_pirl_console_with_a_config_starts_the_actor_and_quits_it_safely(run, tmp_path):
    """`pirl console --config X` on a real pseudo-terminal: it starts `pirl actor --config X` as its own
    process, the actor reaches the learner and steps, and q + y stop both."""
    import asyncio
    import socket

    from app.control.client import ControlClient

    cfg = json.loads(run.path.read_text())
    cfg["transport"]["port"] = run.port  # the file the started actor reads must name the learner's port
    path = tmp_path / "console_run.json"
    path.write_text(json.dumps(cfg))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "actor.log"
    console = PtyConsole(port, ["--config", str(path), f"--actor_log={log}"])

    async def watch_actor():  # a second console on the same channel, to see what the actor does
        client = ControlClient(ControlConfig(port=port, heartbeat_s=0.2), retry_s=0.2)
        task = asyncio.create_task(client.run())
        try:
            end = time.monotonic() + 120
            while time.monotonic() < end:
                console.drain()
                try:
                    st = await client.next_status(timeout=1.0)
                except TimeoutError:
                    continue
                if st.learner.connected and st.loop.steps > 0:
                    return st
            raise AssertionError(f"the started actor never stepped; its log: {log.read_text()[-2000:]}")
        finally:
            client.close()
            await asyncio.wait_for(task, 10)

    try:
        status = asyncio.run(watch_actor())
        assert status.robot == "sim_so101" and status.learner.policy_version == 0
        assert console.proc.poll() is None
        console.type("q")
        time.sleep(1.0)  # the confirmation dialog opens
        console.type("y")
        # drain while waiting: a console whose pty is full would block on its own output
        quit_done = lambda: console.drain() is not None and console.proc.poll() is not None  # noqa: E731
        wait(quit_done, 60, "the console to quit")
        assert console.proc.returncode == 0
        text = log.read_text()
        assert "first chunk with policy v0" in text and "guard closed" in text  # the actor released the arm
        assert b"actor started (pid" in console.drain()
    finally:
        console.close()
        # the actor outlives a killed console by design: a failed test must not leave it running
        found = re.search(rb"actor started \(pid (\d+)\)", console.output)
        if found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(found.group(1)), signal.SIGKILL)
