"""Learner link: is the learner there, which policy version runs, how fresh it is, what waits to go."""

from __future__ import annotations

from rich.text import Text

from app.console.format import ago, num
from app.console.widgets.panel import Panel
from app.control.protocol import ActorStatus

STALE_WEIGHTS_S = 120.0  # weights older than this are highlighted: the learner may be stuck


class LearnerLinkPanel(Panel):
    TITLE = "learner"

    def render_status(self, status: ActorStatus) -> Text:
        ln = status.learner
        out = Text(no_wrap=True, overflow="ellipsis")
        out.append("link    ")
        if ln.connected:
            out.append("UP", style="bold green")
        else:
            out.append("DOWN", style="bold reverse red")
        if ln.address and len(ln.address) + 11 <= self.inner_width:
            out.append(f" {ln.address}", style="dim")
        version = "none" if ln.policy_version is None else f"v{ln.policy_version}"
        out.append(f"\npolicy  {version}")
        out.append("\nweights ")
        stale = ln.seconds_since_weights is None or ln.seconds_since_weights > STALE_WEIGHTS_S
        out.append(ago(ln.seconds_since_weights), style="bold" if stale else "")
        out.append(f"\nqueue   {ln.queue_depth}")
        out.append(f"\nrtt     {num(ln.rtt_ms, '.0f', ' ms')}")
        if ln.error:  # why the link is down, or a refused weights push (stays until good weights load)
            out.append(f"\n{ln.error}", style="bold red")
        return out
