"""Where a robot's joint limits and workspace box come from (config, envelope, model, calibration).

Kept apart from the layer so the precedence rules live in one readable place and calibration can reuse
`calibration_limits` to suggest an envelope.
"""

from __future__ import annotations

import logging
from typing import Any

from hardware.safety.config import (
    DEFAULT_SO_WORKSPACE_MAX,
    DEFAULT_SO_WORKSPACE_MIN,
    FK_ROBOT_TYPES,
    SO_ROBOT_TYPES,
    SafetyConfig,
    unknown_joint_error,
)
from hardware.safety.envelope import SafetyEnvelope

logger = logging.getLogger(__name__)

GRIPPER = "gripper"
Limits = dict[str, tuple[float, float]]


def load_envelope(cfg: SafetyConfig) -> SafetyEnvelope | None:
    return SafetyEnvelope.load(cfg.envelope_path) if cfg.envelope_path else None


def model_limits(robot_type: str, margin: float) -> Limits:
    """Default limits for robot types with a MuJoCo model (SO-10x); {} for others."""
    if robot_type not in SO_ROBOT_TYPES:
        return {}
    from hardware import so101_model

    out = {}
    for name, (lo, hi) in so101_model.motor_limits().items():
        m = 0.0 if name == GRIPPER else margin
        out[name] = (lo + m, hi - m)
    return out


def calibration_limits(robot: Any) -> Limits:
    """Joint ranges a LeRobot motor bus will reach, in the units it speaks (deg / 0..100).

    LeRobot's DEGREES normalisation is centred on the calibrated range: (raw - mid) * 360 / (res - 1), so
    the reachable span is +-(range_max - range_min) / 2 * 360 / (res - 1). RANGE_0_100 maps onto 0..100.
    Returns {} for robots without a calibrated bus (the simulator).
    """
    bus = getattr(robot, "bus", None)
    calibration = getattr(bus, "calibration", None) or getattr(robot, "calibration", None)
    if bus is None or not calibration or not hasattr(bus, "motors"):
        return {}
    from lerobot.motors import MotorNormMode

    out: Limits = {}
    for name, motor in bus.motors.items():
        cal = calibration.get(name)
        if cal is None or cal.range_max <= cal.range_min:
            continue
        if motor.norm_mode is MotorNormMode.DEGREES:
            res = bus.model_resolution_table[motor.model] - 1
            half = (cal.range_max - cal.range_min) / 2 * 360.0 / res
            out[name] = (-half, half)
        elif motor.norm_mode is MotorNormMode.RANGE_0_100:
            out[name] = (0.0, 100.0)
        elif motor.norm_mode is MotorNormMode.RANGE_M100_100:
            out[name] = (-100.0, 100.0)
    return out


def resolve_limits(
    cfg: SafetyConfig,
    robot_type: str,
    motors: list[str] | tuple[str, ...],
    envelope: SafetyEnvelope | None = None,
    calibrated: Limits | None = None,
) -> Limits:
    """Per-joint [low, high] for every motor; raises with advice when a motor has none.

    Every per-joint option (`joint_limits`, `max_step_per_joint`, `max_velocity_per_joint`) and the
    envelope's joint limits must name motors of this robot: a misspelled joint would silently leave the
    limit the user meant unapplied, so it is refused here, before the guard exists and anything moves.
    """
    cfg.validate()
    cfg.validate_joints(motors, robot_type)
    limits: Limits = dict(model_limits(robot_type, cfg.model_limit_margin))
    if envelope is not None:
        if envelope.robot_type not in (robot_type, "") and robot_type != "sim_so101":
            logger.warning(
                "safety envelope was recorded for %s but the robot is %s", envelope.robot_type, robot_type
            )
        for joint in envelope.joint_limits:
            if joint not in motors:
                raise unknown_joint_error(
                    f"the safety envelope {cfg.envelope_path or ''}".rstrip(), joint, motors, robot_type
                )
        limits.update({k: (float(v[0]), float(v[1])) for k, v in envelope.joint_limits.items()})
    limits.update({k: (float(v[0]), float(v[1])) for k, v in cfg.joint_limits.items()})
    for name, (lo, hi) in limits.items():
        if not lo < hi:
            raise ValueError(
                f"joint limits for {name!r} are empty: [{lo}, {hi}]; reduce safety.model_limit_margin "
                f"({cfg.model_limit_margin}) or set safety.joint_limits"
            )
    for name, (clo, chi) in (calibrated or {}).items():
        if name not in limits:
            limits[name] = (clo, chi)
            continue
        lo, hi = max(limits[name][0], clo), min(limits[name][1], chi)
        if lo >= hi:
            raise ValueError(
                f"joint limits for {name!r} {limits[name]} do not overlap the calibrated range {(clo, chi)}; "
                "re-run calibration or re-record the safety envelope"
            )
        limits[name] = (lo, hi)
    missing = [m for m in motors if m not in limits]
    if missing:
        raise ValueError(
            f"no joint limits for {missing} on robot type {robot_type!r}: record a safety envelope with "
            "`pirl calibrate envelope` and pass it as --safety.envelope_path, or set --safety.joint_limits"
        )
    return {m: limits[m] for m in motors}


def resolve_workspace(
    cfg: SafetyConfig, robot_type: str, envelope: SafetyEnvelope | None = None
) -> tuple[tuple[float, float, float], tuple[float, float, float]] | None:
    """The end-effector box (shrunk by the margin), or None when the check is off or impossible."""
    if not cfg.workspace_check:
        return None
    if cfg.workspace_min is not None:
        lo, hi = tuple(cfg.workspace_min), tuple(cfg.workspace_max)
    elif envelope is not None and envelope.workspace_min is not None:
        lo, hi = tuple(envelope.workspace_min), tuple(envelope.workspace_max)
    elif robot_type in FK_ROBOT_TYPES:
        lo, hi = DEFAULT_SO_WORKSPACE_MIN, DEFAULT_SO_WORKSPACE_MAX
    else:
        logger.info("no workspace box for %s (no kinematic model); joint limits still apply", robot_type)
        return None
    if robot_type not in FK_ROBOT_TYPES:
        raise ValueError(
            f"a workspace box is configured but pirl has no kinematic model for {robot_type!r}; "
            f"set --safety.workspace_check=false (supported: {sorted(FK_ROBOT_TYPES)})"
        )
    m = cfg.workspace_margin
    lo = tuple(float(v) + m for v in lo)
    hi = tuple(float(v) - m for v in hi)
    if any(a >= b for a, b in zip(lo, hi, strict=True)):
        raise ValueError(f"workspace box {lo}..{hi} is empty after a margin of {m} m; reduce the margin")
    return lo, hi  # type: ignore[return-value]
