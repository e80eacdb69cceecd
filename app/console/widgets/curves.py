"""Learning curves over episodes: success rate, return and intervention rate, as text sparklines.

Heights are glyphs (▁..█), so the curves read the same without colour. Success rate is a moving average
over the last `window` episodes (a single episode is 0 or 1, which says little); return and intervention
rate are per episode. The newest episode is on the right.
"""

from __future__ import annotations

from rich.text import Text

from app.console.widgets.panel import Panel
from app.control.protocol import ActorStatus, EpisodeRecord

BLOCKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int, lo: float | None = None, hi: float | None = None) -> str:
    """The last `width` values as block glyphs, scaled to [lo, hi] (defaults: their own range)."""
    values = values[-width:] if width > 0 else []
    if not values:
        return ""
    lo = min(values) if lo is None else lo
    hi = max(values) if hi is None else hi
    span = hi - lo
    if span <= 0:
        return BLOCKS[len(BLOCKS) // 2] * len(values)
    top = len(BLOCKS) - 1
    return "".join(BLOCKS[min(top, max(0, round((v - lo) / span * top)))] for v in values)


def success_rate(history: list[EpisodeRecord], window: int) -> list[float]:
    """Moving success rate; episodes without a verdict (None) count as failures."""
    wins = [1.0 if r.success else 0.0 for r in history]
    return [sum(wins[max(0, i + 1 - window) : i + 1]) / min(i + 1, window) for i in range(len(wins))]


class CurvesPanel(Panel):
    TITLE = "learning curves"

    def __init__(self, *, id: str | None = None, window: int = 10) -> None:
        super().__init__(id=id)
        self.window = window  # episodes in the success-rate moving average

    def render_status(self, status: ActorStatus) -> Text:
        hist = status.history
        out = Text(no_wrap=True, overflow="crop")
        if not hist:
            out.append("no finished episode yet", style="dim")
            return out
        width = max(4, self.inner_width - 15)
        rows = [
            ("success", success_rate(hist, self.window), 0.0, 1.0, lambda v: f"{v:4.0%}"),
            ("return", [r.episode_return for r in hist], None, None, lambda v: f"{v:+.1f}"),
            ("interv.", [r.intervention_rate for r in hist], 0.0, 1.0, lambda v: f"{v:4.0%}"),
        ]
        for i, (name, values, lo, hi, fmt) in enumerate(rows):
            out.append(f"{name:<8}")
            out.append(sparkline(values, width, lo, hi).ljust(width), style="bold")
            out.append(f" {fmt(values[-1]):>6}")
            if i < len(rows) - 1:
                out.append("\n")
        self.border_subtitle = f"{len(hist)} episodes, success avg of {self.window}"
        return out
