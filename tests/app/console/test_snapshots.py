"""Snapshots of the main screen from a fixed status (no clocks, no actor): at the 80x24 minimum, at a
larger size, and with the e-stop latched. Regenerate with `pytest --snapshot-update` and inspect the SVGs."""

from __future__ import annotations

import pytest

from app.console.app import ConsoleApp
from tests.app.console.sample import sample_status


def _show(estop: bool = False):
    async def run_before(pilot) -> None:
        status = sample_status()
        if estop:
            status.estop = True
            status.holding = True
            status.hold_reason = "estop"
            status.episode.state = "holding"
        pilot.app.show_link(True, "connected")
        pilot.app.show_status(status)
        await pilot.pause()

    return run_before


@pytest.mark.parametrize("size", [(80, 24), (132, 40)], ids=["80x24", "132x40"])
def test_main_screen(snap_compare, size):
    assert snap_compare(ConsoleApp(), terminal_size=size, run_before=_show())


def test_main_screen_estop_latched(snap_compare):
    assert snap_compare(ConsoleApp(), terminal_size=(80, 24), run_before=_show(estop=True))
