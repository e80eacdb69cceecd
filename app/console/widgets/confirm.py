"""A yes/no question before anything that throws work away or moves the robot (y confirms, n/esc not).

The app's e-stop binding has priority, so it still works while this dialog is open.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [
        Binding("y", "answer(True)", "yes, do it"),
        Binding("n", "answer(False)", "no"),
        Binding("escape", "answer(False)", "cancel", show=False),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm"):
            yield Label(self.question, id="question")
            yield Label("y = yes   n / esc = no   (space = E-STOP still works)", id="answer-keys")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
