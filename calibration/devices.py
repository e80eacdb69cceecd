"""The arms pirl calibrates, what a sane calibration of each looks like, and where its file lives.

One table (`SPECS`) per LeRobot device type: motor names, ids and models, which joints may legitimately
span a full turn, the encoder resolution, the homing-offset range the servo can store, and the units the
device speaks. Validation reads expectations from here instead of constructing the LeRobot device,
because constructing it already parses the calibration file (and a corrupt file would crash there with a
draccus traceback instead of our message). A test checks this table against LeRobot's own classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calibration.errors import CalibrationError

FEETECH_MAX_HOMING = 2047  # STS3215 Homing_Offset: sign-magnitude, 11-bit magnitude
DYNAMIXEL_MAX_HOMING = 1_044_479  # X-series Homing_Offset range (+-255 turns)
_SO_MOTORS = {
    "shoulder_pan": (1, "sts3215"),
    "shoulder_lift": (2, "sts3215"),
    "elbow_flex": (3, "sts3215"),
    "wrist_flex": (4, "sts3215"),
    "wrist_roll": (5, "sts3215"),
    "gripper": (6, "sts3215"),
}
_KOCH_FOLLOWER_MOTORS = {
    "shoulder_pan": (1, "xl430-w250"),
    "shoulder_lift": (2, "xl430-w250"),
    "elbow_flex": (3, "xl330-m288"),
    "wrist_flex": (4, "xl330-m288"),
    "wrist_roll": (5, "xl330-m288"),
    "gripper": (6, "xl330-m288"),
}
_KOCH_LEADER_MOTORS = {name: (i, "xl330-m077") for name, (i, _) in _KOCH_FOLLOWER_MOTORS.items()}


@dataclass(frozen=True)
class DeviceSpec:
    """What LeRobot's class for one device type does, as far as calibration is concerned."""

    type: str  # LeRobot config type, e.g. "so101_follower"
    display: str  # what we call it in messages ("SO-100/SO-101 follower")
    kind: str  # "robot" or "teleop": LeRobot keeps their calibration files in different folders
    lerobot_name: str  # the class's `name`: the calibration sub-folder ("so_follower", "koch_leader")
    family: str  # "feetech" or "dynamixel"
    motors: dict[str, tuple[int, str]]  # motor name -> (id, model)
    full_turn: frozenset[str]  # joints LeRobot calibrates as 0..resolution-1 without recording
    max_homing_offset: int  # largest |homing_offset| the servo can store
    # Units of "<motor>.pos" for arm joints: "degrees" (configurable via use_degrees) or "range" (-100..100)
    joint_units: str = "degrees"
    has_kinematics: bool = False  # pirl can compute the end effector (hardware/kinematics.py)
    resolution: int = 4096

    @property
    def half_turn(self) -> int:
        """Where LeRobot's homing puts the middle pose (2047 on a 12-bit encoder)."""
        return (self.resolution - 1) // 2

    @property
    def folder(self) -> str:
        return "robots" if self.kind == "robot" else "teleoperators"


def _so(type_: str, kind: str, name: str) -> DeviceSpec:
    display = "SO-100/SO-101 " + ("follower" if kind == "robot" else "leader")
    return DeviceSpec(
        type_, display, kind, name, "feetech", _SO_MOTORS, frozenset({"wrist_roll"}), FEETECH_MAX_HOMING,
        has_kinematics=kind == "robot",
    )  # fmt: skip


SPECS: dict[str, DeviceSpec] = {
    "so100_follower": _so("so100_follower", "robot", "so_follower"),
    "so101_follower": _so("so101_follower", "robot", "so_follower"),
    "so100_leader": _so("so100_leader", "teleop", "so_leader"),
    "so101_leader": _so("so101_leader", "teleop", "so_leader"),
    "koch_follower": DeviceSpec(
        "koch_follower",
        "Koch follower",
        "robot",
        "koch_follower",
        "dynamixel",
        _KOCH_FOLLOWER_MOTORS,
        frozenset({"shoulder_pan", "wrist_roll"}),
        DYNAMIXEL_MAX_HOMING,
    ),  # fmt: skip
    "koch_leader": DeviceSpec(
        "koch_leader",
        "Koch leader",
        "teleop",
        "koch_leader",
        "dynamixel",
        _KOCH_LEADER_MOTORS,
        frozenset({"shoulder_pan", "wrist_roll"}),
        DYNAMIXEL_MAX_HOMING,
        joint_units="range",
    ),  # fmt: skip
}


def spec_for(device_type: str) -> DeviceSpec:
    if device_type not in SPECS:
        raise CalibrationError(
            f"pirl calibrate does not know device type {device_type!r}; supported: {', '.join(SPECS)}"
        )
    return SPECS[device_type]


def register_lerobot_types() -> None:
    """Import the LeRobot modules whose config types draccus must know (`--robot.type=...`)."""
    import lerobot.robots.koch_follower  # noqa: F401
    import lerobot.robots.so_follower  # noqa: F401
    import lerobot.teleoperators.koch_leader  # noqa: F401
    import lerobot.teleoperators.so_leader  # noqa: F401


def calibration_path(config: Any, spec: DeviceSpec | None = None) -> Path:
    """Where LeRobot reads/writes this device's calibration file (same rule as Robot/Teleoperator)."""
    from lerobot.utils.constants import HF_LEROBOT_CALIBRATION

    spec = spec or spec_for(config.type)
    if not getattr(config, "id", None):
        kind = "robot" if spec.kind == "robot" else "teleop"
        raise CalibrationError(
            f"give the device a name with --{kind}.id=<name> (e.g. --{kind}.id=arm1): the calibration "
            "file is stored per id, so every arm keeps its own"
        )
    folder = Path(config.calibration_dir) if config.calibration_dir else None
    folder = folder or HF_LEROBOT_CALIBRATION / spec.folder / spec.lerobot_name
    return folder / f"{config.id}.json"


def make_device(config: Any) -> Any:
    """The LeRobot Robot or Teleoperator for a config (nothing is opened yet)."""
    spec = spec_for(config.type)
    if spec.kind == "robot":
        from lerobot.robots import make_robot_from_config

        return make_robot_from_config(config)
    from lerobot.teleoperators import make_teleoperator_from_config

    return make_teleoperator_from_config(config)
