"""Which keys the console offers in each state, and what a key that does not apply says; from fixed
statuses (no actor: a command "sent" shows up in `app.acks` as not delivered, so the tests see exactly
which commands went out). The real actor behind the same keys: test_real_actor.py."""

from __future__ import annotations

import asyncio
import copy
import re

import pytest

from app.console.app import ConsoleApp
from app.console.widgets import (
    ActorExitedScreen,
    ConfirmScreen,
    EpisodePanel,
    HelpScreen,
    LogPane,
    LoopHealthPanel,
    StatusBar,
)
from app.console.widgets.help import help_rows, key_name
from app.control.protocol import Ack, Command, LogLine
from tests.app.console.helpers import until
from tests.app.console.sample import sample_status

ACTOR_KEYS = {"c", "g", "p", "t", "s", "f", "r", "h"}


def shown(app: ConsoleApp) -> dict[str, str]:
    """The footer's keys now: key -> label."""
    return {k: b.binding.description for k, b in app.screen.active_bindings.items() if b.binding.show}


def sent(app: ConsoleApp) -> list[Command]:
    return [ack.command for ack in app.acks]


def log_text(app: ConsoleApp) -> str:
    return "\n".join(line.text for line in app.query_one(LogPane).lines)


def bar(app: ConsoleApp) -> str:
    return str(app.query_one(StatusBar).render())


def episode(app: ConsoleApp) -> str:
    return str(app.query_one(EpisodePanel).render())


async def connected(pilot, state: str = "running", human: bool = False, estop: bool = False):
    app = pilot.app
    app.show_link(True, "connected")
    status = sample_status()
    status.episode.state, status.episode.intervention, status.estop = state, human, estop
    app.show_status(status)
    await pilot.pause()
    return status


async def test_until_connected_only_estop_help_and_quit_are_offered():
    app = ConsoleApp()
    fake_now = [500.0]
    app.clock = lambda: fake_now[0]
    async with app.run_test(size=(80, 24)) as pilot:
        app._link_since = 500.0
        app.show_link(False, "actor not reachable (Connect call failed ('127.0.0.1', 7070))")
        fake_now[0] += 12
        app._tick()
        assert "connecting to the actor… 12 s (actor not reachable)" in bar(app)
        assert "e-stop: unknown" in bar(app)  # no actor, no latch state to show
        assert set(shown(app)) == {"space", "question_mark", "q"}
        for key in ("g", "p", "t", "s", "f", "r", "h"):
            await pilot.press(key)
        await pilot.pause()
        assert sent(app) == [] and not isinstance(app.screen, ConfirmScreen)
        assert "not connected to the actor yet: only the e-stop (space) works" in log_text(app)
        await pilot.press("space")  # the e-stop is always tried
        await pilot.pause()
        assert sent(app) == [Command.ESTOP]

        await connected(pilot)  # connected: the keys come, the top line says so
        assert "actor: connected" in bar(app) and "e-stop: off" in bar(app)
        assert {"p", "t", "s", "f", "r", "h"} <= set(shown(app))

        app.show_link(False, "connection lost (reset by peer)")
        fake_now[0] += 3
        app._tick()
        assert "reconnecting to the actor… 3 s (connection lost)" in bar(app)
        assert not ACTOR_KEYS & set(shown(app))


async def test_a_console_without_the_token_says_so_on_the_top_line():
    app = ConsoleApp()
    async with app.run_test(size=(100, 24)) as pilot:
        app.show_link(False, "no token, e-stop only: /run/user/1/pirl/control-127.0.0.1-7070.token not found")
        await pilot.pause()
        # the seconds count from the app's start: 0 or 1 depending on how loaded the machine is
        assert re.search(r"connecting to the actor… \d+ s \(no token, e-stop only\)", bar(app)), bar(app)
        assert "control-127.0.0.1-7070.token not found" in log_text(app)  # the whole reason
        assert not ACTOR_KEYS & set(shown(app))


@pytest.mark.parametrize(
    ("state", "start", "pause"),
    [
        ("running", False, True),
        ("resetting", False, True),  # the arm drives home: p = do not start the next episode
        ("waiting_confirmation", True, False),
        ("idle", True, False),
        ("paused", True, False),
    ],
)
async def test_g_starts_and_p_pauses_never_the_other_way_round(state, start, pause):
    app = ConsoleApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, state)
        keys = shown(app)
        assert ("g" in keys) is start and ("p" in keys) is pause
        assert keys.get("g", "start") == "start" and keys.get("p", "pause") == "pause"
        await pilot.press("g", "p")
        await pilot.pause()
        assert sent(app) == ([Command.START] if start else []) + ([Command.PAUSE] if pause else [])
        if not start:  # a key that does not apply says why
            why = "the arm is driving home" if state == "resetting" else "an episode is running: p pauses"
            assert f"g: {why}" in log_text(app)
        if not pause:
            assert "p: no running episode to pause (g starts one)" in log_text(app)


async def test_marks_after_the_episode_ended_say_they_apply_to_a_running_episode():
    app = ConsoleApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, "waiting_confirmation")
        assert not {"s", "f", "r"} & set(shown(app))
        await pilot.press("s", "f", "r")
        await pilot.pause()
        assert sent(app) == [] and not isinstance(app.screen, ConfirmScreen)
        assert log_text(app).count("no running episode: marks apply to a running episode") == 3
        await connected(pilot, "running")  # while one runs they are sent (r asks first)
        await pilot.press("s", "f", "r")
        await pilot.pause()
        assert sent(app) == [Command.SUCCESS, Command.FAILURE] and isinstance(app.screen, ConfirmScreen)


async def test_t_is_takeover_or_hand_back():
    app = ConsoleApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, "running", human=False)
        assert shown(app)["t"] == "takeover"
        await connected(pilot, "running", human=True)
        assert shown(app)["t"] == "hand back"
        await pilot.press("t")
        await pilot.pause()
        assert sent(app) == [Command.TAKEOVER_OFF]


class SlowActor:
    """A control client whose actor takes a command only when told to."""

    def __init__(self) -> None:
        self.answer = asyncio.Event()

    async def send(self, command: Command) -> Ack:
        await self.answer.wait()
        return Ack(command, True, "taken by the actor")

    def close(self) -> None:
        pass


async def test_estop_replaces_the_episode_state_at_once():
    """The actor's episode state can say "resetting" while the e-stop holds the arm: the panel shows the
    e-stop, from the key press on (before any status), and nothing but clear, help and quit is offered."""
    app = ConsoleApp()
    async with app.run_test(size=(80, 24)) as pilot:
        app.client = SlowActor()  # type: ignore[assignment]
        await connected(pilot, "resetting")
        assert "RESETTING" in episode(app)
        await pilot.press("space")
        assert "E-STOP SENT" in episode(app) and "E-STOP SENT" in bar(app)  # at once, no status yet
        app.client.answer.set()
        await until(pilot, lambda: sent(app) == [Command.ESTOP], what="the ack")
        assert "E-STOP SENT" in episode(app)  # taken, but no status has shown the latch yet
        await connected(pilot, "resetting", estop=True)
        assert "E-STOP: holds" in episode(app) and "RESETTING" not in episode(app)
        assert "E-STOP LATCHED" in bar(app)
        assert set(shown(app)) == {"space", "c", "question_mark", "q"}
        await pilot.press("h", "g")
        await pilot.pause()
        assert "h: the e-stop is latched: c clears it first" in log_text(app)
        assert sent(app) == [Command.ESTOP]


async def test_an_estop_that_is_not_delivered_is_not_shown_as_sent():
    app = ConsoleApp()  # no actor at all
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, "running")
        await pilot.press("space")
        await until(pilot, lambda: app.acks, what="the verdict")
        assert "E-STOP NOT DELIVERED" in log_text(app)
        assert "E-STOP SENT" not in episode(app) and "E-STOP SENT" not in bar(app)


async def test_a_hold_is_a_warning_only_while_an_episode_runs():
    app = ConsoleApp()
    async with app.run_test(size=(80, 24)) as pilot:
        status = await connected(pilot, "running")
        # an episode ends: the guard's watchdog holds before the reset (planned)
        status.episode.state, status.holding, status.hold_reason = "resetting", True, "watchdog"
        status.log.append(LogLine(10, "WARNING", "no fresh action for 0.312 s: holding"))
        app.show_status(copy.deepcopy(status))
        assert "HOLD" not in bar(app)
        # the next episode's first status can carry a line from the boundary: still no warning
        status.episode.state, status.episode.number, status.holding = "running", 25, False
        status.log.append(LogLine(11, "WARNING", "no fresh action for 0.101 s: holding"))
        app.show_status(copy.deepcopy(status))
        text = log_text(app)
        assert "WARN no fresh action" not in text
        assert "no fresh action for 0.312 s: holding (episode boundary)" in text
        # the same hold in the middle of a running episode is a warning, on the top line and in the log
        status.holding = True
        status.log.append(LogLine(12, "WARNING", "no fresh action for 0.250 s: holding"))
        app.show_status(copy.deepcopy(status))
        assert "HOLD (watchdog)" in bar(app)
        assert "WARN no fresh action for 0.250 s: holding" in log_text(app)


async def test_help_lists_every_key_and_estop_still_works_inside():
    app = ConsoleApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, "running")
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        rows = dict(help_rows(app.BINDINGS))
        for b in app.BINDINGS:
            if b.show:
                assert key_name(b) in rows and b.tooltip, b
        assert {"spc", "c", "g", "p", "t", "s", "f", "r", "h", "?", "q"} <= set(rows)
        await pilot.press("space")
        await pilot.pause()
        assert sent(app) == [Command.ESTOP] and isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_loop_panel_shows_robot_and_human_minutes():
    app = ConsoleApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot)
        panel = app.query_one(LoopHealthPanel)
        assert "robot   42.5 min" in str(panel.render())
        assert panel.border_subtitle == "human 6.3 min (15%)"


async def test_episode_numbers_are_shown_as_the_actor_numbers_them_from_1():
    app = ConsoleApp()
    async with app.run_test(size=(80, 24)) as pilot:
        status = await connected(pilot)
        assert episode(app).startswith("#24 ")
        status.episode.number = 0  # no episode yet (an actor that numbers from 1 never sends 0)
        app.show_status(status)
        assert episode(app).startswith("#- ")


class DeadActor:
    pid, log_path = 4242, "actor.log"

    def __init__(self, rc: int) -> None:
        self.rc = rc

    def poll(self) -> int:
        return self.rc

    def stop(self) -> int:
        return self.rc

    def tail(self, lines: int = 20) -> list[str]:
        return ["Traceback (most recent call last):", "FileNotFoundError: no calibration for arm1"]


@pytest.mark.parametrize(("rc", "code"), [(1, 1), (-9, 1), (0, 0)])
async def test_an_actor_that_exits_is_shown_and_the_console_exits_with_its_error(rc, code):
    app = ConsoleApp(actor=DeadActor(rc))  # type: ignore[arg-type]
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot)
        app._check_actor()
        await pilot.pause()
        assert isinstance(app.screen, ActorExitedScreen)
        assert "FileNotFoundError: no calibration for arm1" in log_text(app)  # in the log pane too
        await pilot.press("escape")
        assert f"actor EXITED (rc={rc})" in bar(app)
        assert not ACTOR_KEYS & set(shown(app))
        await pilot.press("q")  # nothing left to stop: no question
        await pilot.pause()
    assert app.return_code == code
