"""PNG plots a person would rather look at than a JSON file: success against robot minutes, a learner's
learning curve from its metrics.jsonl, and the per-scene success of an evaluation.

Every function takes plain numbers (no policy, no run object), writes one PNG atomically (a reader never
sees half a file) and returns its path. Bad input is a ValueError that says what is wrong; input with
nothing to draw (no points, no updates yet, no episodes) gives a plot that says so, since an empty run is a
result too. matplotlib is imported on the first plot, and only its Agg canvas is used (no pyplot, no
global backend switch, no display needed), so importing this module costs nothing.

A plot is a by-product of the run it shows: callers wrap it in `safely`, which turns any failure into one
warning line, so a plot never fails a demo, an evaluation or a benchmark.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("pirl.plots")

DPI = 110
# The learner metrics a learning curve shows, in panel order: (title, y label, keys). A panel appears when
# one of its keys has a value; the first keys are the runtime learner's (app/learner/metrics.py), the
# later ones the in-process demo's (app/demo/pipeline.py run_inprocess).
LEARNING_PANELS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("episode success", "success", ("charts/success_rate", "train_success", "eval_success")),
    ("episodic return", "return", ("charts/episodic_return",)),
    ("policy loss", "loss", ("losses/policy_loss",)),
    ("value loss", "loss", ("losses/value_loss",)),
    ("approx. KL", "KL", ("losses/approx_kl",)),
)
ROBOT_MINUTES_KEY = "charts/robot_minutes"  # the learner's robot-time clock (app/learner/robot_time.py)
STEP_KEY = "update"  # every metrics.jsonl line's update number


def safely(
    what: str, plot: Callable[..., Path], *args: Any, warn: Callable[[str], Any] | None = None, **kwargs: Any
) -> Path | None:
    """`plot(*args, **kwargs)`, or None and one warning line (`warn`, default this module's logger) when it
    fails for any reason: a missing matplotlib, a full disk, bad numbers. The run it reports on goes on."""
    try:
        return plot(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - a plot must never fail the run it reports on
        (warn or log.warning)(f"{what} not written: {type(exc).__name__}: {exc}")
        return None


# ------------------------------------------------------------------------- success vs robot minutes


def success_vs_robot_minutes(
    path: str | Path,
    curves: Mapping[str, Sequence[Sequence[float | None]]],
    title: str = "Success against robot minutes",
    band: str = "95 % CI",
) -> Path:
    """One line per curve: label -> points `(robot_minutes, success)` or `(robot_minutes, success, low,
    high)`, success and interval in 0..1 (shown in %), the interval as a shaded band. A point whose success
    is None (not measured) is left out; points are drawn in robot-minute order. `band` names the band in
    the legend (what the interval is)."""
    checked = {label: _check_points(label, points) for label, points in curves.items()}
    fig = _figure(7.0, 4.4 + 0.25 * ((len(checked) + 1) // 2))  # room for the legend below
    ax = fig.add_subplot()
    drawn = False
    for label, points in checked.items():
        if not points:
            continue
        x = [p[0] for p in points]
        line = ax.plot(x, [100 * p[1] for p in points], marker="o", label=label)[0]
        banded = [p for p in points if p[2] is not None]
        if len(banded) == 1:  # a band needs two points: one interval is an error bar
            (m, y, lo, hi) = banded[0]
            ax.errorbar([m], [100 * y], yerr=[[100 * (y - lo)], [100 * (hi - y)]], fmt="none", capsize=4,
                        ecolor=line.get_color())  # fmt: skip
        elif banded:
            ax.fill_between(
                [p[0] for p in banded],
                [100 * p[2] for p in banded],
                [100 * p[3] for p in banded],
                color=line.get_color(),
                alpha=0.18,
                linewidth=0,
            )
        drawn = True
    if not drawn:
        _empty(ax, "no success measured yet")
    else:
        ax.set_xlabel("robot minutes (episodes and drives home)")
        ax.set_ylabel("success (%)")
        ax.set_ylim(-2, 102)
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
        # one legend row per curve, below the axes so it never hides a curve; the bands share one caption
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=2, fontsize="small", frameon=False)
        ax.text(0.99, 0.01, f"shaded: {band}", transform=ax.transAxes, ha="right", va="bottom",
                fontsize="x-small", color="dimgrey")  # fmt: skip
    ax.set_title(title)
    return _save(fig, path)


def _check_points(label: str, points: Sequence[Sequence[float | None]]) -> list[tuple]:
    """Points as (minutes, success, low | None, high | None), sorted, unmeasured ones dropped; a ValueError
    naming the curve and the point for anything that is not a number in range."""
    out = []
    for i, p in enumerate(points):
        if len(p) not in (2, 4):
            raise ValueError(
                f"curve {label!r} point {i}: want (robot_minutes, success[, low, high]), got {p!r}"
            )
        minutes, success = p[0], p[1]
        low, high = (p[2], p[3]) if len(p) == 4 else (None, None)
        if success is None:
            continue
        if not _finite(minutes) or minutes < 0:
            raise ValueError(f"curve {label!r} point {i}: robot minutes must be >= 0, got {minutes!r}")
        if not _finite(success) or not 0 <= success <= 1:
            raise ValueError(f"curve {label!r} point {i}: success must be in [0, 1], got {success!r}")
        if (low is None) != (high is None):
            raise ValueError(f"curve {label!r} point {i}: give both ends of the interval or neither")
        if low is not None and not (_finite(low) and _finite(high) and 0 <= low <= success <= high <= 1):
            raise ValueError(
                f"curve {label!r} point {i}: need 0 <= low <= success <= high <= 1, got "
                f"{low!r} <= {success!r} <= {high!r}"
            )
        out.append((float(minutes), float(success), low, high))
    return sorted(out, key=lambda t: t[0])


# ----------------------------------------------------------------------------------- learning curve


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The JSON objects of a metrics.jsonl, oldest first. A line that is not a JSON object (the last one
    while the learner writes it, or a line cut off by a crash) is skipped. FileNotFoundError when missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no metrics file at {path}")
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def learning_curve(path: str | Path, metrics: str | Path, title: str | None = None) -> Path:
    """A learner's run from its `<output_dir>/metrics.jsonl` (one JSON object per update): episode
    success, return and the main losses (LEARNING_PANELS, those present) against the update number, and
    against robot minutes too when the lines carry `charts/robot_minutes`. Null values (non-finite ones,
    as the learner writes them) are skipped. A file with no update yet gives a plot saying so."""
    rows = read_metrics(metrics)
    panels = [
        (name, ylabel, [k for k in keys if _series(rows, STEP_KEY, k)[0]])
        for name, ylabel, keys in LEARNING_PANELS
    ]
    panels = [p for p in panels if p[2]]
    by_minutes = any(_finite(r.get(ROBOT_MINUTES_KEY)) for r in rows)
    columns = [(STEP_KEY, "update")] + ([(ROBOT_MINUTES_KEY, "robot minutes")] if by_minutes else [])
    title = title or f"Learning curve: {Path(metrics).parent.name or Path(metrics).name}"
    if not panels:
        fig = _figure(7.0, 3.0)
        ax = fig.add_subplot()
        _empty(ax, f"no updates with metrics yet ({len(rows)} lines in {Path(metrics).name})")
        ax.set_title(title)
        return _save(fig, path)
    fig = _figure(5.0 * len(columns) + 1.0, 2.3 * len(panels) + 0.6)
    axes = fig.subplots(len(panels), len(columns), squeeze=False, sharex="col")
    for row, (name, ylabel, keys) in enumerate(panels):
        for col, (xkey, xlabel) in enumerate(columns):
            ax = axes[row][col]
            for key in keys:
                xs, ys = _series(rows, xkey, key)
                if xs:
                    ax.plot(xs, ys, marker="." if len(xs) < 40 else None, linewidth=1.2, label=key)
            if len(keys) > 1:
                ax.legend(fontsize="x-small", loc="best")
            if ylabel == "success":
                ax.set_ylim(-0.02, 1.02)
            ax.set_title(name, fontsize="medium")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            if row == len(panels) - 1:
                ax.set_xlabel(xlabel)
    fig.suptitle(title)
    return _save(fig, path)


def _series(rows: Sequence[Mapping[str, Any]], xkey: str, ykey: str) -> tuple[list[float], list[float]]:
    """(x, y) of the rows where both are finite numbers."""
    pairs = [(r.get(xkey), r.get(ykey)) for r in rows]
    kept = [(float(x), float(y)) for x, y in pairs if _finite(x) and _finite(y)]
    return [x for x, _ in kept], [y for _, y in kept]


# ---------------------------------------------------------------------------------- per-scene success


@dataclass(frozen=True)
class SceneBar:
    """One evaluated scene: its success rate over `trials` runs and an interval (e.g. Wilson) around it."""

    label: str  # the x tick (the episode index, or a reset seed)
    successes: int
    trials: int
    low: float  # lower end of the interval on the rate (0..1)
    high: float  # upper end (0..1)
    counted: bool = True  # False: a human took over, so it is shown apart (hatched) and not in the rate
    deterministic: bool | None = None  # the deterministic (ODE) outcome, marked above the bar when given

    @property
    def rate(self) -> float:
        return self.successes / self.trials


def per_scene_success(
    path: str | Path,
    scenes: Sequence[SceneBar],
    overall: tuple[float, float, float] | None = None,
    title: str = "Success per scene",
    trials_label: str = "deterministic (ODE) episode",
    interval_label: str = "interval",
) -> Path:
    """A bar per scene (its success rate, an error bar for its interval, green to red by rate), scenes a
    human took over hatched, the deterministic outcome marked above each bar when known, and the overall
    rate `(rate, low, high)` as a line with its band. `trials_label` says what one trial of a bar is,
    `interval_label` what the intervals are (e.g. "95 % Wilson CI")."""
    for s in scenes:
        if s.trials < 1 or not 0 <= s.successes <= s.trials:
            raise ValueError(f"scene {s.label}: need 0 <= successes <= trials and trials >= 1, got {s}")
        if not (_finite(s.low) and _finite(s.high) and 0 <= s.low <= s.rate <= s.high <= 1):
            raise ValueError(f"scene {s.label}: need 0 <= low <= rate <= high <= 1, got {s}")
    n = len(scenes)
    fig = _figure(min(16.0, max(6.5, 3.5 + 0.11 * n)), 4.4)
    ax = fig.add_subplot()
    if not scenes:
        ax.set_title(title)
        _empty(ax, "no episodes finished")
        return _save(fig, path)
    from matplotlib import colormaps

    cmap = colormaps["RdYlGn"]
    x = list(range(n))
    rates = [s.rate for s in scenes]
    colors = [cmap(0.15 + 0.7 * r) if s.counted else "lightgrey" for s, r in zip(scenes, rates, strict=True)]
    bars = ax.bar(x, [100 * r for r in rates], width=0.8, color=colors, edgecolor="dimgrey", linewidth=0.4)
    for bar, s in zip(bars, scenes, strict=True):
        if not s.counted:
            bar.set_hatch("//")
    zero = [i for i, r in enumerate(rates) if r == 0]  # a bar of height 0 is invisible: mark it on the axis
    if zero:
        ax.scatter(zero, [0] * len(zero), marker="_", s=40, linewidths=3, clip_on=False, zorder=3,
                   color=[colors[i] for i in zero])  # fmt: skip
    interval = ax.errorbar(
        x,
        [100 * r for r in rates],
        yerr=[[100 * (r - s.low) for s, r in zip(scenes, rates, strict=True)],
              [100 * (s.high - r) for s, r in zip(scenes, rates, strict=True)]],
        fmt="none", ecolor="black", elinewidth=0.7, capsize=1.5 if n <= 60 else 0,
        label=f"{interval_label} on the\nscene's rate",
    )  # fmt: skip
    handles = [interval]
    marked = [(i, s.deterministic) for i, s in enumerate(scenes) if s.deterministic is not None]
    ok = [i for i, d in marked if d]
    bad = [i for i, d in marked if not d]
    if ok:
        handles.append(ax.scatter(ok, [106] * len(ok), marker="o", s=14, color="black", label="ODE success"))
    if bad:
        handles.append(
            ax.scatter(bad, [106] * len(bad), marker="o", s=14, facecolors="none", edgecolors="black",
                       label="ODE failure")
        )  # fmt: skip
    if overall is not None:
        rate, low, high = overall
        ax.axhspan(100 * low, 100 * high, color="tab:blue", alpha=0.12, linewidth=0, zorder=0)
        handles.append(
            ax.axhline(
                100 * rate, color="tab:blue", linewidth=1.2, zorder=0.5,
                label=f"all counted scenes:\n{100 * rate:.1f} % [{100 * low:.1f}, {100 * high:.1f}]",
            )
        )  # fmt: skip
    if any(not s.counted for s in scenes):
        from matplotlib.patches import Patch

        handles.append(Patch(facecolor="lightgrey", hatch="//", edgecolor="dimgrey", label="taken over"))
    if handles:
        ax.legend(handles=handles, fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    step = max(1, math.ceil(n / 40))  # at most ~40 tick labels
    labels = [s.label for s in scenes]
    ax.set_xticks(x[::step], labels[::step], fontsize="x-small", rotation=90 if n > 20 else 0)
    ax.set_xlim(-0.7, n - 0.3)
    ax.set_ylim(0, 112 if marked else 102)
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("success (%)")
    ax.set_xlabel("scene")
    lo, hi = min(s.trials for s in scenes), max(s.trials for s in scenes)
    per = f"{lo if lo == hi else f'{lo}-{hi}'} {trials_label}{'s' if hi > 1 else ''} each"
    ax.set_title(f"{title}\n{n} scenes, {per}", fontsize="medium")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


# ------------------------------------------------------------------------------------------ drawing


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _figure(width: float, height: float) -> Any:
    """A matplotlib Figure on the Agg canvas (non-interactive, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="dimgrey")
    ax.set_xticks([])
    ax.set_yticks([])


def _save(fig: Any, path: str | Path) -> Path:
    """Write the PNG under a temporary name and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
