"""Learning curves over episodes: success rate, return and intervention rate, as text sparklines.

Heights are glyphs (▁..█), so the curves read the same without colour. Success rate is a moving average
over the last `window` episodes (a single episode is 0 or 1, which says little); return and intervention
rate are per episode. The newest episode is on the right.

Below the curves, one line says where those episodes are kept: `rec     12 ep -> outputs/run/episodes`
(the actor records them as a LeRobotDataset, `--actor.record.root`), or `rec     off`. An error that
stopped the recording (the run goes on) is shown in the warning colour and spelled out (`STOPPED`), on a
line of its own when the panel has room for it, else on the rec line itself (80x24).
"""

from __future__ import annotations

from rich.text import Text

from app.console.format import clip, tail
from app.console.widgets.panel import Panel
from app.control.protocol import ActorStatus, EpisodeRecord, RecordStatus

BLOCKS = "▁▂▃▄▅▆▇█"
WARNING = "bold yellow"  # the log pane's warning style
LABEL = 8  # the label column ("success ", "rec     ")


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


def record_text(rec: RecordStatus, width: int, error_line: bool = True) -> Text:
    """The recording line(s), at most `width` columns each: the folder is cut from the left (its end
    names the run). `error_line`: a stopping error gets a line of its own under the count and folder;
    False: the error alone takes the rec line (the log pane has the whole of it, and the count kept)."""
    out = Text(no_wrap=True, overflow="ellipsis")
    out.append("rec".ljust(LABEL))
    room = width - LABEL
    if not rec.root and not rec.error:
        out.append("off", style="dim")
        return out
    if not rec.error:
        count = f"{rec.episodes} ep -> "
        out.append(count + tail(rec.root, max(1, room - len(count))))
        return out
    if not error_line:
        out.append(clip(f"STOPPED: {rec.error}", room), style=WARNING)  # the count is in the log line
        return out
    count = f"STOPPED at {rec.episodes} ep -> "
    out.append(count + tail(rec.root or "?", max(1, room - len(count))), style=WARNING)
    out.append("\n" + " " * LABEL + clip(rec.error, room), style=WARNING)
    return out


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
            out.append("\n")
            out.append_text(self._record(status.record, lines_used=1))
            return out
        width = max(4, self.inner_width - 15)
        rows = [
            ("success", success_rate(hist, self.window), 0.0, 1.0, lambda v: f"{v:4.0%}"),
            ("return", [r.episode_return for r in hist], None, None, lambda v: f"{v:+.1f}"),
            ("interv.", [r.intervention_rate for r in hist], 0.0, 1.0, lambda v: f"{v:4.0%}"),
        ]
        for name, values, lo, hi, fmt in rows:
            out.append(f"{name:<8}")
            out.append(sparkline(values, width, lo, hi).ljust(width), style="bold")
            out.append(f" {fmt(values[-1]):>6}")
            out.append("\n")
        out.append_text(self._record(status.record, lines_used=len(rows)))
        self.border_subtitle = f"{len(hist)} episodes, success avg of {self.window}"
        return out

    def _record(self, rec: RecordStatus, lines_used: int) -> Text:
        """The rec line below `lines_used` lines; the error on its own line only where the panel is tall
        enough to show it (at 80x24 the curves leave one line)."""
        room = self.content_size.height - lines_used
        return record_text(rec, self.inner_width, error_line=room >= 2)
