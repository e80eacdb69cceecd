"""Record the safety envelope by demonstration: the operator moves the limp arm through the task space.

The recorder samples joint positions (robot units: degrees, gripper 0..100) at a fixed rate and keeps the
per-joint min/max and, for arms pirl has kinematics for (SO-100/SO-101), the end-effector box. It shows
the live pose and extremes and stops on Enter, after `duration_s`, or after `max_samples`. `build_envelope`
turns a recording into the `SafetyEnvelope` file the safety layer loads: joint limits widened by a small
margin (never past what the calibration can reach, never excluding a recorded pose), the box widened by
`workspace_margin` metres, and the starting pose as the home pose.

Koch arms get joint limits only: pirl has no kinematic model for them, and the envelope notes say so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from calibration.errors import CalibrationError
from hardware.safety.envelope import SafetyEnvelope

GRIPPER = "gripper"
MIN_LIMIT_SPAN = 1.0  # robot units; a joint that never moved still gets a (tight) non-empty limit
BARELY_MOVED = 5.0  # robot units; below this span a joint's limit is flagged as tight


@dataclass
class Recording:
    """Every pose the recorder read, in order, and where the end effector was (if known)."""

    motors: tuple[str, ...]
    samples: list[dict[str, float]] = field(default_factory=list)
    ee: list[np.ndarray] = field(default_factory=list)
    elapsed_s: float = 0.0
    stopped_by: str = ""

    def joint_range(self, motor: str) -> tuple[float, float]:
        values = [s[motor] for s in self.samples]
        return min(values), max(values)


class EnvelopeRecorder:
    """Samples `read()` until `stop()` / duration / sample budget; shows progress through `out`."""

    def __init__(
        self,
        read: Callable[[], Mapping[str, float]],
        motors: tuple[str, ...] | list[str],
        fk: Callable[[dict[str, float]], np.ndarray] | None = None,
        *,
        fps: float = 30.0,
        duration_s: float | None = None,
        max_samples: int | None = None,
        stop: Callable[[], bool] = lambda: False,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        out: Callable[[str], None] = print,
        redraw: bool = False,
        show_every_s: float = 0.25,
    ) -> None:
        if fps <= 0:
            raise CalibrationError(f"--fps must be > 0, got {fps}")
        if duration_s is not None and duration_s <= 0:
            raise CalibrationError(f"--duration_s must be > 0, got {duration_s}")
        if max_samples is not None and max_samples < 1:
            raise CalibrationError(f"--max_samples must be >= 1, got {max_samples}")
        self.read, self.motors, self.fk = read, tuple(motors), fk
        self.period = 1.0 / fps
        self.duration_s, self.max_samples = duration_s, max_samples
        self.stop, self.clock, self.sleep, self.out = stop, clock, sleep, out
        self.redraw, self.show_every_s = redraw, show_every_s
        self._shown_lines = 0

    def run(self) -> Recording:
        rec = Recording(self.motors)
        start = self.clock()
        last_show = -math.inf
        while True:
            tick = self.clock()
            raw = self.read()
            pose = {m: float(raw[m]) for m in self.motors}
            bad = [m for m, v in pose.items() if not math.isfinite(v)]
            if bad:
                raise CalibrationError(f"non-finite positions read for {bad}; check the cables and re-run")
            rec.samples.append(pose)
            if self.fk is not None:
                rec.ee.append(np.asarray(self.fk(pose), dtype=float))
            rec.elapsed_s = tick - start
            if tick - last_show >= self.show_every_s:
                self._show(rec)
                last_show = tick
            if self.stop():
                rec.stopped_by = "enter"
            elif self.duration_s is not None and rec.elapsed_s >= self.duration_s:
                rec.stopped_by = "duration"
            elif self.max_samples is not None and len(rec.samples) >= self.max_samples:
                rec.stopped_by = "max_samples"
            if rec.stopped_by:
                self._show(rec)
                return rec
            self.sleep(max(0.0, self.period - (self.clock() - tick)))

    def _show(self, rec: Recording) -> None:
        pose = rec.samples[-1]
        lines = [f"recording: {len(rec.samples)} samples, {rec.elapsed_s:5.1f} s   (Enter stops)"]
        lines.append(f"  {'joint':<14}{'now':>9}{'min':>9}{'max':>9}")
        for m in self.motors:
            lo, hi = rec.joint_range(m)
            lines.append(f"  {m:<14}{pose[m]:9.1f}{lo:9.1f}{hi:9.1f}")
        if rec.ee:
            pts = np.stack(rec.ee)
            now, lo, hi = rec.ee[-1], pts.min(axis=0), pts.max(axis=0)
            lines.append(
                "  end effector (m) now "
                + " ".join(f"{v:+.3f}" for v in now)
                + "   box "
                + " ".join(f"[{a:+.3f},{b:+.3f}]" for a, b in zip(lo, hi, strict=True))
            )
        text = "\n".join(lines)
        if self.redraw and self._shown_lines:
            text = f"\x1b[{self._shown_lines}A\r" + text  # move the cursor back over the last table
        self._shown_lines = len(lines)
        self.out(text)


def build_envelope(
    rec: Recording,
    robot_type: str,
    robot_id: str | None,
    *,
    joint_margin: float = 2.0,
    workspace_margin: float = 0.02,
    reachable: Mapping[str, tuple[float, float]] | None = None,
    gripper_full_range: bool = True,
    home_from_start: bool = True,
) -> tuple[SafetyEnvelope, list[str]]:
    """The envelope for a recording, and warnings worth showing the operator.

    Joint limit = recorded [min, max] widened by `joint_margin`, clipped to `reachable` (the calibrated
    range) but never so far that a recorded pose falls outside. The gripper gets its whole reachable range
    when `gripper_full_range` (grasping needs it even if the demo never fully opened the jaws).
    """
    if not rec.samples:
        raise CalibrationError("no poses were recorded; keep the recorder running while you move the arm")
    if joint_margin < 0 or workspace_margin < 0:
        raise CalibrationError("--joint_margin and --workspace_margin must be >= 0")
    reachable = reachable or {}
    warnings: list[str] = []
    limits: dict[str, tuple[float, float]] = {}
    for m in rec.motors:
        rmin, rmax = rec.joint_range(m)
        lo, hi = rmin - joint_margin, rmax + joint_margin
        if m in reachable:
            clo, chi = reachable[m]
            lo, hi = max(lo, clo), min(hi, chi)
            if m == GRIPPER and gripper_full_range:
                lo, hi = clo, chi
        lo, hi = min(lo, rmin), max(hi, rmax)  # every recorded pose stays inside
        if hi - lo < MIN_LIMIT_SPAN:
            mid = 0.5 * (lo + hi)
            lo, hi = mid - MIN_LIMIT_SPAN / 2, mid + MIN_LIMIT_SPAN / 2
        if rmax - rmin < BARELY_MOVED and not (m == GRIPPER and gripper_full_range):
            warnings.append(
                f"{m} barely moved ({rmax - rmin:.1f} units): its limit [{lo:.1f}, {hi:.1f}] is tight; "
                "re-record moving it through the task, or widen it in the file"
            )
        limits[m] = (math.floor(lo * 1000) / 1000, math.ceil(hi * 1000) / 1000)  # rounding never shrinks
    notes = {
        "units": "degrees; gripper 0..100 (LeRobot use_degrees=true)",
        "samples": str(len(rec.samples)),
        "duration_s": f"{rec.elapsed_s:.1f}",
        "joint_margin": str(joint_margin),
    }
    box_min = box_max = None
    if rec.ee:
        pts = np.stack(rec.ee)
        box_min = tuple(math.floor((float(v) - workspace_margin) * 1e4) / 1e4 for v in pts.min(axis=0))
        box_max = tuple(math.ceil((float(v) + workspace_margin) * 1e4) / 1e4 for v in pts.max(axis=0))
        box_min, box_max = _non_degenerate(box_min, box_max)
        notes["workspace_margin_m"] = str(workspace_margin)
    else:
        notes["workspace"] = (
            f"no kinematic model for {robot_type} in pirl: joint limits only, no workspace box"
        )
    kwargs = {}
    if "waypoints" in SafetyEnvelope.__dataclass_fields__:
        kwargs["waypoints"] = extreme_poses(rec)
    if home_from_start:
        home = {f"{m}.pos": min(max(v, limits[m][0]), limits[m][1]) for m, v in rec.samples[0].items()}
        if "home_pose" in SafetyEnvelope.__dataclass_fields__:
            kwargs["home_pose"] = home
        else:
            notes["home_pose"] = repr(home)
    env = SafetyEnvelope(
        robot_type=robot_type,
        joint_limits=limits,
        workspace_min=box_min,
        workspace_max=box_max,
        robot_id=robot_id,
        recorded_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        source="pirl calibrate envelope",
        notes=notes,
        **kwargs,
    )
    env.validate()
    return env, warnings


def extreme_poses(rec: Recording) -> list[dict[str, float]]:
    """The recorded poses where some joint reached its min or max, in recording order, without repeats.

    They are poses the operator really put the arm in (so free of collisions with the scene) at the edges
    of the envelope: the targets `pirl calibrate check` revisits.
    """
    picked: set[int] = set()
    for m in rec.motors:
        values = [s[m] for s in rec.samples]
        picked.add(int(np.argmin(values)))
        picked.add(int(np.argmax(values)))
    return [{f"{m}.pos": v for m, v in rec.samples[i].items()} for i in sorted(picked)]


def _non_degenerate(lo: tuple[float, ...], hi: tuple[float, ...], min_size: float = 0.005):
    """A box at least `min_size` wide on every axis (a demo that never left a plane still gets a box)."""
    lo2, hi2 = [], []
    for a, b in zip(lo, hi, strict=True):
        if b - a < min_size:
            mid = 0.5 * (a + b)
            a, b = mid - min_size / 2, mid + min_size / 2
        lo2.append(a)
        hi2.append(b)
    return tuple(lo2), tuple(hi2)
