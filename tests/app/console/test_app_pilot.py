"""Pilot tests: every key of the console against a live actor on loopback (real sim SO-101, real
RobotGuard, real ControlServer), asserting what the actor did, not only what the screen shows."""

from __future__ import annotations

import socket
import time

import pytest

from app.actor.control import Command, ControlConfig
from app.console.app import ConsoleApp
from app.console.widgets import CameraPanel, ConfirmScreen, LogPane
from tests.app.console.actor_double import SimActorDouble


async def until(pilot, cond, timeout: float = 10.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.03)


def log_text(app: ConsoleApp) -> str:
    return "\n".join(line.text for line in app.query_one(LogPane).lines)


@pytest.fixture
def actor():
    double = SimActorDouble().start()
    yield double
    double.stop()


@pytest.fixture
def actor_with_camera():
    double = SimActorDouble(camera=True).start()
    yield double
    double.stop()


def console_for(actor: SimActorDouble) -> ConsoleApp:
    return ConsoleApp(ControlConfig(port=actor.port, heartbeat_s=0.2))


async def test_every_key_drives_the_actor(actor):
    app = console_for(actor)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.connected and app.status is not None, what="first status")

        await pilot.press("p")  # start
        await until(pilot, lambda: actor.state == "running", what="episode running")
        await until(pilot, lambda: app.status.episode.state == "running", what="console shows it")
        start = actor.guard.present()
        await until(
            pilot, lambda: abs(actor.guard.present()["shoulder_pan.pos"] - start["shoulder_pan.pos"]) > 1
        )

        await pilot.press("t")  # takeover on
        await until(pilot, lambda: actor.episode.intervention, what="takeover")
        await until(pilot, lambda: app.status.episode.intervention, what="console shows HUMAN")
        await pilot.press("t")  # same key hands back
        await until(pilot, lambda: not actor.episode.intervention, what="hand back")

        await pilot.press("s")
        await until(pilot, lambda: actor.history and actor.history[-1].success is True, what="success mark")
        await until(pilot, lambda: app.status.episode.state == "done", what="console sees done")
        await pilot.press("p")
        await until(pilot, lambda: actor.state == "running" and actor.episode.number == 2, what="episode 2")
        await pilot.press("f")
        await until(pilot, lambda: len(actor.history) == 2 and actor.history[-1].success is False)

        await pilot.press("r")  # re-record asks first; "n" sends nothing
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await pilot.press("r", "y")
        await until(pilot, lambda: Command.RERECORD in actor.commands, what="re-record")
        assert actor.commands.count(Command.RERECORD) == 1

        await pilot.press("h", "y")  # reset (moves the arm): confirmed
        await until(pilot, lambda: Command.RESET in actor.commands and actor.state == "idle", what="reset")

        await pilot.press("p")
        await until(pilot, lambda: actor.state == "running", what="running before e-stop")
        await pilot.press("space")
        await until(pilot, lambda: actor.guard.estopped, what="e-stop latched")
        await until(pilot, lambda: app.status.estop, what="console shows the latch")
        held = actor.guard.present()
        steps = actor.steps
        await until(pilot, lambda: actor.steps > steps + 10, what="actor keeps stepping")
        moved = max(abs(v - held[k]) for k, v in actor.guard.present().items())
        assert moved < 0.5, f"robot moved {moved:.2f} deg while e-stopped"
        starts = actor.commands.count(Command.START)
        await pilot.press("p")  # start is not offered while latched
        await pilot.pause(0.3)
        assert actor.commands.count(Command.START) == starts and actor.guard.estopped

        await pilot.press("c", "y")  # clear e-stop, confirmed
        await until(pilot, lambda: not actor.guard.estopped, what="e-stop cleared")
        assert all(ack.ok for ack in app.acks), [a for a in app.acks if not a.ok]

        await pilot.press("q", "y")  # quit: the actor shuts down safely, then the console exits
        await until(pilot, lambda: actor.quit.is_set(), what="actor quit")
    assert app.return_code == 0 and app.quit_requested
    actor._thread.join(5)
    assert actor.guard.closed


async def test_estop_works_while_a_confirmation_is_open(actor_with_camera):
    actor = actor_with_camera
    app = console_for(actor)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.status is not None and app.status.cameras, 30, "a camera frame")
        assert "▀" in str(app.query_one(CameraPanel).render())  # a real rendered frame, in half-blocks
        await pilot.press("p")
        await until(pilot, lambda: actor.state == "running", what="running")
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("space")
        await until(pilot, lambda: actor.guard.estopped, what="e-stop from inside the dialog")
        assert isinstance(app.screen, ConfirmScreen)  # the dialog is still open, nothing else happened
        await pilot.press("n")
        assert Command.QUIT not in actor.commands


async def test_estop_without_an_actor_says_it_was_not_delivered():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here
    app = ConsoleApp(ControlConfig(port=port))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("space")
        await until(pilot, lambda: app.acks, what="answer")
        assert not app.acks[-1].ok
        assert "E-STOP NOT DELIVERED" in log_text(app)
        assert "actor not reachable" in str(app.query_one("#status-bar").render())
