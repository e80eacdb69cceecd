"""The top line: robot, link to the actor, run state and, above all, the e-stop latch.

The e-stop state is always spelled out ("e-stop: off" / "E-STOP LATCHED"), never shown by colour alone.
"""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from app.control.protocol import ActorStatus


class StatusBar(Widget):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.status: ActorStatus | None = None
        self.link = "connecting"
        self.link_ok = False
        self._line = Text("")

    def show(
        self, status: ActorStatus | None = None, link: str | None = None, link_ok: bool | None = None
    ) -> None:
        if status is not None:
            self.status = status
        if link is not None:
            self.link = link
        if link_ok is not None:
            self.link_ok = link_ok
        self.set_class(bool(self.status and self.status.estop), "-estop")
        line = self._render_line()
        if line != self._line:
            self._line = line
            self.refresh()

    def render(self) -> Text:
        return self._line

    def _render_line(self) -> Text:
        st = self.status
        out = Text(no_wrap=True, overflow="ellipsis")
        if st is not None and st.estop:
            out.append(" E-STOP LATCHED ", style="bold reverse")
            out.append(" robot holds; c clears ")
        else:
            out.append(" e-stop: off ", style="bold")
        out.append("| actor: ")
        out.append(self.link, style="" if self.link_ok else "bold reverse")
        if st is not None:
            out.append(f" | {st.robot or 'robot ?'}")
            if st.holding and not st.estop:
                out.append(" | HOLD", style="bold")
                if st.hold_reason:
                    out.append(f" ({st.hold_reason})")
        return out
