"""The base of every status panel: a bordered box that re-renders itself from the latest ActorStatus."""

from __future__ import annotations

from rich.console import RenderableType
from textual.widgets import Static

from app.actor.control import ActorStatus


class Panel(Static):
    """Subclasses implement `render_status`; the app calls `show(status)` on every status (~10 Hz)."""

    TITLE = ""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, classes="panel")
        self.border_title = self.TITLE
        self.status: ActorStatus | None = None

    def show(self, status: ActorStatus) -> None:
        self.status = status
        self.update(self.render_status(status))

    def on_resize(self) -> None:
        # Width-dependent layouts (bars, sparklines) are re-drawn for the new size.
        if self.status is not None:
            self.update(self.render_status(self.status))

    def render_status(self, status: ActorStatus) -> RenderableType:
        raise NotImplementedError

    @property
    def inner_width(self) -> int:
        return max(10, self.content_size.width or self.size.width - 4)
