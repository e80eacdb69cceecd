"""`?`: every key of the console with what it does (the bindings' own descriptions), in a dialog.

Esc, `?` or q close it; the app's e-stop binding has priority, so space still stops the robot here.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static


def key_name(binding: Binding) -> str:
    if binding.key_display:
        return binding.key_display
    return {"question_mark": "?", "space": "spc"}.get(binding.key, binding.key)


def help_rows(bindings: Iterable[Binding]) -> list[tuple[str, str]]:
    """(keys, description) for every binding the footer can show, in their order."""
    return [(key_name(b), b.tooltip or b.description) for b in bindings if b.show]


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "dismiss", "close"),
        Binding("question_mark", "dismiss", "close", show=False),
        Binding("q", "dismiss", "close", show=False),
    ]

    def __init__(self, bindings: Iterable[Binding]) -> None:
        super().__init__()
        self.rows = help_rows(bindings)

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column(overflow="fold")
        for key, text in self.rows:
            table.add_row(key, text)
        with Vertical(id="help"):
            yield Label("keys (the footer shows the ones that apply now)", id="help-title")
            with VerticalScroll(id="help-keys"):
                yield Static(table)
            yield Label("esc / ? / q = close   space = E-STOP still works", id="help-close")
