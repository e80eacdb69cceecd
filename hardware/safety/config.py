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
    # the envelope and the defaults for the joints it names.
    joint_limits: dict[str, list[float]] = field(default_factory=dict)
    # Inward margin (robot units) applied to the model's joint ranges when no envelope gives the limits,
    # so the default never drives a joint onto its mechanical stop. Not applied to the gripper.
    model_limit_margin: float = 2.0

    # Rate (Hz) at which actions are applied; turns `max_velocity` into a per-step bound. Match the actor's
    # control rate.
    control_hz: float = 30.0
    # Largest change (robot units per step) between the *present* position and the commanded target, for
    # arm joints (LeRobot's `max_relative_target`, but on by default).
    max_step: float = 10.0
    # Same for the gripper (0..100 units per step).
    max_step_gripper: float = 30.0
    # Largest commanded joint speed (robot units per second) for arm joints: the commanded target moves at
    # most max_velocity / control_hz per step from the previous command.
    max_velocity: float = 120.0
    # Same for the gripper (0..100 units per second).
    max_velocity_gripper: float = 300.0
    # Per-joint overrides of max_step / max_velocity, e.g. {"wrist_roll": 20.0}.
    max_step_per_joint: dict[str, float] = field(default_factory=dict)
    max_velocity_per_joint: dict[str, float] = field(default_factory=dict)

    # Keep the end effector (forward kinematics of hardware/kinematics.py) inside a box. Needs a robot type
    # in FK_ROBOT_TYPES; the box comes from `workspace_min/max`, else the envelope, else the type default.
    workspace_check: bool = True
    # Shrink the box by this much (m) on every side.
    workspace_margin: float = 0.0
    # Braking margin, in control steps, for the workspace box and the arm joints' limits: the pose this many
    # *commanded* steps beyond the target (same direction and speed) must stay inside too, so the arm slows
    # down as it nears a face or a limit and its overshoot lands inside. 1.0 covers the simulated STS3215's
    # overshoot of a goal that stops abruptly (tests/hardware/test_safety_sim.py); 0 switches it off.
    lookahead_steps: float = 1.0
    # Explicit box (m, base frame); both or neither.
    workspace_min: list[float] | None = None
    workspace_max: list[float] | None = None

    # Hold present position when the newest action is older than this (s); 0.1 s = 3 periods at 30 Hz.
    watchdog_timeout_s: float = 0.1
    # After an e-stop has stopped motion, also switch motor torque off (the arm goes limp: only safe for
    # an arm that rests stably or is supported).
    torque_off_on_estop: bool = False
    # "lockstep": each step() applies one action synchronously (sim, demo, synchronous real loops);
    # "realtime": a control thread applies the latest fresh action at control_hz and holds otherwise;
    # "auto": lockstep for sim robots, realtime for real ones.
    mode: str = "auto"
    # Install SIGINT/SIGTERM (hold, release torque, exit) and e-stop signal handlers when the guard is
    # created in the main thread for a real robot.
    handle_signals: bool = True
    # Signal that latches an e-stop without exiting (`kill -USR1 <pid>`); "" disables it.
    estop_signal: str = "SIGUSR1"
    # Learner link: no heartbeat for this long (s) counts as lost (see hardware/watchdog.py LinkWatchdog).
    link_timeout_s: float = 5.0

    def validate(self) -> None:
        """Fail early with a message that says which option is wrong and what would be right."""
        if self.control_hz <= 0:
            raise ValueError(f"safety.control_hz must be > 0, got {self.control_hz}")
        for name in ("max_step", "max_step_gripper", "max_velocity", "max_velocity_gripper"):
            if getattr(self, name) <= 0:
                raise ValueError(f"safety.{name} must be > 0, got {getattr(self, name)}")
        for name in ("max_step_per_joint", "max_velocity_per_joint"):
            for joint, value in getattr(self, name).items():
                if not value > 0:
                    raise ValueError(f"safety.{name}[{joint!r}] must be > 0, got {value}")
        for joint, lim in self.joint_limits.items():
            if len(lim) != 2 or not lim[0] < lim[1]:
                raise ValueError(
                    f"safety.joint_limits[{joint!r}] must be [low, high] with low < high, got {lim}"
                )
        if (self.workspace_min is None) != (self.workspace_max is None):
            raise ValueError("safety.workspace_min and safety.workspace_max must both be set or both be null")
        if self.workspace_min is not None and (len(self.workspace_min) != 3 or len(self.workspace_max) != 3):
            raise ValueError("safety.workspace_min/max must be [x, y, z] in metres")
        if self.watchdog_timeout_s <= 0:
            raise ValueError(f"safety.watchdog_timeout_s must be > 0, got {self.watchdog_timeout_s}")
        if not self.lookahead_steps >= 0:
            raise ValueError(f"safety.lookahead_steps must be >= 0, got {self.lookahead_steps}")
        if self.workspace_margin < 0 or self.model_limit_margin < 0:
            raise ValueError("safety.workspace_margin and safety.model_limit_margin must be >= 0")
        if self.mode not in MODES:
            raise ValueError(f"safety.mode must be one of {MODES}, got {self.mode!r}")
        if self.link_timeout_s <= 0:
            raise ValueError(f"safety.link_timeout_s must be > 0, got {self.link_timeout_s}")
