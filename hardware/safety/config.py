"""What the safety layer enforces, as one typed config (draccus) with sane defaults per robot type.

Every option is on by default: an operator has to opt *out* of protection, never in. The numbers below
are deliberately conservative for a desk arm (SO-100/SO-101/Koch) at 30 Hz; the docs (`docs/safety.md`)
explain how to loosen them for a task that needs it.

Limits come from, in order of precedence:
1. `joint_limits` in this config (explicit per-joint override),
2. the envelope file at `envelope_path` (written by `pirl calibrate envelope`),
3. the robot type's defaults (SO-100/SO-101/sim: the MuJoCo model's joint ranges shrunk by
   `model_limit_margin`; Koch: the calibration ranges of the connected robot),
and are always intersected with the connected robot's own calibration ranges, when it has any.
"""

from __future__ import annotations

import difflib
import math
import numbers
import signal
from collections.abc import Iterable
from dataclasses import dataclass, field

# Robot types whose geometry `hardware/kinematics.py` models (the workspace box needs forward kinematics).
# SO-100 is close enough to SO-101 for a coarse box; docs/safety.md says so.
FK_ROBOT_TYPES: frozenset[str] = frozenset({"so100_follower", "so101_follower", "sim_so101"})

# Robot types that share the SO-101 model's default joint limits.
SO_ROBOT_TYPES: frozenset[str] = frozenset({"so100_follower", "so101_follower", "sim_so101"})

# A generous default box for an SO-10x on a table, base frame (m). The floor is z = 0; the fingertip frame
# may go 1 cm below it because the model's "gripperframe" site sits between the jaws, not at their tips.
# Record the real box with `pirl calibrate envelope`: this default only stops gross excursions.
DEFAULT_SO_WORKSPACE_MIN: tuple[float, float, float] = (-0.45, -0.45, -0.01)
DEFAULT_SO_WORKSPACE_MAX: tuple[float, float, float] = (0.50, 0.45, 0.55)

# Run-time mode of the guard (see hardware/guard.py).
MODES = ("auto", "lockstep", "realtime")

GRIPPER = "gripper"

# Sanity bounds. A value beyond them is a typo (1e9, a lost decimal point, degrees where metres were
# meant), never a setting: `validate()` refuses it before anything moves. Robot units are LeRobot's:
# degrees for arm joints (pirl requires use_degrees=true), 0..100 for the gripper.
MAX_CONTROL_HZ = 1000.0  # Hz; no serial servo bus pirl drives closes a loop faster
MAX_ARM_STEP_DEG = 360.0  # deg per control step: a full turn, more than any arm joint's whole range
MAX_GRIPPER_STEP = 100.0  # gripper units per control step: the gripper's whole range
# deg/s: ten turns a second, about six times the no-load speed of the fastest servo these arms use
# (Dynamixel XL330 ~620 deg/s; Feetech STS3215 ~400 deg/s)
MAX_ARM_VELOCITY_DEG_S = 3600.0
MAX_GRIPPER_VELOCITY = 1000.0  # gripper units/s: the whole 0..100 range in 0.1 s
MAX_ARM_LIMIT_DEG = 360.0  # |joint limit| for arm joints: a full turn either side of the calibrated centre
GRIPPER_RANGE = (0.0, 100.0)  # gripper limits lie within LeRobot's RANGE_0_100
MAX_MODEL_LIMIT_MARGIN_DEG = 90.0  # inward margin on the model's joint ranges
MAX_WORKSPACE_M = 2.0  # |x|, |y|, |z| of the workspace box (m): a desk arm reaches well under 1 m
MAX_WATCHDOG_TIMEOUT_S = 10.0  # s; a longer "stale action" timeout is no watchdog at all
# Signals that cannot be the e-stop signal: uncatchable, or already the exit signals.
_NOT_ESTOP_SIGNALS = frozenset({"SIGKILL", "SIGSTOP", "SIGINT", "SIGTERM"})


def _number(option: str, value: object) -> float:
    """`value` as a finite float, or a one-line ValueError naming the option."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"safety.{option} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"safety.{option} must be a finite number, got {value!r}")
    return v


def _in_range(option: str, value: object, low: float, high: float, unit: str, low_open: bool = True) -> float:
    """`value` finite and within (low, high] (or [low, high] with low_open=False)."""
    v = _number(option, value)
    too_low = v <= low if low_open else v < low
    if too_low or v > high:
        lo = "(" if low_open else "["
        raise ValueError(f"safety.{option} must be in {lo}{low:g}, {high:g}] {unit}, got {value!r}")
    return v


def unknown_joint_error(option: str, joint: str, motors: Iterable[str], robot: str = "") -> ValueError:
    """One-line error for a per-joint option naming a joint the robot does not have."""
    valid = list(motors)
    close = difflib.get_close_matches(str(joint), valid, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    where = f" of {robot}" if robot else ""
    return ValueError(
        f"{option} names unknown joint {joint!r}{hint}; the joints{where} are: {', '.join(valid)}"
    )


@dataclass
class SafetyConfig:
    """The safety layer's settings; one per robot, recordable from calibration (envelope file)."""

    # Master switch for the *soft* protections (per-step clamp, velocity limit, workspace box). Shape/NaN
    # rejection and joint limits are never switched off: no action reaches the motors unchecked.
    enabled: bool = True
    # Envelope JSON written by `pirl calibrate envelope` (joint limits, workspace box, home pose).
    # None: use the robot type's defaults.
    envelope_path: str | None = None
    # Explicit per-joint limits in robot units (deg; gripper 0..100), e.g. {"gripper": [5, 95]}. Wins over
    # the envelope and the defaults for the joints it names. Two finite numbers, low < high, arm joints
    # within +-MAX_ARM_LIMIT_DEG (360 deg), the gripper within 0..100. A joint the robot does not have is
    # refused when the guard / layer is built (before anything moves), with the valid names.
    joint_limits: dict[str, list[float]] = field(default_factory=dict)
    # Inward margin (robot units) applied to the model's joint ranges when no envelope gives the limits,
    # so the default never drives a joint onto its mechanical stop. Not applied to the gripper.
    # 0..MAX_MODEL_LIMIT_MARGIN_DEG (90 deg).
    model_limit_margin: float = 2.0

    # Rate (Hz) at which actions are applied; turns `max_velocity` into a per-step bound. Match the actor's
    # control rate. (0, MAX_CONTROL_HZ = 1000] Hz.
    control_hz: float = 30.0
    # Largest change (robot units per step) between the *present* position and the commanded target, for
    # arm joints (LeRobot's `max_relative_target`, but on by default). (0, MAX_ARM_STEP_DEG = 360] deg.
    max_step: float = 10.0
    # Same for the gripper (0..100 units per step). (0, MAX_GRIPPER_STEP = 100] units.
    max_step_gripper: float = 30.0
    # Largest commanded joint speed (robot units per second) for arm joints: the commanded target moves at
    # most max_velocity / control_hz per step from the previous command. (0, MAX_ARM_VELOCITY_DEG_S = 3600]
    # deg/s.
    max_velocity: float = 120.0
    # Same for the gripper (0..100 units per second). (0, MAX_GRIPPER_VELOCITY = 1000] units/s.
    max_velocity_gripper: float = 300.0
    # Per-joint overrides of max_step / max_velocity, e.g. {"wrist_roll": 20.0}, with the same bounds as
    # the option they override (the gripper's for "gripper", the arm's for every other joint). A joint the
    # robot does not have is refused when the guard / layer is built, with the valid names.
    max_step_per_joint: dict[str, float] = field(default_factory=dict)
    max_velocity_per_joint: dict[str, float] = field(default_factory=dict)

    # Keep the end effector (forward kinematics of hardware/kinematics.py) inside a box. Needs a robot type
    # in FK_ROBOT_TYPES; the box comes from `workspace_min/max`, else the envelope, else the type default.
    workspace_check: bool = True
    # Shrink the box by this much (m) on every side; >= 0.
    workspace_margin: float = 0.0
    # Braking margin, in control steps, for the workspace box and the arm joints' limits: the pose this many
    # *commanded* steps beyond the target (same direction and speed) must stay inside too, so the arm slows
    # down as it nears a face or a limit and its overshoot lands inside. 1.0 covers the simulated STS3215's
    # overshoot of a goal that stops abruptly (tests/hardware/test_safety_sim.py); 0 switches it off.
    # Finite, >= 0.
    lookahead_steps: float = 1.0
    # Explicit box (m, base frame); both or neither. Finite, min < max on every axis, |value| <=
    # MAX_WORKSPACE_M (2 m).
    workspace_min: list[float] | None = None
    workspace_max: list[float] | None = None

    # Hold present position when the newest action is older than this (s); 0.1 s = 3 periods at 30 Hz.
    # (0, MAX_WATCHDOG_TIMEOUT_S = 10] s.
    watchdog_timeout_s: float = 0.1
    # After an e-stop has stopped motion, also switch motor torque off (the arm goes limp: only safe for
    # an arm that rests stably or is supported).
    torque_off_on_estop: bool = False
    # "lockstep": each step() applies one action synchronously (sim, demo, synchronous real loops);
    # "realtime": a control thread applies the latest fresh action at control_hz and holds otherwise;
    # "auto": lockstep for sim robots, realtime for real ones.
    mode: str = "auto"
    # Install SIGINT/SIGTERM (hold, release torque, exit) and e-stop signal handlers when the guard is
    # created in the main thread, for real and simulated robots alike.
    handle_signals: bool = True
    # Signal that latches an e-stop without exiting (`kill -USR1 <pid>`); "" disables it. Any catchable
    # signal of this OS except SIGINT/SIGTERM (those already stop and exit).
    estop_signal: str = "SIGUSR1"
    # Learner link: no heartbeat for this long (s) counts as lost (see hardware/watchdog.py LinkWatchdog).
    # Finite, > 0.
    link_timeout_s: float = 2.0

    def validate(self) -> None:
        """Fail early with a one-line message that says which option is wrong and what would be right.

        Checks every value against the bounds above. Joint *names* need the robot: `validate_joints`.
        """
        _in_range("control_hz", self.control_hz, 0.0, MAX_CONTROL_HZ, "Hz")
        _in_range("max_step", self.max_step, 0.0, MAX_ARM_STEP_DEG, "deg per step")
        _in_range("max_step_gripper", self.max_step_gripper, 0.0, MAX_GRIPPER_STEP, "gripper units per step")
        _in_range("max_velocity", self.max_velocity, 0.0, MAX_ARM_VELOCITY_DEG_S, "deg/s")
        _in_range(
            "max_velocity_gripper", self.max_velocity_gripper, 0.0, MAX_GRIPPER_VELOCITY, "gripper units/s"
        )
        for name, arm, grip in (
            ("max_step_per_joint", (MAX_ARM_STEP_DEG, "deg per step"), (MAX_GRIPPER_STEP, "units per step")),
            ("max_velocity_per_joint", (MAX_ARM_VELOCITY_DEG_S, "deg/s"), (MAX_GRIPPER_VELOCITY, "units/s")),
        ):
            overrides = getattr(self, name)
            if not isinstance(overrides, dict):
                raise ValueError(f"safety.{name} must be a mapping joint -> value, got {overrides!r}")
            for joint, value in overrides.items():
                high, unit = grip if joint == GRIPPER else arm
                _in_range(f"{name}[{joint!r}]", value, 0.0, high, unit)
        if not isinstance(self.joint_limits, dict):
            raise ValueError(
                f"safety.joint_limits must be a mapping joint -> [low, high], got {self.joint_limits!r}"
            )
        for joint, lim in self.joint_limits.items():
            option = f"joint_limits[{joint!r}]"
            if isinstance(lim, (str, bytes)) or not hasattr(lim, "__len__") or len(lim) != 2:
                raise ValueError(f"safety.{option} must be [low, high], got {lim!r}")
            lo, hi = (_number(option, v) for v in lim)
            if not lo < hi:
                raise ValueError(f"safety.{option} must be [low, high] with low < high, got {list(lim)}")
            bound = GRIPPER_RANGE if joint == GRIPPER else (-MAX_ARM_LIMIT_DEG, MAX_ARM_LIMIT_DEG)
            if lo < bound[0] or hi > bound[1]:
                unit = "gripper units" if joint == GRIPPER else "deg"
                raise ValueError(
                    f"safety.{option} must lie within [{bound[0]:g}, {bound[1]:g}] {unit}, got {list(lim)}"
                )
        _in_range(
            "model_limit_margin", self.model_limit_margin, 0.0, MAX_MODEL_LIMIT_MARGIN_DEG, "deg", False
        )
        if (self.workspace_min is None) != (self.workspace_max is None):
            raise ValueError("safety.workspace_min and safety.workspace_max must both be set or both be null")
        if self.workspace_min is not None:
            box = {}
            for name in ("workspace_min", "workspace_max"):
                v = getattr(self, name)
                if isinstance(v, (str, bytes)) or not hasattr(v, "__len__") or len(v) != 3:
                    raise ValueError(f"safety.{name} must be [x, y, z] in metres, got {v!r}")
                box[name] = [
                    _in_range(name, x, -MAX_WORKSPACE_M, MAX_WORKSPACE_M, "m", low_open=False) for x in v
                ]
            if any(a >= b for a, b in zip(box["workspace_min"], box["workspace_max"], strict=True)):
                raise ValueError(
                    f"safety.workspace_min must be below safety.workspace_max on every axis, got "
                    f"{list(self.workspace_min)} .. {list(self.workspace_max)}"
                )
        _in_range("workspace_margin", self.workspace_margin, 0.0, MAX_WORKSPACE_M, "m", low_open=False)
        _in_range("watchdog_timeout_s", self.watchdog_timeout_s, 0.0, MAX_WATCHDOG_TIMEOUT_S, "s")
        if not _number("lookahead_steps", self.lookahead_steps) >= 0:
            raise ValueError(f"safety.lookahead_steps must be >= 0, got {self.lookahead_steps}")
        if self.mode not in MODES:
            raise ValueError(f"safety.mode must be one of {MODES}, got {self.mode!r}")
        if not _number("link_timeout_s", self.link_timeout_s) > 0:
            raise ValueError(f"safety.link_timeout_s must be > 0, got {self.link_timeout_s}")
        if self.estop_signal:
            sig = getattr(signal, str(self.estop_signal), None)
            if not isinstance(sig, signal.Signals) or sig.name in _NOT_ESTOP_SIGNALS:
                raise ValueError(
                    f"safety.estop_signal must be a catchable signal of this OS other than SIGINT/SIGTERM "
                    f'(e.g. SIGUSR1), or "" for none; got {self.estop_signal!r}'
                )

    def validate_joints(self, motors: Iterable[str], robot: str = "") -> None:
        """Refuse per-joint options that name a joint the robot does not have (a typo would otherwise drop
        the limit the user meant). Called where the limits are resolved against the robot's motors."""
        valid = list(motors)
        for name in ("joint_limits", "max_step_per_joint", "max_velocity_per_joint"):
            for joint in getattr(self, name):
                if joint not in valid:
                    raise unknown_joint_error(f"safety.{name}", joint, valid, robot)
