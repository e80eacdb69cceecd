"""Leader arms that do not speak degrees, converted so they can drive a follower in degrees.

pirl's followers speak degrees (`use_degrees=true`; the safety limits are in degrees), and LeRobot's
DEGREES normalisation centres each joint on the middle of its calibrated range. LeRobot's Koch leader only
speaks -100..100 (the calibrated range mapped linearly), so a takeover with it would send nonsense. With
the leader's calibration, -100..100 converts exactly to the same centred degrees:

    degrees = value / 100 * (range_max - range_min) / 2 * 360 / (resolution - 1)

The gripper stays 0..100 on both sides. `leader_degrees_map(leader)` returns an `action_map` for
`hardware.takeover.TeleopSource(teleop, action_map=...)`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from calibration.errors import CalibrationError


def half_span_degrees(calibration: Any, resolution: int = 4096) -> float:
    """Half the calibrated range of one motor, in degrees."""
    return (calibration.range_max - calibration.range_min) / 2 * 360.0 / (resolution - 1)


def range_to_degrees(
    calibrations: Mapping[str, Any], norm_modes: Mapping[str, str], resolution: int = 4096
) -> Callable[[Mapping[str, float]], dict[str, float]]:
    """Converter for "<motor>.pos" actions whose joints are in -100..100 ("range_m100_100") units."""
    scale = {}
    for motor, mode in norm_modes.items():
        if mode == "range_m100_100":
            if motor not in calibrations:
                raise CalibrationError(
                    f"no calibration for {motor!r}: calibrate the leader (`pirl calibrate`)"
                )
            scale[motor] = half_span_degrees(calibrations[motor], resolution) / 100.0

    def convert(action: Mapping[str, float]) -> dict[str, float]:
        out = {}
        for key, value in action.items():
            motor = key.removesuffix(".pos")
            out[key] = float(value) * scale[motor] if motor in scale else float(value)
        return out

    return convert


def leader_degrees_map(leader: Any) -> Callable[[dict[str, Any], Mapping[str, Any]], dict[str, float]]:
    """`action_map(teleop_action, observation)` turning a calibrated leader's actions into degrees."""
    bus = leader.bus
    if not bus.calibration:
        raise CalibrationError(f"{leader} has no calibration; run `pirl calibrate --teleop.type=...` first")
    modes = {name: motor.norm_mode.value for name, motor in bus.motors.items()}
    resolution = {bus.model_resolution_table[m.model] for m in bus.motors.values()}
    if len(resolution) != 1:
        raise CalibrationError(f"{leader} mixes encoder resolutions {sorted(resolution)}; cannot convert")
    convert = range_to_degrees(bus.calibration, modes, resolution.pop())
    return lambda action, observation=None: convert(action)
