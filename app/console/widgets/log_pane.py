"""Log: the actor's recent log lines (appended once each, by sequence number) and the console's own notes
(commands sent and what the actor said about them).

A watchdog hold at an episode boundary ("no fresh action for 0.3 s: holding" while the episode ends and
the arm is about to drive home) is planned, not a fault: between episodes it is shown as a plain line;
only while an episode runs is it a warning."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import RichLog

from app.control.protocol import ActorStatus

_LEVEL_STYLE = {"WARNING": "bold yellow", "ERROR": "bold reverse red", "CRITICAL": "bold reverse red"}
# Warnings that are expected when they come between episodes (the guard's watchdog hold).
BOUNDARY_WARNINGS = ("no fresh action",)


class LogPane(RichLog):
    def __init__(self, *, id: str | None = None, max_lines: int = 500) -> None:
        super().__init__(id=id, max_lines=max_lines, wrap=False, markup=False, auto_scroll=True)
        self.border_title = "log"
        self.last_seq = -1

    def show(self, status: ActorStatus, boundary: bool = False) -> None:
        """Append the status's new lines; `boundary`: they came while no episode ran (or one just ended)."""
        for line in status.log:
            if line.seq <= self.last_seq:
                continue
            self.last_seq = line.seq
            level = line.level.upper()
            if boundary and level == "WARNING" and line.text.startswith(BOUNDARY_WARNINGS):
                self.write(Text(f"{line.text} (episode boundary)", style="dim"))
                continue
            tag = "" if level == "INFO" else f"{level[:4]} "
            self.write(Text(tag + line.text, style=_LEVEL_STYLE.get(level, "")))

    def note(self, text: str, ok: bool = True) -> None:
        """A console-side line, marked `>` so it is never mistaken for the actor's own log."""
        self.write(Text(f"> {text}", style="italic" if ok else "bold reverse"))

    def actor_output(self, text: str) -> None:
        """A line of a started actor's own output (its log file), e.g. the error it exited with."""
        self.write(Text(f"| {text}", style="bold"))

    def actor_restarted(self) -> None:
        """A new actor numbers its lines from the start again."""
        self.last_seq = -1
