"""Snapshots of the console from fixed statuses (no actor; the app's clock is frozen, so elapsed times are
fixed): the main screen at the 80x24 minimum and at 132x40, one per operator-facing state (e-stop latched,
connecting, takeover active, actor exited with an error) and the two dialogs (confirm, help).
Regenerate with `pytest tests/app/console/test_snapshots.py --snapshot-update` and inspect the SVGs."""

from __future__ import annotations

import pytest

from app.console.app import ConsoleApp
from tests.app.console.sample import sample_status

T0 = 1000.0  # the frozen clock


def _freeze(app: ConsoleApp) -> None:
    app.clock = lambda: T0
    app._link_since = T0


def _show(human: bool = False, estop: bool = False, keys: tuple[str, ...] = ()):
    async def run_before(pilot) -> None:
        app = pilot.app
        _freeze(app)
        status = sample_status()
        status.episode.intervention = human
        if estop:  # the actor's episode state still says "resetting": the e-stop must win on screen
            status.estop = True
            status.holding = True
            status.hold_reason = "estop"
            status.episode.state = "resetting"
            status.episode.time_left_s = None
            status.episode.outcome = "estop"
        app.show_link(True, "connected")
        app.show_status(status)
        await pilot.pause()
        if keys:
            await pilot.press(*keys)
            await pilot.pause()

    return run_before


@pytest.mark.parametrize("size", [(80, 24), (132, 40)], ids=["80x24", "132x40"])
def test_main_screen(snap_compare, size):
    assert snap_compare(ConsoleApp(), terminal_size=size, run_before=_show())


def test_main_screen_estop_latched(snap_compare):
    assert snap_compare(ConsoleApp(), terminal_size=(80, 24), run_before=_show(estop=True))


def test_takeover_active(snap_compare):
    assert snap_compare(ConsoleApp(), terminal_size=(80, 24), run_before=_show(human=True))


def test_confirm_dialog(snap_compare):
    assert snap_compare(ConsoleApp(), terminal_size=(80, 24), run_before=_show(keys=("h",)))


def test_help_screen(snap_compare):
    assert snap_compare(ConsoleApp(), terminal_size=(80, 24), run_before=_show(keys=("question_mark",)))


def test_connecting_to_the_actor(snap_compare):
    """Link down: the actor is not listening yet (42 s after the console started); only e-stop, help and
    quit are offered, and the e-stop state is unknown."""

    async def run_before(pilot) -> None:
        app = pilot.app
        _freeze(app)
        app._link_since = T0 - 42
        app.show_link(False, "actor not reachable (Connect call failed ('127.0.0.1', 7070))")
        await pilot.pause()

    assert snap_compare(ConsoleApp(), terminal_size=(80, 24), run_before=run_before)


class ExitedActor:
    """An ActorProcess whose process has exited: what the console sees of an actor without calibration."""

    pid = 4242
    log_path = "outputs/console/actor.log"

    def poll(self) -> int:
        return 1

    def stop(self) -> int:
        return 1

    def tail(self, lines: int = 20) -> list[str]:
        return [
            "INFO pirl.actor: connecting so101_follower arm1 on /dev/ttyACM0",
            "Traceback (most recent call last):",
            '  File "app/actor/loop.py", line 137, in run',
            "    self.guard.connect()",
            '  File "hardware/guard.py", line 212, in connect',
            "    self.robot.connect()",
            "FileNotFoundError: no calibration for so101_follower 'arm1' at "
            "~/.cache/huggingface/lerobot/calibration/robots/so101_follower/arm1.json; "
            "run `lerobot-calibrate --robot.type=so101_follower --robot.id=arm1`",
        ][-lines:]


def test_actor_exited_with_an_error(snap_compare):
    async def run_before(pilot) -> None:
        app = pilot.app
        _freeze(app)
        app._link_since = T0 - 7
        app.show_link(False, "actor not reachable (Connect call failed ('127.0.0.1', 7070))")
        app._check_actor()  # what the twice-a-second tick does
        await pilot.pause()

    app = ConsoleApp(actor=ExitedActor())  # type: ignore[arg-type]
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
