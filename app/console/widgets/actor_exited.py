"""The started actor exited on its own (a missing calibration file, a crash, its episode count done): a
dialog with the end of its log, so the reason is on the screen, not only in a file.

q quits the console (with a non-zero exit code after an error); esc goes back to the screen, where the
same lines are in the log pane, the top line says `actor EXITED` and only e-stop, help and quit are
offered. The app's e-stop binding has priority, so it still works here (with no actor to take it, the log
says so: use the hardware stop).
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static


class ActorExitedScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("q", "quit_console", "quit"),
        Binding("escape", "dismiss", "back to the screen"),
    ]

    def __init__(self, rc: int, log_path: str, tail: list[str], exit_code: int) -> None:
        super().__init__()
        self.rc = rc
        self.log_path = log_path
        self.tail = tail
        self.exit_code = exit_code

    def compose(self) -> ComposeResult:
        with Vertical(id="actor-exited"):
            how = "with an error" if self.rc != 0 else "(its run is done)"
            yield Label(f" THE ACTOR EXITED {how}: exit code {self.rc} ", id="exited-title")
            yield Label(
                "Nothing commands the robot now. The end of its log:",
                id="exited-what",
            )
            with VerticalScroll(id="exited-tail"):
                yield Static(Text("\n".join(self.tail) or "(the actor wrote nothing)", overflow="fold"))
            yield Label(f"whole log: {self.log_path}", id="exited-log-path")
            yield Label(
                f"q = quit (exit code {self.exit_code})   esc = back to the screen   space = E-STOP",
                id="exited-keys",
            )

    def on_mount(self) -> None:
        self.query_one("#exited-tail", VerticalScroll).scroll_end(animate=False)

    def action_quit_console(self) -> None:
        self.app.exit(self.exit_code, return_code=self.exit_code)
