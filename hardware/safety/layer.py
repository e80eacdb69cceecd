"""The safety filter every action passes through.

`SafetyLayer.filter(action, present)` turns any action dict (from a policy, a leader arm, a gamepad, a
scripted expert) into a target the robot may safely be sent:

1. shape and value check: exactly the robot's `<motor>.pos` keys, finite real numbers; otherwise the
   action is rejected and the result holds the present position;
2. joint limits (always on);
3. velocity limit: the target moves at most max_velocity / control_hz from the previous command;
4. per-step clamp: the target is at most max_step from the present (measured) position;
   The arm joints also get a braking margin: one more commanded step at the same speed must not pass the
   limit, so a joint slows down as it nears its limit instead of overshooting it.
5. workspace box: the end effector must stay in the box not only at the target but at every pose the arm
   can pass through on its way there. Each servo tracks its own goal at its own pace, so the arm may visit
   any mix of "this joint already moved, that one not yet", and it may still be heading for the previous
   command: every corner of the joint-space box that bounds the present position, the previous command
   and the target is checked by forward kinematics, plus the poses up to `lookahead` commanded
   steps further on (a braking margin that grows with speed: servos overshoot a goal that stops
   abruptly). If one leaves the box, the target is pulled back along the line from the previous command
   (or, when that no longer qualifies, the present position moved into the joint limits, as a hold would)
   to the largest fraction that passes. The previous command is preferred so that the goal does not
   follow a sagging arm outwards. Pulling back is braking, so it is exempt from the velocity limit of
   step 3.

Steps 3-5 are the soft protections `SafetyConfig.enabled` can switch off; 1-2 never switch off. A joint
whose present position is already outside its limits is only ever moved back towards them, never further;
one within `max_step` of its limits is always commanded inside them. Likewise an end effector already
outside the box (switched on there, or carried out by servo overshoot) is never commanded further out.
Every change is an event ("joint_limit:elbow_flex", "max_step:gripper", "workspace", "rejected:nan", ...)
counted in the per-episode SafetyReport (`hardware/safety/report.py`; `SafetyReport` and `SafetyResult` are
re-exported here for the callers that import them from this module).

This module is one cohesive job: turning one action into one safe target. Steps 1-5 share the same state
(the previous command, the limits, the kinematics) and the workspace pull-back of step 5 calls back into
the joint checks of steps 2-4 (`hold_action`, `max_step`), so they stay together; splitting the workspace
geometry out would only move `self` into a second class.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Collection, Mapping
from typing import Any

import numpy as np

from hardware.safety.config import SafetyConfig
from hardware.safety.limits import GRIPPER, Limits
from hardware.safety.report import SafetyReport, SafetyResult

__all__ = ["SafetyLayer", "SafetyReport", "SafetyResult"]

logger = logging.getLogger(__name__)

_EPS = 1e-9
_WORKSPACE_BISECT_STEPS = 8  # 2^-8 of a 10 deg step = 0.04 deg: below one STS3215 tick (0.088 deg)
# How far (m) the braking look-ahead pose may poke out of the box before it counts. About what the SO-101's
# +-0.5 deg gear backlash moves the gripper at arm's length: below that a predicted overshoot is noise, and
# a slow final approach to a pose on the face (a recorded envelope waypoint) is not clamped.
_LOOKAHEAD_SLACK_M = 0.002
# Distances (m) that differ by less than this are equal. A sweep that the same far corner dominates for the
# target and for the safe start is the same distance in exact arithmetic, but the other joints' rotations
# round it differently in the last bit; comparing exactly let that bit decide a pull-back (two FK codes
# that agree to 1e-16 m gave actions up to 12 deg apart in 83 of 20,000 random steps; none with this).
_ROUNDING_M = 1e-9
# Same for a joint's braking margin (deg): the +-0.5 deg backlash itself.
_JOINT_SLACK = 0.5


class SafetyLayer:
    """Stateful filter: remembers the last command it let through (for the velocity limit)."""

    def __init__(
        self,
        limits: Limits,
        max_step: Mapping[str, float],
        max_velocity: Mapping[str, float],
        control_hz: float,
        workspace: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None,
        fk: Callable[[dict[str, float]], Any] | None = None,
        soft_enabled: bool = True,
        fk_many: Callable[[Mapping[str, np.ndarray]], np.ndarray] | None = None,
        lookahead: float = 1.0,
        fk_joints: Collection[str] | None = None,
    ) -> None:
        """`fk` maps {motor: value} to xyz (m); `fk_many` (optional, faster) maps {motor: N values} to
        (N, 3) and is used for the many corner poses of the workspace check. `fk_joints`: the motors the
        end-effector position depends on (None: all of them); a motor off that chain (the SO-101's
        gripper jaw) does not double the corner poses when it moves. `lookahead`: see
        `SafetyConfig.lookahead_steps`."""
        if workspace is not None and fk is None:
            raise ValueError("a workspace box needs a forward-kinematics function")
        self.motors: tuple[str, ...] = tuple(limits)
        unknown = set(fk_joints or ()) - set(self.motors)
        if unknown:
            raise ValueError(f"fk_joints {sorted(unknown)} are not motors of this arm {list(self.motors)}")
        self._fk_cols = [j for j, m in enumerate(self.motors) if fk_joints is None or m in fk_joints]
        self.keys: tuple[str, ...] = tuple(f"{m}.pos" for m in self.motors)
        self.limits: Limits = {m: (float(lo), float(hi)) for m, (lo, hi) in limits.items()}
        self.max_step = {m: float(max_step[m]) for m in self.motors}
        self.max_velocity = {m: float(max_velocity[m]) for m in self.motors}
        self.control_hz = float(control_hz)
        self.workspace = workspace
        self._fk = fk
        self._fk_many = fk_many
        if not lookahead >= 0:
            raise ValueError(f"lookahead must be >= 0, got {lookahead}")
        self.lookahead = float(lookahead)
        self.soft_enabled = soft_enabled
        self.report = SafetyReport()
        self._last_command: dict[str, float] | None = None
        if not soft_enabled:
            logger.warning(
                "safety layer soft protections are OFF (per-step clamp, velocity limit, workspace box); "
                "joint limits and action validation still apply"
            )

    @classmethod
    def from_config(
        cls,
        cfg: SafetyConfig,
        robot_type: str,
        motors: list[str] | tuple[str, ...],
        calibrated: Limits | None = None,
    ) -> SafetyLayer:
        """Build the layer for a robot type: limits, step/velocity bounds and the workspace box."""
        from hardware.safety.limits import load_envelope, resolve_limits, resolve_workspace

        cfg.validate()
        envelope = load_envelope(cfg)
        limits = resolve_limits(cfg, robot_type, motors, envelope, calibrated)
        step, vel = {}, {}
        for m in motors:
            step[m] = cfg.max_step_per_joint.get(m, cfg.max_step_gripper if m == GRIPPER else cfg.max_step)
            vel[m] = cfg.max_velocity_per_joint.get(
                m, cfg.max_velocity_gripper if m == GRIPPER else cfg.max_velocity
            )
        workspace = resolve_workspace(cfg, robot_type, envelope)
        fk = fk_many = fk_joints = None
        if workspace is not None:
            from hardware.kinematics import SO101Kinematics

            kin = SO101Kinematics()
            fk, fk_many, fk_joints = kin.fk, kin.fk_many, kin.joints
        return cls(
            limits,
            step,
            vel,
            cfg.control_hz,
            workspace,
            fk,
            soft_enabled=cfg.enabled,
            fk_many=fk_many,
            lookahead=cfg.lookahead_steps,
            fk_joints=fk_joints,
        )

    # ------------------------------------------------------------------ state

    @property
    def last_command(self) -> dict[str, float] | None:
        return None if self._last_command is None else dict(self._last_command)

    def reset_reference(self, positions: Mapping[str, float] | None) -> None:
        """Make `positions` ("<motor>.pos" or motor keys) the previous command; None forgets it.

        The guard calls this whenever it sends something that did not come through `filter` (hold, e-stop
        release), so the velocity limit always measures from what the motors were really told.
        """
        if positions is None:
            self._last_command = None
            return
        self._last_command = {m: float(positions.get(f"{m}.pos", positions.get(m))) for m in self.motors}

    def hold_action(self, present: Mapping[str, float]) -> dict[str, float]:
        """The action that keeps every joint where it is, or as close to it as the joint limits allow.

        A joint outside its limits (servo overshoot, gravity sag, switched on there) is held at the nearest
        limit, but never more than max_step away from where it is: a small overshoot is held just inside,
        a joint far outside is moved back towards its limit by max_step and no further.
        """
        out = {}
        for m, k in zip(self.motors, self.keys, strict=True):
            p = float(present[k])
            lo, hi = self.limits[m]
            c = min(max(p, lo), hi)
            out[k] = min(max(c, p - self.max_step[m]), p + self.max_step[m])
        return out

    def in_workspace(self, positions: Mapping[str, float]) -> bool:
        return self.workspace is None or self._box_distance(positions) == 0.0

    def end_effector(self, positions: Mapping[str, float]):
        """End-effector xyz (m) for "<motor>.pos" positions, or None without kinematics."""
        if self._fk is None:
            return None
        return self._fk({m: float(positions[f"{m}.pos"]) for m in self.motors})

    # ------------------------------------------------------------------ filter

    def check_present(self, present: Mapping[str, float]) -> None:
        """The measured state must be usable as a fallback; a broken sensor read is a hard error."""
        bad = [k for k in self.keys if not _finite(present.get(k))]
        if bad:
            raise ValueError(
                f"present position has missing or non-finite values for {bad}; check the robot link"
            )

    def filter(self, action: Any, present: Mapping[str, float]) -> SafetyResult:
        """Return a safe target for `action` given the measured `present` positions (both "<motor>.pos")."""
        self.check_present(present)
        problem = self._validate(action)
        if problem is not None:
            result = SafetyResult(self.hold_action(present), [f"rejected:{problem}"], rejected=True)
            self._last_command = {m: result.action[f"{m}.pos"] for m in self.motors}
            self.report.record(result)
            return result

        events: list[str] = []
        ref = self._last_command
        target: dict[str, float] = {}
        for m, key in zip(self.motors, self.keys, strict=True):
            p = float(present[key])
            v = float(action[key])
            lo, hi = self.limits[m]
            c = min(max(v, lo), hi)
            if abs(c - v) > _EPS:
                events.append(f"joint_limit:{m}")
            if self.soft_enabled:
                r = p if ref is None else ref[m]
                dv = self.max_velocity[m] / self.control_hz
                c2 = min(max(c, r - dv), r + dv)
                if abs(c2 - c) > _EPS:
                    events.append(f"velocity:{m}")
                ds = self.max_step[m]
                c3 = min(max(c2, p - ds), p + ds)
                if abs(c3 - c2) > _EPS:
                    events.append(f"max_step:{m}")
                c = c3
                if m != GRIPPER and self.lookahead > 0:
                    # braking margin: one more step at this commanded speed must not pass the limit (the
                    # servo overshoots by about that much); never reverses the motion (cap lies past r)
                    la = self.lookahead
                    cap = (hi + _JOINT_SLACK + la * r) / (1 + la)
                    floor = (lo - _JOINT_SLACK + la * r) / (1 + la)
                    braked = min(c, cap) if c > r and r <= hi else c
                    braked = max(braked, floor) if c < r and r >= lo else braked
                    braked = min(max(braked, p - ds), p + ds)  # max_step still wins
                    if abs(braked - c) > _EPS:
                        c = braked
                        if f"joint_limit:{m}" not in events:
                            events.append(f"joint_limit:{m}")
            # never further outside the limits than where the joint already is
            c = min(max(c, min(lo, p)), max(hi, p))
            target[key] = c

        if self.soft_enabled and self.workspace is not None:
            target, moved = self._keep_in_workspace(target, present)
            if moved:
                events.append("workspace")

        self._last_command = {m: target[f"{m}.pos"] for m in self.motors}
        result = SafetyResult(target, events, rejected=False)
        self.report.record(result)
        return result

    def _validate(self, action: Any) -> str | None:
        if not isinstance(action, Mapping):
            return "type"
        keys = set(action)
        if keys != set(self.keys):
            return "shape"
        for k in self.keys:
            v = action[k]
            if isinstance(v, str | bytes | bool):
                return "type"
            try:  # floats, numpy scalars, 0-d arrays and one-element tensors all convert; lists do not
                f = float(v)
            except Exception:
                return "type"
            if not math.isfinite(f):
                return "nan"
        return None

    def _box_distance(self, positions: Mapping[str, float]) -> float:
        xyz = self.end_effector(positions)
        return float(_distance_to_box(np.asarray(xyz, dtype=np.float64)[None, :], self.workspace)[0])

    def _swept_distance(self, *pose_sets: list[Mapping[str, float]]) -> float | tuple[float, ...]:
        """Largest box distance over every corner of the joint-space box that bounds each set of poses.

        Joints that do not move, and joints off the kinematic chain (`fk_joints`), contribute one value, so
        a single-joint move costs two poses and a move of all five SO-101 arm joints 32. All sets go
        through one vectorised FK call (~0.1 ms for 64 poses); one set -> one float, several -> a tuple in
        the same order.
        """
        blocks, sizes = [], []
        for poses in pose_sets:
            rows = np.array([[p[k] for k in self.keys] for p in poses], dtype=np.float64)
            lo, hi = rows.min(axis=0), rows.max(axis=0)
            varying = [j for j in self._fk_cols if hi[j] != lo[j]]
            corners = np.repeat(lo[None, :], 1 << len(varying), axis=0)
            if varying:
                bits = _corner_bits(len(varying))
                corners[:, varying] = np.where(bits, hi[varying], lo[varying])
            blocks.append(corners)
            sizes.append(len(corners))
        stacked = np.concatenate(blocks)
        flat = {m: stacked[:, j] for j, m in enumerate(self.motors)}
        if self._fk_many is not None:
            xyz = np.asarray(self._fk_many(flat), dtype=np.float64)
        else:
            total = sum(sizes)
            xyz = np.array(
                [self._fk({m: flat[m][i] for m in self.motors}) for i in range(total)], dtype=float
            )
        dist = _distance_to_box(xyz, self.workspace)
        out = tuple(float(part.max()) for part in np.split(dist, np.cumsum(sizes)[:-1]))
        return out[0] if len(out) == 1 else out

    def _pullback_start(
        self, present: dict[str, float], previous: dict[str, float] | None
    ) -> dict[str, float]:
        """The safe end of the line a rejected target is pulled back along.

        Preferably the previous command: the arm is already heading there, and repeating it keeps the goal
        still. Pulling back to the *measured* position instead lets the goal follow the arm wherever
        momentum and gravity sag carry it, one step at a time (a ratchet that walked the simulated arm 2 cm
        out of the box). The previous command qualifies when it is still within max_step of the present
        position, within the joint limits (or no further out than the joint is) and no further from the box
        than the present position; otherwise the present position moved into the limits (what a hold
        sends) is used.
        """
        hold = self.hold_action(present)
        if previous is None:
            return hold
        for m, k in zip(self.motors, self.keys, strict=True):
            lo, hi = self.limits[m]
            p, v = present[k], previous[k]
            if abs(v - p) > self.max_step[m] + _EPS or not (lo <= v <= hi or v == hold[k]):
                return hold
        return previous if self._box_distance(previous) <= self._box_distance(hold) else hold

    def _keep_in_workspace(
        self, target: dict[str, float], present: Mapping[str, float]
    ) -> tuple[dict[str, float], bool]:
        present = {k: float(present[k]) for k in self.keys}
        previous = None
        if self._last_command is not None:
            previous = {f"{m}.pos": v for m, v in self._last_command.items()}
        # The arm may still be on its way to the previous command (servos carry momentum; a reversed
        # command takes a period or two to bite), so that pose bounds the sweep as well.
        moving = [present] if previous is None else [present, previous]

        def beyond(candidate: Mapping[str, float]) -> dict[str, float]:
            # Braking margin: the poses up to `lookahead` commanded steps further on must stay inside too,
            # so the arm approaches a face no faster than it can stop before it.
            if previous is None or self.lookahead == 0:
                return dict(candidate)
            la = self.lookahead
            return {k: candidate[k] + la * (candidate[k] - previous[k]) for k in self.keys}

        def distances(candidate: Mapping[str, float]) -> tuple[float, float, float]:
            """(end pose, sweep from where the arm may be, braking look-ahead) distances to the box."""
            end = self._box_distance(candidate)
            sweep, ahead = self._swept_distance([*moving, candidate], [candidate, beyond(candidate)])
            return end, sweep, ahead

        d_target = distances(target)
        if max(d_target) == 0.0:  # the usual case, well inside: one FK call
            return target, False
        start = self._pullback_start(present, previous)
        # Never further out than the arm may already go (0 when that is inside): the check must not
        # freeze an arm that servo overshoot carried a millimetre past the face. The target itself must
        # be inside whenever the start is, whatever the sweep allows.
        end_ok, sweep_ok, ahead_ok = distances(start)
        ahead_ok = max(ahead_ok, _LOOKAHEAD_SLACK_M)

        def feasible(d: tuple[float, float, float]) -> bool:
            return (
                d[0] <= end_ok + _ROUNDING_M
                and d[1] <= sweep_ok + _ROUNDING_M
                and d[2] <= ahead_ok + _ROUNDING_M
            )

        if feasible(d_target):
            return target, False
        lo_s, hi_s = 0.0, 1.0  # s = 0 is feasible by construction; lo_s only ever takes checked values
        for _ in range(_WORKSPACE_BISECT_STEPS):
            mid = 0.5 * (lo_s + hi_s)
            if feasible(distances(_lerp(start, target, mid))):
                lo_s = mid
            else:
                hi_s = mid
        return _lerp(start, target, lo_s), True


@functools.cache
def _corner_bits(n: int) -> np.ndarray:
    """(2^n, n) booleans: row i is the binary expansion of i, i.e. which joints sit at their upper end."""
    return ((np.arange(1 << n)[:, None] >> np.arange(n)[None, :]) & 1).astype(bool)


def _distance_to_box(xyz: np.ndarray, box) -> np.ndarray:
    """Euclidean distance (m) from each row of `xyz` (N, 3) to the box; exactly 0 inside it."""
    lo, hi = (np.asarray(v, dtype=np.float64) for v in box)
    gap = np.maximum(np.maximum(lo - xyz, 0.0), xyz - hi)
    return np.sqrt((gap * gap).sum(axis=1))


def _lerp(a: Mapping[str, float], b: Mapping[str, float], s: float) -> dict[str, float]:
    return {k: a[k] + s * (b[k] - a[k]) for k in a}


def _finite(v: Any) -> bool:
    try:
        return v is not None and not isinstance(v, bool) and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False
