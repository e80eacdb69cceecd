"""The top line: the e-stop latch, the link to the actor, the robot and an unplanned hold.

The e-stop state is always spelled out ("e-stop: off" / "E-STOP LATCHED" / "E-STOP SENT"), never shown by
colour alone; without a link to the actor it is "e-stop: unknown" (the console cannot know). A hold is a
warning only while an episode runs: between episodes the arm holds on purpose.
"""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from app.control.protocol import ActorStatus


class StatusBar(Widget):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.status: ActorStatus | None = None
        self.link = "connecting to the actor…"
        self.link_ok = False
        self.connected = False
        self.estop_pending = False
        self._line = Text("")

    def show(
        self,
        status: ActorStatus | None = None,
        link: str | None = None,
        link_ok: bool | None = None,
        connected: bool | None = None,
        estop_pending: bool | None = None,
    ) -> None:
        if status is not None:
            self.status = status
        if link is not None:
            self.link = link
        if link_ok is not None:
            self.link_ok = link_ok
        if connected is not None:
            self.connected = connected
        if estop_pending is not None:
            self.estop_pending = estop_pending
        latched = self.connected and self.status is not None and self.status.estop
        self.set_class(latched or self.estop_pending, "-estop")
        line = self._render_line()
        if line != self._line:
            self._line = line
            self.refresh()

    def render(self) -> Text:
        return self._line

    def _render_line(self) -> Text:
        st = self.status if self.connected else None
        out = Text(no_wrap=True, overflow="ellipsis")
        if st is not None and st.estop:
            out.append(" E-STOP LATCHED ", style="bold reverse")
            out.append(" robot holds; c clears ")
        elif self.estop_pending:
            out.append(" E-STOP SENT ", style="bold reverse")
            out.append(" waiting for the actor ")
        elif st is not None:
            out.append(" e-stop: off ", style="bold")
        else:
            out.append(" e-stop: unknown ", style="bold")
        out.append("| ")
        out.append(self.link, style="" if self.link_ok else "bold reverse")
        if st is not None:
            out.append(f" | {st.robot or 'robot ?'}")
            if st.holding and not st.estop and st.episode.state == "running":
                out.append(" | HOLD", style="bold reverse")
                if st.hold_reason:
                    out.append(f" ({st.hold_reason})")
        return out
