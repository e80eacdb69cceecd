"""Joints: present vs commanded position of every motor, drawn inside its safety limits.

One row per motor. The bar spans the limits in force; `●` is where the joint is, `○` where it was told to
go (`◉` when they coincide). A joint the safety layer clamped since the last status gets a `!` and a
highlighted row, so clamps are visible without colour; a joint within 5 % of a limit gets a `<`/`>`.
"""

from __future__ import annotations

from rich.text import Text

from app.console.format import num
from app.console.widgets.panel import Panel
from app.control.protocol import ActorStatus, JointStatus

NEAR_LIMIT = 0.05  # fraction of the range that counts as "at the limit"


def _pos(value: float, lo: float, hi: float, width: int) -> int:
    frac = 0.0 if hi <= lo else (value - lo) / (hi - lo)
    return min(width - 1, max(0, round(frac * (width - 1))))


def joint_bar(joint: JointStatus, width: int) -> str:
    """`[───○──●───]`: the limits are the brackets, the markers are clipped to them."""
    inner = max(3, width - 2)
    cells = ["─"] * inner
    p = _pos(joint.present, joint.lower, joint.upper, inner)
    if joint.commanded is not None:
        c = _pos(joint.commanded, joint.lower, joint.upper, inner)
        cells[c] = "○"
        cells[p] = "◉" if c == p else "●"
    else:
        cells[p] = "●"
    return "[" + "".join(cells) + "]"


def limit_flag(joint: JointStatus) -> str:
    margin = NEAR_LIMIT * (joint.upper - joint.lower)
    if joint.present <= joint.lower + margin:
        return "<"
    if joint.present >= joint.upper - margin:
        return ">"
    return " "


def _label(joint: JointStatus) -> str:
    """Motor name without LeRobot's ".pos" key suffix."""
    return joint.name.removesuffix(".pos")


class JointsPanel(Panel):
    TITLE = "joints"

    def render_status(self, status: ActorStatus) -> Text:
        width = self.inner_width
        wide = width >= 60
        name_w = max([len(_label(j)) for j in status.joints] + [5])
        fixed = name_w + 8 + 8 + 2 + (19 if wide else 0)
        bar_w = max(5, width - fixed)
        out = Text(no_wrap=True, overflow="crop")
        header = f"{'joint':<{name_w}} {'present':>7} {'command':>7}  {'limits':^{bar_w}}"
        if wide:
            header += f" {'range':>11} {'clamps':>6}"
        out.append(header + "\n", style="bold")
        if not status.joints:
            out.append("no joint data yet", style="dim")
        # Spread the rows out when the panel is tall enough: easier to follow a row across the bar.
        spaced = (self.content_size.height or 0) >= 2 * len(status.joints) + 1
        for i, j in enumerate(status.joints):
            flag = "!" if j.clamped else limit_flag(j)
            row = f"{_label(j):<{name_w}} {j.present:>7.1f} {num(j.commanded):>7} {flag}{joint_bar(j, bar_w)}"
            if wide:
                row += f" {f'{j.lower:.0f}..{j.upper:.0f}':>11} {j.clamp_count:>6}"
            style = "bold reverse" if j.clamped else ("bold" if flag != " " else "")
            out.append(row, style=style)
            if i < len(status.joints) - 1:
                out.append("\n\n" if spaced else "\n")
        return out

    def show(self, status: ActorStatus) -> None:
        super().show(status)
        events = ", ".join(f"{k} {v}" for k, v in sorted(status.safety_events.items()))
        self.border_subtitle = f"! clamped: {events}" if events else "● present ○ command"
