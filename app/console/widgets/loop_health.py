"""Loop health: is the control loop keeping its rate, how long inference takes, how many steps slipped,
and how much robot time the run has used (and how much of it a human drove)."""

from __future__ import annotations

from rich.text import Text

from app.console.format import num
from app.console.widgets.panel import Panel
from app.control.protocol import ActorStatus

SLOW_FRACTION = 0.9  # below 90 % of the target rate the rate is flagged


class LoopHealthPanel(Panel):
    TITLE = "loop"

    def render_status(self, status: ActorStatus) -> Text:
        lp = status.loop
        out = Text(no_wrap=True, overflow="ellipsis")
        out.append("rate    ")
        slow = lp.target_hz > 0 and lp.hz < SLOW_FRACTION * lp.target_hz
        if lp.target_hz > 0:
            out.append(f"{lp.hz:.1f}", style="bold reverse" if slow else "")
            out.append(f" / {lp.target_hz:.0f} Hz")
        else:  # a lockstep simulator has no wall-clock target: it steps as fast as it can
            out.append(f"{lp.hz:.0f} Hz lockstep")
        if slow:
            out.append(" SLOW", style="bold")
        out.append(f"\ninfer   {num(lp.inference_ms, '.1f', ' ms')}")
        out.append("\ndropped ")
        out.append(str(lp.dropped_steps), style="bold" if lp.dropped_steps else "")
        out.append(f"\nsteps   {lp.steps}")
        out.append(f"\nrobot   {lp.robot_minutes:.1f} min")
        share = f" ({lp.human_minutes / lp.robot_minutes:.0%})" if lp.robot_minutes > 0 else ""
        self.border_subtitle = f"human {lp.human_minutes:.1f} min{share}"
        return out
