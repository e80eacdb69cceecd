"""`pirl calibrate`: calibrate, validate, record the safety envelope, check it.

    pirl calibrate --robot.type=so101_follower --robot.port=/dev/ttyACM0 --robot.id=arm1
    pirl calibrate --teleop.type=so101_leader --teleop.port=/dev/ttyACM1 --teleop.id=lead1
    pirl calibrate validate --robot.type=... --robot.id=arm1 [--robot.port=...] [--teleop.* ...]
    pirl calibrate envelope --robot.type=so101_follower --robot.port=... --robot.id=arm1 [--duration_s=60]
    pirl calibrate check --robot.type=so101_follower --robot.port=... --robot.id=arm1

Exit codes: 0 ok, 1 a check failed (the report says which and what to do), 2 bad usage.
See docs/calibration.md for the step-by-step guide.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import draccus
from lerobot.robots import RobotConfig
from lerobot.teleoperators import TeleoperatorConfig

from calibration.devices import register_lerobot_types, spec_for
from calibration.errors import CalibrationError
from calibration.flow import OperatorIO, isatty, run_calibration, stdin_enter_pressed
from calibration.validate import device_label
from hardware.safety.config import SafetyConfig

register_lerobot_types()

SUBCOMMANDS = ("validate", "envelope", "check")


@dataclass
class CalibrateConfig:
    """`pirl calibrate`: run LeRobot's calibration for one device and validate the file it writes."""

    # The follower to calibrate (e.g. --robot.type=so101_follower --robot.port=/dev/ttyACM0 --robot.id=arm1).
    robot: RobotConfig | None = None
    # ... or the leader (e.g. --teleop.type=so101_leader --teleop.port=/dev/ttyACM1 --teleop.id=lead1).
    teleop: TeleoperatorConfig | None = None


@dataclass
class ValidateConfig:
    """`pirl calibrate validate`: check calibration files (and the arms, when a port is given)."""

    # Follower whose calibration to check; give both --robot.* and --teleop.* to also check takeover.
    robot: RobotConfig | None = None
    # Leader whose calibration to check.
    teleop: TeleoperatorConfig | None = None
    # Also open the port(s): motors answer, registers hold the file, joints inside their ranges.
    # Set automatically to false when no --robot.port / --teleop.port is given.
    live: bool = True


@dataclass
class EnvelopeConfig:
    """`pirl calibrate envelope`: record joint limits and the workspace box by moving the limp arm."""

    # The follower (calibrated first with `pirl calibrate`).
    robot: RobotConfig | None = None
    # Where to write the envelope JSON; default ~/.cache/pirl/envelopes/<type>/<id>.json.
    output: str | None = None
    # Stop recording after this many seconds (default: when you press Enter).
    duration_s: float | None = None
    # Stop after this many samples (scripted runs).
    max_samples: int | None = None
    # Sampling rate while recording (Hz).
    fps: float = 30.0
    # Widen each recorded joint range by this much (degrees; gripper units) on both sides, within the
    # calibrated range.
    joint_margin: float = 2.0
    # Widen the recorded end-effector box by this much (metres) on every side (SO-100/SO-101 only).
    workspace_margin: float = 0.02
    # Give the gripper its whole calibrated range whatever the demonstration did (grasping needs it).
    gripper_full_range: bool = True
    # Store the pose at the start of recording as the envelope's home pose (where resets go).
    home_from_start: bool = True


@dataclass
class CheckConfig:
    """`pirl calibrate check`: move slowly to poses inside the envelope to prove the limits hold."""

    # The follower.
    robot: RobotConfig | None = None
    # Envelope to check; default ~/.cache/pirl/envelopes/<type>/<id>.json.
    envelope_path: str | None = None
    # Safety layer settings for the moves (the envelope path above is filled in).
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    # Test poses stay this fraction of each joint's range away from its limits (0..0.5).
    inset: float = 0.2
    # Move at this fraction of the safety layer's velocity limit.
    speed_fraction: float = 0.25
    # A pose counts as reached within this many degrees (gripper units).
    tolerance: float = 2.0
    # Also ask each joint to go `probe_overshoot` past each limit and check the safety layer stops it.
    probe_limits: bool = False
    # How far past the limit the probes ask (degrees; gripper units).
    probe_overshoot: float = 5.0
    # Revisit the envelope's recorded waypoints (poses at its edges the operator moved the arm through).
    waypoints: bool = True
    # Skip the "press Enter to start moving" confirmation.
    yes: bool = False


def _device_config(cfg) -> object:
    if (cfg.robot is None) == (cfg.teleop is None):
        raise CalibrationError("choose exactly one device: --robot.type=... or --teleop.type=...")
    return cfg.robot or cfg.teleop


def _robot(cfg) -> object:
    if cfg.robot is None:
        raise CalibrationError(
            "give the follower: --robot.type=so101_follower --robot.port=... --robot.id=..."
        )
    spec_for(cfg.robot.type)
    return cfg.robot


def cmd_calibrate(cfg: CalibrateConfig, io: OperatorIO) -> int:
    report = run_calibration(_device_config(cfg), io)
    return 0 if report.ok else 1


def cmd_validate(cfg: ValidateConfig, io: OperatorIO) -> int:
    from calibration.validate import validate

    if cfg.robot is None and cfg.teleop is None:
        raise CalibrationError("give --robot.* and/or --teleop.* (type and id) to validate")
    reports = validate(cfg.robot, cfg.teleop, live=cfg.live)
    for r in reports:
        io.out(r.format())
    return 0 if all(r.ok for r in reports) else 1


def cmd_envelope(cfg: EnvelopeConfig, io: OperatorIO) -> int:
    from calibration.envelope import EnvelopeRecorder, build_envelope
    from calibration.session import default_envelope_path, open_follower
    from hardware.safety.limits import calibration_limits

    robot_cfg = _robot(cfg)
    spec = spec_for(robot_cfg.type)
    path = Path(cfg.output) if cfg.output else default_envelope_path(robot_cfg.type, robot_cfg.id)
    io.out(f"pirl calibrate envelope: {device_label(robot_cfg)} -> {path}")
    no_end = cfg.duration_s is None and cfg.max_samples is None
    if no_end and io.stop is stdin_enter_pressed and not isatty(sys.stdin):
        raise CalibrationError(
            "stdin is not a terminal, so pressing Enter cannot stop the recording; give --duration_s=SECONDS"
        )
    robot = open_follower(robot_cfg, io.out)
    try:
        motors = tuple(robot.bus.motors)
        fk = None
        if spec.has_kinematics:
            from hardware.kinematics import SO101Kinematics

            fk = SO101Kinematics().fk
        else:
            io.out(f"  note: no kinematic model for {robot_cfg.type}: recording joint limits only (no box)")
        robot.bus.disable_torque()
        io.out(
            "Torque is OFF: hold the arm. Move it by hand through everything the task needs (all the\n"
            "places the gripper must reach, every joint as far as the task goes), then press Enter."
            + (f" Recording stops after {cfg.duration_s:g} s." if cfg.duration_s else "")
        )
        recorder = EnvelopeRecorder(
            lambda: robot.bus.sync_read("Present_Position", num_retry=2),
            motors,
            fk,
            fps=cfg.fps,
            duration_s=cfg.duration_s,
            max_samples=cfg.max_samples,
            stop=io.stop,
            clock=io.clock,
            sleep=io.sleep,
            out=io.out,
            redraw=io.redraw,
        )
        rec = recorder.run()
        env, warnings = build_envelope(
            rec,
            robot_cfg.type,
            robot_cfg.id,
            joint_margin=cfg.joint_margin,
            workspace_margin=cfg.workspace_margin,
            reachable=calibration_limits(robot),
            gripper_full_range=cfg.gripper_full_range,
            home_from_start=cfg.home_from_start,
        )
    finally:
        robot.disconnect()
    env.save(path)
    io.out(f"recorded {len(rec.samples)} poses in {rec.elapsed_s:.1f} s (stopped by {rec.stopped_by})")
    for m, (lo, hi) in env.joint_limits.items():
        io.out(f"  {m:<14} [{lo:8.2f}, {hi:8.2f}]")
    if env.workspace_min is not None:
        io.out(f"  workspace box (m): {env.workspace_min} .. {env.workspace_max}")
    for w in warnings:
        io.out(f"  warning: {w}")
    io.out(f"saved {path}\nuse it with --safety.envelope_path={path}; prove it with `pirl calibrate check`")
    return 0


def cmd_check(cfg: CheckConfig, io: OperatorIO) -> int:
    from calibration.check import run_check
    from calibration.session import default_envelope_path, open_follower
    from hardware.guard import RobotGuard
    from hardware.safety.envelope import EnvelopeError, SafetyEnvelope

    robot_cfg = _robot(cfg)
    path = (
        Path(cfg.envelope_path) if cfg.envelope_path else default_envelope_path(robot_cfg.type, robot_cfg.id)
    )
    try:
        env = SafetyEnvelope.load(path)
    except EnvelopeError as exc:
        raise CalibrationError(str(exc)) from exc
    if env.robot_type != robot_cfg.type and {env.robot_type, robot_cfg.type} != {
        "so100_follower",
        "so101_follower",
    }:
        raise CalibrationError(
            f"envelope {path} was recorded for {env.robot_type}, not {robot_cfg.type}; record one for this arm"
        )
    cfg.safety.envelope_path = str(path)
    io.out(f"pirl calibrate check: {device_label(robot_cfg)} inside {path}")
    robot = open_follower(robot_cfg, io.out)
    try:
        guard = RobotGuard(robot, cfg.safety)
    except Exception:
        robot.disconnect()
        raise
    report = None
    try:
        report = run_check(
            guard,
            inset=cfg.inset,
            speed_fraction=cfg.speed_fraction,
            tolerance=cfg.tolerance,
            probe_limits=cfg.probe_limits,
            probe_overshoot=cfg.probe_overshoot,
            waypoints=getattr(env, "waypoints", None) if cfg.waypoints else None,
            confirm=None if cfg.yes else io.input,
            out=io.out,
        )
    finally:
        if report is not None and report.aborted:
            robot.disconnect()  # release without the guard's hold, which would pull the joint back
        guard.close()
    io.out(report.format())
    return 0 if report.ok else 1


_COMMANDS = {
    None: (CalibrateConfig, cmd_calibrate),
    "validate": (ValidateConfig, cmd_validate),
    "envelope": (EnvelopeConfig, cmd_envelope),
    "check": (CheckConfig, cmd_check),
}


def _without_port_means_offline(argv: list[str]) -> list[str]:
    """`validate` without a port checks files only; LeRobot's configs still require a port string."""
    out = list(argv)
    for kind in ("robot", "teleop"):
        given = any(a.startswith(f"--{kind}.") for a in argv)
        if given and not any(a.startswith(f"--{kind}.port") for a in argv):
            out.append(f"--{kind}.port=")
            if not any(a.startswith("--live") for a in argv):
                out.append("--live=false")
    return out


class UsageError(ValueError):
    """A bad option or value for `pirl calibrate`: one line, exit code 2."""


def _option_names(config_class: type) -> list[str]:
    """Every `--option` draccus accepts for `config_class` (for "did you mean")."""
    from draccus.argparsing import ArgumentParser

    parser = ArgumentParser(config_class=config_class)
    return [o for o in parser.parser._option_string_actions if o.startswith("--")]


def _parse(config_class: type, args: list[str], prog: str):
    """draccus.parse, where every bad option or value becomes one UsageError line instead of argparse's
    usage of every option (hundreds of lines) or a draccus traceback."""
    import difflib
    import io as io_

    from draccus.utils import DraccusException
    from lerobot.robots import RobotConfig
    from lerobot.teleoperators import TeleoperatorConfig

    err = io_.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return draccus.parse(config_class=config_class, args=args, prog=prog)
    except SystemExit as exc:
        reason = next(
            (ln.split("error: ", 1)[1] for ln in reversed(err.getvalue().splitlines()) if "error: " in ln),
            f"the options do not parse (exit {exc.code})",
        )
        unknown = re.match(r"unrecognized arguments: (\S+)", reason)
        if unknown:
            bad = unknown.group(1).split("=", 1)[0]
            close = difflib.get_close_matches(bad, _option_names(config_class), n=2, cutoff=0.7)
            hint = (
                f"; did you mean {' or '.join(close)}?" if close else f"; `{prog} --help` lists the options"
            )
            raise UsageError(f"unknown option {bad}{hint}") from None
        choice = re.match(
            r"argument --(robot|teleop)\.type: invalid choice: '([^']*)' \(choose from (.*)\)", reason
        )
        if choice:
            field, name, options = choice.groups()
            other, other_label = (
                ("teleop", "a leader (teleoperator)") if field == "robot" else ("robot", "a follower (robot)")
            )
            registry = TeleoperatorConfig if field == "robot" else RobotConfig
            if name in registry.get_known_choices():
                raise UsageError(
                    f"--{field}.type={name} is {other_label}: use --{other}.type={name}"
                ) from None
            raise UsageError(f"--{field}.type={name} is not known here; choose one of {options}") from None
        raise UsageError(" ".join(reason.split())) from None
    except DraccusException as exc:  # a value that does not parse, e.g. --fps=fast
        raise UsageError(re.sub(r"^`([^`]+)`: ", r"--\1: ", " ".join(str(exc).split()))) from None


def _check_values(cfg) -> None:
    """Numbers that cannot work, refused before any arm moves (each names its option)."""
    import math

    def need(name: str, ok: bool, rule: str) -> None:
        if not ok:
            raise UsageError(f"--{name} must be {rule}, got {getattr(cfg, name)!r}")

    def finite(name: str) -> bool:
        value = getattr(cfg, name)
        return isinstance(value, (int, float)) and math.isfinite(value)

    if isinstance(cfg, EnvelopeConfig):
        need("fps", finite("fps") and cfg.fps > 0, "> 0 (samples per second)")
        need(
            "duration_s",
            cfg.duration_s is None or (finite("duration_s") and cfg.duration_s > 0),
            "> 0 seconds",
        )
        need("max_samples", cfg.max_samples is None or cfg.max_samples >= 1, ">= 1")
        need("joint_margin", finite("joint_margin") and cfg.joint_margin >= 0, ">= 0")
        need("workspace_margin", finite("workspace_margin") and cfg.workspace_margin >= 0, ">= 0 (metres)")
    elif isinstance(cfg, CheckConfig):
        need("inset", finite("inset") and 0 <= cfg.inset < 0.5, "in [0, 0.5)")
        need("speed_fraction", finite("speed_fraction") and 0 < cfg.speed_fraction <= 1, "in (0, 1]")
        need("tolerance", finite("tolerance") and cfg.tolerance > 0, "> 0")
        need("probe_overshoot", finite("probe_overshoot") and cfg.probe_overshoot > 0, "> 0")


def main(argv: list[str] | None = None, *, io: OperatorIO | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    sub = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    rest = argv[1:] if sub else argv
    if sub == "validate":
        rest = _without_port_means_offline(rest)
    config_class, command = _COMMANDS[sub]
    if not rest or any(a in ("-h", "--help") for a in rest):
        print(__doc__)
        if rest:
            with contextlib.suppress(SystemExit):
                draccus.parse(config_class=config_class, args=["--help"])
        return 0
    from draccus.utils import DraccusException

    prog = "pirl calibrate" + (f" {sub}" if sub else "")
    try:
        cfg = _parse(config_class, rest, prog)
        _check_values(cfg)
    except UsageError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return command(cfg, io or OperatorIO())
    except CalibrationError as exc:
        print(f"pirl calibrate: {exc}", file=sys.stderr)
        return 1
    except DraccusException as exc:  # LeRobot reads calibration files with draccus: a corrupt one
        name = re.search(r"name='([^']+)'", str(exc))
        what = f"file {name.group(1)}" if name else "a file"
        cause = f" ({' '.join(str(exc.__cause__).split())})" if exc.__cause__ else ""
        print(
            f"pirl calibrate: {what} is not valid JSON{cause}; if it is a calibration file, delete it and "
            "calibrate the device again",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("pirl calibrate: interrupted; the arm was released", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
