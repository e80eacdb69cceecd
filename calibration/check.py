"""`pirl calibrate check`: drive the arm slowly, through the safety layer, to poses inside the envelope.

First the arm revisits the envelope's waypoints (recorded poses where some joint reached its extreme:
poses the operator really put it in), in recording order, then returns to the start. Then each joint in
turn goes from the starting pose to a point `inset` inside its low and its high limit and back, with the
other joints still, on a smooth trajectory timed at `speed_fraction` of the velocity limit
(`RobotGuard.move_to`). After each move we read the arm and check it got there, sits inside the joint
limits and (SO-10x) keeps the end effector inside the workspace box, and that the safety layer did not
have to clamp anything: a move planned inside the envelope that gets clamped means the envelope, the
calibration or the box disagree. Poses whose end effector would leave the box are pulled back along the
way from the start (like the safety layer does) or skipped.

With `probe_limits`, each joint is also asked to go `probe_overshoot` past each limit: the check passes
only if the safety layer clamps it and the arm stops at the limit.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

BOX_TOLERANCE_M = 0.005  # servo error may leave the end effector this far past the box edge
_BISECT_STEPS = 12


@dataclass
class PoseResult:
    name: str
    goal: dict[str, float]
    reached: bool
    error: float
    in_limits: bool
    in_box: bool | None  # None: no workspace box for this robot
    events: dict[str, int] = field(default_factory=dict)
    # "inside": planned inside the envelope, must arrive unclamped; "probe": a deliberate request past a
    # limit, must be clamped; "return": back from a probe, where the first step may be clamped by the
    # encoder tick the arm sits past its limit.
    kind: str = "inside"

    @property
    def probe(self) -> bool:
        return self.kind == "probe"

    @property
    def clamped(self) -> bool:
        return any(k.startswith(("joint_limit", "workspace")) for k in self.events)

    @property
    def ok(self) -> bool:
        if not self.in_limits or self.in_box is False:
            return False
        if self.kind == "probe":
            return self.clamped
        return self.reached and (self.kind == "return" or not self.clamped)

    def line(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        box = "" if self.in_box is None else f", in box: {self.in_box}"
        ev = f", safety events: {self.events}" if self.events else ""
        what = "clamped at the limit" if self.probe and self.clamped else f"reached: {self.reached}"
        return (
            f"  [{mark}] {self.name:<24} {what}, error {self.error:.2f}, in limits: {self.in_limits}{box}{ev}"
        )


@dataclass
class CheckReport:
    results: list[PoseResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    aborted: bool = False  # nothing was moved (the arm started outside the envelope)

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(r.ok for r in self.results)

    def format(self) -> str:
        lines = [r.line() for r in self.results] + [f"  [skip] {s}" for s in self.skipped]
        verdict = "PASSED" if self.ok else "FAILED"
        return "\n".join(
            [
                f"envelope check {verdict}: {sum(r.ok for r in self.results)}/{len(self.results)} moves ok",
                *lines,
            ]
        )


def plan_poses(
    start: Mapping[str, float],
    limits: Mapping[str, tuple[float, float]],
    inset: float,
    inside_box: Callable[[dict[str, float]], bool] | None = None,
    waypoints: list[dict[str, float]] | None = None,
) -> tuple[list[tuple[str, dict[str, float]]], list[str]]:
    """(name, pose) moves ("<m>.pos" keys): the waypoints then back to `start`; then each joint to its low
    and high inset point and back to `start`."""
    if not 0.0 < inset < 0.5:
        raise ValueError(f"inset must be in (0, 0.5), got {inset}")
    base = {k: float(v) for k, v in start.items()}
    moves: list[tuple[str, dict[str, float]]] = []
    skipped: list[str] = []
    for i, wp in enumerate(waypoints or []):
        pose = {k: float(wp.get(k, base[k])) for k in base}
        if inside_box is not None and not inside_box(pose):
            skipped.append(f"waypoint {i}: its end effector is outside the workspace box")
            continue
        moves.append((f"waypoint {i + 1}/{len(waypoints)}", pose))
    if moves:
        moves.append(("start", dict(base)))
    for motor, (lo, hi) in limits.items():
        key = f"{motor}.pos"
        span = hi - lo
        for side, target in (("low", lo + inset * span), ("high", hi - inset * span)):
            pose = dict(base)
            pose[key] = target
            if inside_box is not None and not inside_box(pose):
                s = _largest_inside(base, pose, inside_box)
                if s < 0.05:
                    skipped.append(f"{motor} {side}: the end effector would leave the workspace box at once")
                    continue
                pose = {k: base[k] + s * (pose[k] - base[k]) for k in base}
            moves.append((f"{motor} {side}", pose))
            moves.append((f"{motor} back", dict(base)))
    return moves, skipped


def _largest_inside(
    a: dict[str, float], b: dict[str, float], inside: Callable[[dict[str, float]], bool]
) -> float:
    if not inside(a):
        return 0.0
    lo, hi = 0.0, 1.0
    for _ in range(_BISECT_STEPS):
        mid = 0.5 * (lo + hi)
        if inside({k: a[k] + mid * (b[k] - a[k]) for k in a}):
            lo = mid
        else:
            hi = mid
    return lo


def _in_box(guard: Any, present: Mapping[str, float]) -> bool | None:
    box = guard.layer.workspace
    if box is None:
        return None
    xyz = guard.layer.end_effector(present)
    return all(box[0][i] - BOX_TOLERANCE_M <= xyz[i] <= box[1][i] + BOX_TOLERANCE_M for i in range(3))


def _move(guard: Any, name: str, goal: dict[str, float], *, kind: str, tolerance: float, **kw) -> PoseResult:
    before = Counter(guard.layer.report.total_events)
    reached, err = guard.move_to(goal, tolerance=tolerance, **kw)
    present = guard.present()
    events = dict(Counter(guard.layer.report.total_events) - before)
    limits = guard.limits
    in_limits = all(
        limits[k.removesuffix(".pos")][0] - tolerance <= v <= limits[k.removesuffix(".pos")][1] + tolerance
        for k, v in present.items()
    )
    err = err if math.isfinite(err) else max(abs(present[k] - goal[k]) for k in goal)
    return PoseResult(name, goal, reached, err, in_limits, _in_box(guard, present), events, kind)


def run_check(
    guard: Any,
    *,
    inset: float = 0.2,
    speed_fraction: float = 0.25,
    tolerance: float = 2.0,
    probe_limits: bool = False,
    probe_overshoot: float = 5.0,
    settle_steps: int = 30,
    waypoints: list[dict[str, float]] | None = None,
    confirm: Callable[[str], Any] | None = None,
    out: Callable[[str], None] = print,
) -> CheckReport:
    """Plan, (confirm,) move and verify; the arm ends where it started.

    `guard` must not be connected yet: if the arm starts outside the envelope we abort before the guard
    connects, because a guard's hold pulls an out-of-limit joint back, and this check must not move
    anything it was not asked to (the report says to move the arm inside by hand).
    """
    start = guard.present()
    limits = guard.limits
    outside = [
        f"{k.removesuffix('.pos')} at {v:.1f} (limits {limits[k.removesuffix('.pos')][0]:.1f}.."
        f"{limits[k.removesuffix('.pos')][1]:.1f})"
        for k, v in start.items()
        if not limits[k.removesuffix(".pos")][0] <= v <= limits[k.removesuffix(".pos")][1]
    ]
    report = CheckReport()
    if outside:
        report.skipped.append(
            "the arm starts outside the envelope: " + ", ".join(outside) + "; nothing was moved. Move it "
            "inside by hand (or re-record the envelope) and re-run"
        )
        report.aborted = True
        return report
    guard.connect()
    inside_box = (lambda pose: guard.layer.in_workspace(pose)) if guard.layer.workspace is not None else None
    moves, report.skipped = plan_poses(start, limits, inset, inside_box, waypoints)
    probes: list[tuple[str, dict[str, float]]] = []
    if probe_limits:
        for motor, (lo, hi) in limits.items():
            for side, target in (("low", lo - probe_overshoot), ("high", hi + probe_overshoot)):
                pose = dict(start)
                pose[f"{motor}.pos"] = target
                probes += [(f"{motor} past {side} limit", pose), (f"{motor} back", dict(start))]
    out(
        f"plan: {len(moves)} moves inside the envelope"
        + (f" and {len(probes) // 2} limit probes" if probes else "")
        + f", at {speed_fraction:.0%} of the velocity limit; every move goes through the safety layer"
    )
    if confirm is not None:
        confirm(
            "The arm will MOVE. Keep clear, hand on the power switch (Ctrl+C stops). Press Enter to start: "
        )
    kw = {"speed_fraction": speed_fraction, "settle_steps": settle_steps}
    for name, goal in moves:
        report.results.append(_move(guard, name, goal, kind="inside", tolerance=tolerance, **kw))
        out(report.results[-1].line())
    for name, goal in probes:
        kind = "probe" if "past" in name else "return"
        report.results.append(_move(guard, name, goal, kind=kind, tolerance=tolerance, **kw))
        out(report.results[-1].line())
    return report
