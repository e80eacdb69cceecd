"""Is this calibration trustworthy? File checks, live checks on the bus, and leader/follower compatibility.

Run after `pirl calibrate` and before any training run (`preflight`). Users lose hours to calibrations
that load fine and are wrong (LeRobot issues #1387, #1819: inverted or tiny ranges, arms jumping at start),
so each check below names the motor, says what is implausible and what to do about it.

File checks (no hardware): the file exists and parses; every motor of the device is there with the right
id; range_min < range_max inside the encoder (0..resolution-1); the range is not tiny; only joints that
can turn fully span a full turn; the homing middle (2047) lies inside the range; the homing offset fits
the servo's register. Live checks (port open): every motor answers with the right model; the motors'
registers hold this file; every joint sits inside its calibrated range. Compatibility: a leader and a
follower speak the same units and cover similar ranges, so a takeover neither clamps nor under-reaches.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calibration.devices import DeviceSpec, calibration_path, make_device, spec_for
from calibration.errors import CalibrationError

FIELDS = ("id", "drive_mode", "homing_offset", "range_min", "range_max")
MIN_SPAN_DEG = 30.0  # an arm joint that moved less than this during calibration was not swept
MIN_SPAN_GRIPPER_DEG = 15.0  # the gripper's travel is shorter
FULL_TURN_FRACTION = 0.95  # a span above this fraction of a turn on a joint that cannot turn = wrapped
MIDDLE_TOLERANCE = 64  # ticks: noise between "middle pose + Enter" and the first recorded sample
PRESENT_TOLERANCE = 64  # ticks a joint may sit outside its calibrated range before we complain
SPAN_RATIO_WARN = 1.25  # leader/follower span ratio beyond which takeover feels different
SPAN_RATIO_ERROR = 2.0  # ... and beyond which takeover cannot work sensibly


@dataclass
class Issue:
    severity: str  # "error" (must fix before use) or "warning" (works, but check it)
    motor: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.motor}: " if self.motor else ""
        return f"[{self.severity}] {where}{self.message}"


@dataclass
class ValidationReport:
    """Issues found for one device (or one leader/follower pair)."""

    device: str
    path: Path | None = None
    issues: list[Issue] = field(default_factory=list)
    calibration: dict[str, Any] | None = None

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def format(self) -> str:
        head = f"{self.device}" + (f" ({self.path})" if self.path else "")
        if not self.issues:
            return f"{head}: OK"
        verdict = "FAILED" if self.errors else "OK with warnings"
        return "\n".join([f"{head}: {verdict}", *(f"  {i}" for i in self.issues)])


def recalibrate_hint(config: Any) -> str:
    spec = spec_for(config.type)
    kind = "robot" if spec.kind == "robot" else "teleop"
    port = getattr(config, "port", None) or "<port>"
    return f"pirl calibrate --{kind}.type={config.type} --{kind}.port={port} --{kind}.id={config.id}"


def device_label(config: Any) -> str:
    """ "SO-100/SO-101 follower 'arm1'": LeRobot reports so101 configs as so100_follower, so name the family."""
    return f"{spec_for(config.type).display} '{config.id}'"


# ---------------------------------------------------------------------------------------------- file


def load_calibration_file(path: Path, spec: DeviceSpec, hint: str) -> dict[str, Any]:
    """Parse LeRobot's calibration JSON into MotorCalibration objects; every failure says what to do."""
    from lerobot.motors import MotorCalibration

    if not path.is_file():
        raise CalibrationError(f"no calibration file at {path}. Calibrate this device first: {hint}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CalibrationError(
            f"calibration file {path} is not valid JSON ({exc}); it is corrupted. Delete it and re-run: {hint}"
        ) from exc
    if not isinstance(data, dict) or not data:
        raise CalibrationError(
            f"calibration file {path} should map motor names to calibrations, got {type(data).__name__}; "
            f"re-run: {hint}"
        )
    out = {}
    for motor, entry in data.items():
        if not isinstance(entry, dict):
            raise CalibrationError(
                f"calibration file {path}: entry for {motor!r} is not an object; re-run: {hint}"
            )
        missing = [f for f in FIELDS if f not in entry]
        if missing:
            raise CalibrationError(
                f"calibration file {path}: motor {motor!r} is missing {', '.join(missing)}; re-run: {hint}"
            )
        bad = [f for f in FIELDS if not isinstance(entry[f], int) or isinstance(entry[f], bool)]
        if bad:
            raise CalibrationError(
                f"calibration file {path}: motor {motor!r} has non-integer {', '.join(bad)} "
                f"({', '.join(repr(entry[f]) for f in bad)}); values are raw encoder ticks. Re-run: {hint}"
            )
        out[motor] = MotorCalibration(**{f: entry[f] for f in FIELDS})
    return out


def check_calibration(spec: DeviceSpec, calibration: dict[str, Any]) -> list[Issue]:
    """Plausibility of each motor's calibration for this device type (no hardware needed)."""
    issues: list[Issue] = []
    res = spec.resolution
    ticks_per_deg = (res - 1) / 360.0
    missing = [m for m in spec.motors if m not in calibration]
    extra = [m for m in calibration if m not in spec.motors]
    if missing:
        issues.append(Issue("error", None, f"motors missing from the file: {', '.join(missing)}"))
    if extra:
        issues.append(
            Issue(
                "error",
                None,
                f"unknown motors {', '.join(extra)} for {spec.type}: is this another arm's file?",
            )
        )
    for motor, (motor_id, _model) in spec.motors.items():
        cal = calibration.get(motor)
        if cal is None:
            continue
        lo, hi, span = cal.range_min, cal.range_max, cal.range_max - cal.range_min
        if cal.id != motor_id:
            issues.append(Issue("error", motor, f"id is {cal.id} but {spec.type} uses id {motor_id}"))
        if cal.drive_mode not in (0, 1):
            issues.append(Issue("error", motor, f"drive_mode must be 0 or 1, got {cal.drive_mode}"))
        if abs(cal.homing_offset) > spec.max_homing_offset:
            issues.append(
                Issue(
                    "error",
                    motor,
                    f"homing_offset {cal.homing_offset} does not fit the servo (|offset| <= "
                    f"{spec.max_homing_offset}); re-run calibration with the arm in the middle of its range",
                )
            )
        if lo >= hi:
            what = "inverted" if lo > hi else "empty"
            issues.append(
                Issue(
                    "error", motor, f"range is {what} (range_min {lo} >= range_max {hi}); re-run calibration"
                )
            )
            continue
        if lo < 0 or hi > res - 1:
            issues.append(
                Issue(
                    "error",
                    motor,
                    f"range {lo}..{hi} leaves the encoder's 0..{res - 1}: the joint wrapped past the encoder "
                    "zero while recording; re-run and start from the middle of the range",
                )
            )
        if motor in spec.full_turn:
            continue
        min_span = (MIN_SPAN_GRIPPER_DEG if motor == "gripper" else MIN_SPAN_DEG) * ticks_per_deg
        if span < min_span:
            issues.append(
                Issue(
                    "error",
                    motor,
                    f"range is tiny ({span / ticks_per_deg:.1f} deg, {lo}..{hi}); move this joint through "
                    "its whole range while recording, then press Enter",
                )
            )
        elif span >= FULL_TURN_FRACTION * res:
            issues.append(
                Issue(
                    "error",
                    motor,
                    f"range spans a full turn ({lo}..{hi}) but this joint cannot turn fully: it wrapped past "
                    "the encoder's zero; re-run and set the middle pose with the joint really mid-range",
                )
            )
        if not lo - MIDDLE_TOLERANCE <= spec.half_turn <= hi + MIDDLE_TOLERANCE:
            issues.append(
                Issue(
                    "error",
                    motor,
                    f"range {lo}..{hi} does not contain the homing middle {spec.half_turn}: the file does not "
                    "belong to this homing (edited, or from another arm); re-run calibration",
                )
            )
    return issues


def validate_file(config: Any) -> ValidationReport:
    """File checks for one device config (robot or teleop); never raises for a bad file, reports it."""
    spec = spec_for(config.type)
    report = ValidationReport(device_label(config))
    try:
        report.path = calibration_path(config, spec)
        report.calibration = load_calibration_file(report.path, spec, recalibrate_hint(config))
    except CalibrationError as exc:
        report.issues.append(Issue("error", None, str(exc)))
        return report
    report.issues += check_calibration(spec, report.calibration)
    if report.errors:
        report.issues.append(Issue("error", None, f"fix: re-run {recalibrate_hint(config)}"))
    return report


# ---------------------------------------------------------------------------------------------- live


def check_live(config: Any, calibration: dict[str, Any]) -> list[Issue]:
    """Open the port: every motor answers, registers hold this calibration, joints sit inside their range.

    Only the bus handshake runs (no configure, no torque change), so this is safe on a resting arm.
    """
    spec = spec_for(config.type)
    device = make_device(config)
    bus = device.bus
    issues: list[Issue] = []
    try:
        bus.connect()
    except (ConnectionError, RuntimeError, OSError) as exc:
        text = str(exc).strip() or repr(exc)
        if "Missing motor IDs" in text or "incorrect model" in text:
            return [
                Issue(
                    "error",
                    None,
                    f"not every motor answers as expected on {config.port}:\n{text}\n"
                    "check the power supply, the daisy-chain cables and that each motor has its id "
                    f"(lerobot-setup-motors --{'robot' if spec.kind == 'robot' else 'teleop'}.type={config.type})",
                )
            ]
        return [
            Issue(
                "error", None, f"cannot open {config.port}: {text} (is it the right port? lerobot-find-port)"
            )
        ]
    try:
        registers = bus.read_calibration()
        for motor, cal in calibration.items():
            reg = registers.get(motor)
            if reg is None:
                continue
            fields = ["range_min", "range_max"] + (["homing_offset"] if spec.family == "feetech" else [])
            diff = [f for f in fields if getattr(reg, f) != getattr(cal, f)]
            if diff:
                issues.append(
                    Issue(
                        "warning",
                        motor,
                        "motor registers differ from the file in "
                        + ", ".join(f"{f} ({getattr(reg, f)} vs {getattr(cal, f)})" for f in diff)
                        + "; connecting will write the file into the motors (LeRobot asks first)",
                    )
                )
        raw = bus.sync_read("Present_Position", normalize=False, num_retry=2)
        for motor, cal in calibration.items():
            if motor in spec.full_turn or motor not in raw or motor not in registers:
                continue
            pos = _present_in_file_frame(spec, raw[motor], registers[motor].homing_offset, cal.homing_offset)
            if not cal.range_min - PRESENT_TOLERANCE <= pos <= cal.range_max + PRESENT_TOLERANCE:
                issues.append(
                    Issue(
                        "error",
                        motor,
                        f"sits at {pos}, outside its calibrated range {cal.range_min}..{cal.range_max}: "
                        "the calibration does not match this arm (another arm's file, or the horn was "
                        "re-mounted); re-run calibration",
                    )
                )
    finally:
        bus.disconnect(disable_torque=False)
    return issues


def _present_in_file_frame(spec: DeviceSpec, present: int, reg_offset: int, file_offset: int) -> int:
    """Present position as it will read once the file's homing offset is in the motor (no writes now)."""
    if spec.family == "feetech":  # present = actual - offset (mod resolution)
        return (present + reg_offset - file_offset) % spec.resolution
    return present - reg_offset + file_offset  # dynamixel: present = actual + offset


# ------------------------------------------------------------------------------------- compatibility


def _reach(spec: DeviceSpec, motor: str, cal: Any, use_degrees: bool) -> tuple[str, float]:
    """(units, half-span) of what the device reports for a joint."""
    if motor == "gripper":
        return "0..100", 50.0
    if use_degrees:  # a "range" device converted with calibration.units counts as degrees
        return "degrees", (cal.range_max - cal.range_min) / 2 * 360.0 / (spec.resolution - 1)
    return "-100..100", 100.0


def check_compatibility(
    follower_cfg: Any, follower_cal: dict[str, Any], leader_cfg: Any, leader_cal: dict[str, Any]
) -> list[Issue]:
    """Can this leader drive this follower in a takeover? Same joints, same units, similar spans."""
    fspec, lspec = spec_for(follower_cfg.type), spec_for(leader_cfg.type)
    issues: list[Issue] = []
    if fspec.kind != "robot" or lspec.kind != "teleop":
        return [Issue("error", None, "compatibility needs a follower (--robot.*) and a leader (--teleop.*)")]
    if set(fspec.motors) != set(lspec.motors):
        return [Issue("error", None, f"{leader_cfg.type} and {follower_cfg.type} have different joints")]
    f_deg = getattr(follower_cfg, "use_degrees", False)
    l_deg = getattr(leader_cfg, "use_degrees", lspec.joint_units == "degrees")
    convertible = lspec.joint_units == "range" and f_deg  # e.g. Koch leader: only speaks -100..100
    if convertible:
        issues.append(
            Issue(
                "warning",
                None,
                f"{lspec.display} speaks -100..100, the follower degrees: drive it through "
                "calibration.units.leader_degrees_map(leader) (TeleopSource(action_map=...)), never raw",
            )
        )
    for motor in fspec.motors:
        if motor not in follower_cal or motor not in leader_cal:
            continue
        f_units, f_half = _reach(fspec, motor, follower_cal[motor], f_deg)
        l_units, l_half = _reach(lspec, motor, leader_cal[motor], l_deg or convertible)
        if f_units != l_units:
            issues.append(
                Issue(
                    "error",
                    motor,
                    f"leader speaks {l_units} but follower expects {f_units}: a takeover would send "
                    "nonsense targets. Use the same units on both (--robot.use_degrees and --teleop.use_degrees)",
                )
            )
            continue
        if f_units != "degrees" or motor in fspec.full_turn:
            continue
        ratio = l_half / f_half if f_half > 0 else float("inf")
        if ratio > SPAN_RATIO_ERROR or ratio < 1 / SPAN_RATIO_ERROR:
            severity = "error"
        elif ratio > SPAN_RATIO_WARN or ratio < 1 / SPAN_RATIO_WARN:
            severity = "warning"
        else:
            continue
        effect = (
            "the follower will be clamped at its limits while the leader keeps moving"
            if ratio > 1
            else "the follower cannot be driven through its whole range"
        )
        issues.append(
            Issue(
                severity,
                motor,
                f"leader covers +-{l_half:.0f} deg, follower +-{f_half:.0f} deg ({ratio:.2f}x): {effect}; "
                "re-calibrate the one whose range was not fully swept",
            )
        )
    return issues


# ------------------------------------------------------------------------------------------ preflight


def validate(
    robot: Any | None = None, teleop: Any | None = None, live: bool = False
) -> list[ValidationReport]:
    """All checks for a follower and/or a leader config; one report per device plus one for the pair."""
    reports = []
    for cfg in (robot, teleop):
        if cfg is None:
            continue
        report = validate_file(cfg)
        if live and report.calibration is not None and not report.errors:
            report.issues += check_live(cfg, report.calibration)
        reports.append(report)
    if robot is not None and teleop is not None and all(r.calibration for r in reports):
        pair = ValidationReport(f"{device_label(teleop)} -> {device_label(robot)} (takeover)")
        pair.issues = check_compatibility(robot, reports[0].calibration, teleop, reports[1].calibration)
        reports.append(pair)
    return reports


def preflight(
    robot: Any | None = None, teleop: Any | None = None, live: bool = False
) -> list[ValidationReport]:
    """Raise CalibrationError (every report in the message) unless all checks pass; call before training."""
    reports = validate(robot, teleop, live=live)
    if any(not r.ok for r in reports):
        raise CalibrationError("calibration check failed:\n" + "\n".join(r.format() for r in reports))
    return reports
