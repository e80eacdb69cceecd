"""The base of every status panel: a bordered box that re-renders itself from the latest ActorStatus."""

from __future__ import annotations

from rich.console import RenderableType
from rich.text import Text
from textual.widget import Widget

from app.control.protocol import ActorStatus


class Panel(Widget):
    """Subclasses implement `render_status`; the app calls `show(status)` on every status (~10 Hz).

    A plain Widget with `render()` rather than a Static: its size comes from the CSS, so a new status only
    repaints this panel (no layout pass), and an unchanged rendering repaints nothing.
    """

    TITLE = ""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="panel")
        self.border_title = self.TITLE
        self.status: ActorStatus | None = None
        self._content: RenderableType = Text("waiting for the actor...", style="dim")

    def show(self, status: ActorStatus) -> None:
        self.status = status
        self._set(self.render_status(status))

    def _set(self, content: RenderableType) -> None:
        if content != self._content:
            self._content = content
            self.refresh()

    def render(self) -> RenderableType:
        return self._content

    def on_resize(self) -> None:
        # Width-dependent layouts (bars, sparklines) are re-drawn for the new size.
        if self.status is not None:
            self._set(self.render_status(self.status))

    def render_status(self, status: ActorStatus) -> RenderableType:
        raise NotImplementedError

    @property
    def inner_width(self) -> int:
        return max(10, self.content_size.width or self.size.width - 4)
