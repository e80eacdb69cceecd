"""Pilot tests of the console against a small sim-backed actor (real sim SO-101 with a rendered camera,
real RobotGuard, real ControlServer) and against no actor at all. Every key against the real PI-RL actor:
test_real_actor.py."""

from __future__ import annotations

import socket

import pytest
from textual.css.query import NoMatches

from app.console.app import ConsoleApp
from app.console.widgets import CameraPanel, ConfirmScreen, LogPane
from app.console.widgets.camera import RAMP
from app.control.protocol import Command, ControlConfig
from tests.app.console.actor_double import SimActorDouble
from tests.app.console.helpers import until


def log_text(app: ConsoleApp) -> str:
    return "\n".join(line.text for line in app.query_one(LogPane).lines)


@pytest.fixture
def actor_with_camera():
    double = SimActorDouble(camera=True).start()
    yield double
    double.stop()


def console_for(actor: SimActorDouble) -> ConsoleApp:
    return ConsoleApp(ControlConfig(port=actor.port, heartbeat_s=0.2))


async def test_estop_works_while_a_confirmation_is_open(actor_with_camera):
    actor = actor_with_camera
    app = console_for(actor)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.status is not None and app.status.cameras, 30, "a camera frame")
        assert "▀" in str(app.query_one(CameraPanel).render())  # a real rendered frame, in half-blocks
        await pilot.press("g")
        await until(pilot, lambda: actor.state == "running", what="running")
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("space")
        await until(pilot, lambda: actor.guard.estopped, what="e-stop from inside the dialog")
        assert isinstance(app.screen, ConfirmScreen)  # the dialog is still open, nothing else happened
        await pilot.press("n")
        assert Command.QUIT not in actor.commands


async def test_a_status_that_arrives_while_the_app_exits_is_dropped(actor_with_camera):
    """On exit the app stops running and removes its panels before the control link closes; a status or a
    link change arriving in between (the actor publishes ~10 Hz) must not fail the link's worker."""
    app = console_for(actor_with_camera)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.status is not None, 30, "first status")
        last = app.status
    assert not app.is_running
    with pytest.raises(NoMatches):  # what the link's worker raised (CI, 2026-12-06) ...
        app.show_status(last)
    app._link_status(last)  # ... and what it calls now
    app._link_state(False, "actor closed the connection")


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
        assert "connecting to the actor… " in str(app.query_one("#status-bar").render())
        assert "(actor not reachable)" in str(app.query_one("#status-bar").render())


async def test_a_console_without_the_token_says_so_and_can_still_estop(tmp_path):
    """Only the console holding the run's token may command the arm; anyone may stop it."""
    from app.control.server import ControlServer

    server = ControlServer(ControlConfig(port=0)).start()
    latched = []
    server.on_estop = lambda: latched.append(True)
    missing = tmp_path / "elsewhere.token"
    app = ConsoleApp(ControlConfig(port=server.address[1], token_file=str(missing)))
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            bar = lambda: str(app.query_one("#status-bar").render())  # noqa: E731
            await until(pilot, lambda: "no token, e-stop only" in bar(), what="the missing token shown")
            assert f"{missing} not found" in log_text(app)  # the whole reason, in the log
            await pilot.press("space")
            await until(pilot, lambda: latched, what="e-stop taken without the token")
            assert server.clients == 0 and not app.connected
    finally:
        server.close()


async def test_no_colour_terminal_keeps_everything_readable(monkeypatch):
    from tests.app.console.sample import sample_status

    monkeypatch.setenv("NO_COLOR", "1")
    app = ConsoleApp()
    async with app.run_test(size=(80, 24)) as pilot:
        status = sample_status()
        status.estop = True
        app.show_link(True, "connected")
        app.show_status(status)
        await pilot.pause()
        assert app.no_color
        title, *picture = str(app.query_one(CameraPanel).render()).split("\n")
        assert title.startswith("front") and len(picture) >= 3
        glyphs = set("".join(line.rstrip() for line in picture))
        assert glyphs <= set(RAMP), glyphs - set(RAMP)  # a brightness ramp, no half blocks
        # stretched over the whole ramp (the brightest pixel gets the last glyph), sky, cube and table differ
        assert RAMP[-1] in glyphs and len(glyphs) >= 3
        assert "E-STOP LATCHED" in str(app.query_one("#status-bar").render())
        clamped = [
            row for row in str(app.query_one("#joints").render()).split("\n") if "shoulder_lift" in row
        ]
        assert "!" in clamped[0]  # the clamp is a glyph on its row, not only a colour


async def test_loop_panel_flags_slow_realtime_loops_but_not_lockstep_sims():
    from app.console.widgets import LoopHealthPanel
    from tests.app.console.sample import sample_status

    app = ConsoleApp()
    async with app.run_test(size=(80, 24)) as pilot:
        status = sample_status()
        status.loop.hz, status.loop.target_hz = 20.0, 30.0  # a real arm's control thread falling behind
        app.show_status(status)
        await pilot.pause()
        assert "SLOW" in str(app.query_one(LoopHealthPanel).render())
        status.loop.hz, status.loop.target_hz = 187.0, 0.0  # a lockstep sim: no wall-clock target
        app.show_status(status)
        await pilot.pause()
        text = str(app.query_one(LoopHealthPanel).render())
        assert "187 Hz lockstep" in text and "SLOW" not in text


async def test_keys_that_need_the_actor_come_once_it_is_connected():
    """Before the actor listens only e-stop, help and quit are offered (the top line says it is
    connecting); the real link brings the rest."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = ConsoleApp(ControlConfig(port=port, heartbeat_s=0.2))
    actor = None
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            keys = lambda: {k for k, b in app.screen.active_bindings.items() if b.binding.show}  # noqa: E731
            await pilot.pause(0.5)
            assert keys() == {"space", "question_mark", "q"}
            assert "connecting to the actor… " in str(app.query_one("#status-bar").render())
            actor = SimActorDouble(port=port).start()
            await until(pilot, lambda: app.connected and app.status is not None, 30, "connected")
            await pilot.pause()
            assert {"g", "t", "h"} <= keys() and "p" not in keys()  # idle: start, not pause
            await pilot.press("g")
            await until(pilot, lambda: app.status.episode.state == "running", what="running")
            await pilot.pause()
            assert "p" in keys() and "g" not in keys()
            await pilot.press("p")
            await until(pilot, lambda: actor.state == "paused", what="paused")
            assert actor.commands == [Command.START, Command.PAUSE]
    finally:
        if actor is not None:
            actor.stop()


async def test_a_started_actor_that_exits_shows_its_error_and_the_console_exits_non_zero(tmp_path):
    """What a missing calibration file looks like: the actor process dies at start-up, its reason in its
    log. The console shows the end of that log, offers no actor keys, and quits with the actor's code."""
    import sys

    from app.console.launcher import ActorProcess
    from app.console.widgets import ActorExitedScreen

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing will listen here
    log = tmp_path / "actor.log"
    log.write_text("an earlier run's output\n")
    code = (
        "import sys; print('connecting so101_follower arm1', flush=True); "
        "sys.exit('FileNotFoundError: no calibration for so101_follower arm1; run lerobot-calibrate')"
    )
    proc = ActorProcess([sys.executable, "-c", code], log).start()
    app = ConsoleApp(ControlConfig(port=port), actor=proc)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ActorExitedScreen), 30, "the exit shown")
        assert app.actor_exit == 1
        assert app.actor_tail == [
            "connecting so101_follower arm1",
            "FileNotFoundError: no calibration for so101_follower arm1; run lerobot-calibrate",
        ]  # this run's lines only
        assert "no calibration for so101_follower arm1" in log_text(app)
        await pilot.press("escape")
        assert "actor EXITED (rc=1)" in str(app.query_one("#status-bar").render())
        shown = {k for k, b in app.screen.active_bindings.items() if b.binding.show}
        assert shown == {"space", "question_mark", "q"}
        await pilot.press("g")
        await pilot.pause()
        assert "g: the actor exited (rc=1): nothing to command; q quits" in log_text(app)
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 1


async def test_the_curves_panel_says_where_the_episodes_are_recorded_and_why_it_stopped(actor_with_camera):
    """The actor's recording, as it comes over the real channel: the folder and the count on the rec line,
    `off` when it records nothing, and an error that stopped it in the warning colour, spelled out: on
    its own line where the panel has room (132x40), on the rec line at 80x24."""
    from app.console.widgets import CurvesPanel
    from app.control.protocol import EpisodeRecord, RecordStatus

    actor = actor_with_camera
    app = console_for(actor)
    panel_lines = lambda: str(app.query_one(CurvesPanel).render()).split("\n")  # noqa: E731
    async with app.run_test(size=(132, 40)) as pilot:
        await until(pilot, lambda: app.status is not None, 30, "first status")
        await pilot.pause()
        assert panel_lines()[1].split() == ["rec", "off"]  # below "no finished episode yet"
        actor.record = RecordStatus(root="outputs/run/episodes", episodes=12)
        await until(pilot, lambda: app.status.record.episodes == 12, what="the count")
        await pilot.pause()
        assert panel_lines()[1] == "rec     12 ep -> outputs/run/episodes"
        error = "OSError: [Errno 28] No space left on device"
        actor.record = RecordStatus(root="outputs/run/episodes", episodes=12, error=error)
        await until(pilot, lambda: app.status.record.error, what="the error")
        await pilot.pause()
        shown = app.query_one(CurvesPanel).render()
        assert panel_lines()[1:3] == ["rec     STOPPED at 12 ep -> outputs/run/episodes", " " * 8 + error]
        warned = [shown.plain[s.start : s.end] for s in shown.spans if str(s.style) == "bold yellow"]
        assert any(error in text for text in warned) and any("STOPPED" in text for text in warned)
        await pilot.resize_terminal(80, 24)  # 4 lines inside: room for the error below "no finished ..."
        await pilot.pause()
        assert panel_lines()[1].startswith("rec     STOPPED at 12 ep -> …") and panel_lines()[2].strip()
        actor.history.append(EpisodeRecord(1, True, 1.0, 0, 0.0, 30))  # three curves: one line left
        await until(pilot, lambda: app.status.history, what="a finished episode")
        await pilot.pause()
        lines = panel_lines()
        assert len(lines) == 4 and lines[3].startswith("rec     STOPPED: OSError: [Errno 2")
        assert lines[3].endswith("…") and len(lines[3]) == app.query_one(CurvesPanel).inner_width
