"""Put a simulated arm in an already-calibrated state: registers and LeRobot's calibration file agree.

LeRobot's followers compare the calibration file with the motors' registers at connect time and start the
interactive calibration when they differ; tests that are not about calibration use these helpers to skip it.
"""

from __future__ import annotations

from pathlib import Path

import draccus
from lerobot.motors import MotorCalibration

from tests.mocks.servo import SimulatedArm

# Plausible SO-101 ranges (raw ticks, after homing) as LeRobot's calibration records them on a real arm.
SO101_RANGES = {
    "shoulder_pan": (740, 3360),
    "shoulder_lift": (820, 3200),
    "elbow_flex": (860, 3080),
    "wrist_flex": (830, 3190),
    "wrist_roll": (0, 4095),
    "gripper": (2020, 3470),
}
# Koch: shoulder_pan and wrist_roll are full-turn in LeRobot's Koch calibration.
KOCH_RANGES = {
    "shoulder_pan": (0, 4095),
    "shoulder_lift": (1000, 3100),
    "elbow_flex": (950, 3150),
    "wrist_flex": (1050, 3050),
    "wrist_roll": (0, 4095),
    "gripper": (1900, 2900),
}


def calibrate_registers(
    arm: SimulatedArm,
    ranges: dict[str, tuple[int, int]],
    offsets: dict[str, int] | None = None,
) -> dict[str, MotorCalibration]:
    """Write homing offsets and position limits into the motors; return the matching calibration."""
    offsets = offsets or {}
    calibration = {}
    for name, (lo, hi) in ranges.items():
        motor = arm[name]
        offset = offsets.get(name, 0)
        motor.set(motor.HOMING_OFFSET, offset)
        motor.set(motor.MIN_LIMIT, lo)
        motor.set(motor.MAX_LIMIT, hi)
        motor.sample()  # refresh Present_Position under the new offset
        calibration[name] = MotorCalibration(
            id=motor.id, drive_mode=0, homing_offset=offset, range_min=lo, range_max=hi
        )
    return calibration


def write_calibration_file(path: str | Path, calibration: dict[str, MotorCalibration]) -> Path:
    """Write `calibration` exactly as LeRobot's `Robot._save_calibration` does (draccus JSON)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f, draccus.config_type("json"):
        draccus.dump(calibration, f, indent=4)
    return path
