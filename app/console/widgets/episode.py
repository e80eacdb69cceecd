"""Episode: which one (from 1), its state, how long it has left, reward so far, its outcome and who drives.

A latched e-stop replaces the episode state at once (the actor's own state may still say "resetting"
while the arm holds): `E-STOP: holds`, and `E-STOP SENT` from the key press until a status shows it.
"""

from __future__ import annotations

from rich.text import Text

from app.console.format import num
from app.console.widgets.panel import Panel
from app.control.protocol import ActorStatus

# Short labels for states whose names do not fit a narrow panel; the key that moves on is part of it.
STATE_LABELS = {"waiting_confirmation": "READY: g starts", "idle": "IDLE", "resetting": "RESETTING"}


class EpisodePanel(Panel):
    TITLE = "episode"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.estop_pending = False  # the e-stop key was pressed; no status shows the latch yet

    def render_status(self, status: ActorStatus) -> Text:
        ep = status.episode
        out = Text(no_wrap=True, overflow="ellipsis")
        out.append(f"#{ep.number:<5} " if ep.number > 0 else "#-     ")
        if status.estop:
            out.append("E-STOP: holds", style="bold reverse")
        elif self.estop_pending:
            out.append("E-STOP SENT", style="bold reverse")
        else:
            state = STATE_LABELS.get(ep.state, ep.state.upper())
            out.append(state, style="bold reverse" if ep.state in ("holding", "stopped") else "bold")
        limit = f" / {ep.length_s:.0f} s" if ep.length_s else ""
        out.append(f"\nleft    {num(ep.time_left_s, '.1f', ' s')}{limit}")
        out.append(f"\nreward  {ep.reward:+.2f}")
        out.append("\nresult  ")
        if ep.outcome == "success":
            out.append("SUCCESS", style="bold green")
        elif ep.outcome == "failure":
            out.append("FAILURE", style="bold red")
        elif ep.outcome:  # ended without a verdict: estop, operator, link_lost, rerecord
            out.append(f"ended: {ep.outcome}", style="bold")
        else:
            out.append("open", style="dim")
        out.append("\ndriver  ")
        if ep.intervention:
            out.append("HUMAN", style="bold reverse yellow")
        else:
            out.append("policy")
        source = f" ({ep.takeover_source})" if ep.takeover_source else ""
        self.border_subtitle = f"takeovers {ep.interventions}{source}"
        return out
