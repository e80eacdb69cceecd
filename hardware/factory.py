"""Build robots, cameras and teleoperators from LeRobot configs, with errors that say what to do.

One entry point per kind of device, so the actor, the console and the calibration tools never reach into
LeRobot's per-device modules. Sim and real are chosen by the config's `type` alone (`sim_so101` vs
`so101_follower`), and the same goes for teleoperators (`sim_expert` vs `so101_leader`).

LeRobot's drivers assume a person at a terminal: a missing calibration file or one that differs from the
motors makes `connect()` block on `input()`, a wrong port surfaces as a bare `ConnectionError`, a dead camera
leaves the motor bus open. `connect_robot` / `connect_teleoperator` / `open_cameras` turn those into the
three errors below and never prompt.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from lerobot.cameras import Camera, CameraConfig
from lerobot.robots import Robot, RobotConfig
from lerobot.teleoperators import Teleoperator, TeleoperatorConfig

import hardware.sim  # noqa: F401  (registers sim_so101, sim_mujoco, sim_expert, sim_operator with LeRobot)

logger = logging.getLogger(__name__)

ROBOT_TYPES = ("sim_so101", "so100_follower", "so101_follower", "koch_follower")
TELEOP_TYPES = (
    "sim_expert",
    "sim_operator",
    "so100_leader",
    "so101_leader",
    "koch_leader",
    "gamepad",
    "keyboard_ee",
)
CAMERA_TYPES = ("opencv", "intelrealsense")
_SERIAL_TYPES = {
    "so100_follower",
    "so101_follower",
    "koch_follower",
    "so100_leader",
    "so101_leader",
    "koch_leader",
}


class HardwareConfigError(ValueError):
    """The config cannot describe a usable device (unknown type, no port, no id)."""


class CalibrationMissingError(FileNotFoundError):
    """A real arm has no calibration file; run `pirl calibrate` first."""


class CalibrationCorruptError(CalibrationMissingError):
    """The calibration file exists but LeRobot cannot read it (half-written, edited by hand)."""


class DeviceOpenError(ConnectionError):
    """A serial port or a camera did not open."""


# ---- robots -----------------------------------------------------------------------------------------
def make_robot(config: RobotConfig, *, require_calibration: bool = True) -> Robot:
    """Robot instance (not connected) for `config`; real arms need a port, an id and a calibration file."""
    kind = config.type
    if kind == "sim_so101":
        from hardware.sim import SimSO101Follower

        return SimSO101Follower(config)
    if kind not in ROBOT_TYPES:
        raise HardwareConfigError(f"unsupported robot type {kind!r}; pirl supports {', '.join(ROBOT_TYPES)}")
    _check_serial_config(config, "robot")
    if kind == "koch_follower":
        from lerobot.robots.koch_follower import KochFollower

        robot: Robot = _construct(KochFollower, config, "robot")
    else:
        from lerobot.robots.so_follower import SO100Follower, SO101Follower

        robot = _construct(SO100Follower if kind == "so100_follower" else SO101Follower, config, "robot")
    if require_calibration:
        _check_calibration_file(robot, "robot")
    return robot


def connect_robot(robot: Robot) -> Robot:
    """Connect without ever prompting; a file calibration that differs from the motors is written to them.

    Raises DeviceOpenError for a port or camera that does not open (the bus is closed again on a camera
    failure, so nothing is left half-open).
    """
    restore = _calibrate_from_file_instead_of_prompting(robot)
    try:
        robot.connect()
    except Exception as exc:
        cams = getattr(robot, "cameras", {}) or {}
        failed = next((key for key, cam in cams.items() if not cam.is_connected), None)
        bus = getattr(robot, "bus", None)
        bus_open = bus is not None and bus.is_connected
        if bus_open:
            try:
                bus.disconnect(disable_torque=False)
            except Exception:  # best effort: we are already reporting the real error
                logger.exception("could not close %s's bus after a failed connect", robot)
        if not bus_open and bus is not None:
            raise _port_error(robot.config, "robot", exc) from exc
        if failed is not None and isinstance(exc, ConnectionError | RuntimeError | OSError | TimeoutError):
            raise _camera_error(failed, cams[failed].config, exc) from exc
        raise
    finally:
        restore()
    return robot


# ---- teleoperators ----------------------------------------------------------------------------------
def make_teleoperator(
    config: TeleoperatorConfig, *, robot: Robot | None = None, require_calibration: bool = True
) -> Teleoperator:
    """Teleoperator instance (not connected). `sim_expert` / `sim_operator` need the simulated `robot`."""
    kind = config.type
    if kind == "sim_expert":
        from hardware.sim import SimExpertTeleop

        if robot is None:
            raise HardwareConfigError("teleop.type=sim_expert needs the simulated robot: pass robot=...")
        teleop = SimExpertTeleop(config)
        teleop.bind(robot)
        return teleop
    if kind == "sim_operator":
        from hardware.sim import SimOperatorTeleop

        if robot is None:
            raise HardwareConfigError("teleop.type=sim_operator needs the simulated robot: pass robot=...")
        teleop = SimOperatorTeleop(config)
        teleop.bind(robot)  # it sees the robot only through an OperatorView (observation, task, fps)
        return teleop
    if kind not in TELEOP_TYPES:
        raise HardwareConfigError(
            f"unsupported teleop type {kind!r}; pirl supports {', '.join(TELEOP_TYPES)}"
        )
    if kind in _SERIAL_TYPES:
        _check_serial_config(config, "teleop")
    if kind == "koch_leader":
        from lerobot.teleoperators.koch_leader import KochLeader

        teleop: Teleoperator = _construct(KochLeader, config, "teleop")
    elif kind in ("so100_leader", "so101_leader"):
        from lerobot.teleoperators.so_leader import SO100Leader, SO101Leader

        teleop = _construct(SO100Leader if kind == "so100_leader" else SO101Leader, config, "teleop")
    elif kind == "gamepad":
        from lerobot.teleoperators.gamepad.teleop_gamepad import GamepadTeleop

        teleop = GamepadTeleop(config)
    else:
        from lerobot.teleoperators.keyboard.teleop_keyboard import KeyboardEndEffectorTeleop

        teleop = KeyboardEndEffectorTeleop(config)
    if require_calibration and kind in _SERIAL_TYPES:
        _check_calibration_file(teleop, "teleop")
    return teleop


def connect_teleoperator(teleop: Teleoperator) -> Teleoperator:
    """Connect without prompting (file calibration written to a mismatched leader); clear port errors."""
    restore = _calibrate_from_file_instead_of_prompting(teleop)
    try:
        teleop.connect()
    except Exception as exc:
        bus = getattr(teleop, "bus", None)
        if bus is not None and not bus.is_connected:
            raise _port_error(teleop.config, "teleop", exc) from exc
        raise
    finally:
        restore()
    return teleop


# ---- cameras ----------------------------------------------------------------------------------------
def make_cameras(configs: dict[str, CameraConfig]) -> dict[str, Camera]:
    """Camera instances (not connected) for OpenCV / RealSense configs, keyed like the robot's cameras."""
    cameras: dict[str, Camera] = {}
    for key, cfg in configs.items():
        if cfg.type == "sim_mujoco":
            raise HardwareConfigError(
                f"camera {key!r} is a sim camera; sim cameras belong in a sim_so101 robot's `cameras`"
            )
        if cfg.type == "opencv":
            from lerobot.cameras.opencv import OpenCVCamera

            cameras[key] = OpenCVCamera(cfg)
        elif cfg.type == "intelrealsense":
            try:
                import pyrealsense2  # noqa: F401
                from lerobot.cameras.realsense.camera_realsense import RealSenseCamera
            except ImportError as exc:
                raise HardwareConfigError(
                    f"camera {key!r} is a RealSense but the `pyrealsense2` package is not installed; "
                    "install LeRobot's `intelrealsense` extra on the robot machine"
                ) from exc
            cameras[key] = RealSenseCamera(cfg)
        else:
            raise HardwareConfigError(
                f"unsupported camera type {cfg.type!r} for {key!r}; pirl supports {', '.join(CAMERA_TYPES)}"
            )
    return cameras


def open_cameras(cameras: dict[str, Camera]) -> dict[str, Camera]:
    """Connect every camera; on the first that does not open, close the others and say which it was."""
    opened = []
    for key, cam in cameras.items():
        try:
            cam.connect()
        except Exception as exc:
            for other in opened:
                other.disconnect()
            raise _camera_error(key, cam.config, exc) from exc
        opened.append(cam)
    return cameras


# ---- helpers ----------------------------------------------------------------------------------------
def _check_serial_config(config: Any, role: str) -> None:
    port = getattr(config, "port", None)
    if not port:
        raise HardwareConfigError(
            f"{role}.type={config.type} needs a serial port: set --{role}.port=/dev/ttyACM0 "
            "(find it with `lerobot-find-port`)"
        )
    if not config.id:
        raise HardwareConfigError(
            f"{role}.type={config.type} needs an id (--{role}.id=...): it names the calibration file"
        )


def _calibrate_command(cfg: Any, role: str) -> str:
    return f"pirl calibrate --{role}.type={cfg.type} --{role}.port={cfg.port} --{role}.id={cfg.id}" + (
        f" --{role}.calibration_dir={cfg.calibration_dir}" if cfg.calibration_dir else ""
    )


def _check_calibration_file(device: Robot | Teleoperator, role: str) -> None:
    path = device.calibration_fpath
    if not path.is_file():
        cfg = device.config
        raise CalibrationMissingError(
            f"no calibration file for {role} {cfg.type} id={cfg.id!r}: expected {path}. Calibrate the arm first: "
            f"`{_calibrate_command(cfg, role)}`"
        )


def _construct(cls: type, config: Any, role: str) -> Any:
    """`cls(config)` for a serial arm. LeRobot's constructor reads the calibration file and a corrupt one
    (a crash mid-write, a hand edit) ends in a draccus traceback: say which file and what to do instead."""
    try:
        return cls(config)
    except Exception as exc:
        from lerobot.utils.constants import HF_LEROBOT_CALIBRATION, ROBOTS, TELEOPERATORS

        folder = ROBOTS if role == "robot" else TELEOPERATORS
        calib_dir = Path(config.calibration_dir) if config.calibration_dir else None
        path = (calib_dir or HF_LEROBOT_CALIBRATION / folder / cls.name) / f"{config.id}.json"
        problem = _unreadable_calibration(path)
        if problem is None:
            raise
        raise CalibrationCorruptError(
            f"calibration file {path} of {role} {config.type} id={config.id!r} cannot be read: {problem}. "
            f"Recalibrate: `{_calibrate_command(config, role)}` (it moves the bad file aside first), or "
            "restore a good copy of the file"
        ) from exc


def _unreadable_calibration(path: Path) -> str | None:
    """Why LeRobot cannot load this calibration file, or None when it can (or there is no file)."""
    if not path.is_file():
        return None
    import draccus
    from lerobot.motors import MotorCalibration

    try:
        with open(path) as f, draccus.config_type("json"):
            draccus.load(dict[str, MotorCalibration], f)  # exactly what LeRobot's _load_calibration does
    except Exception as exc:
        return " ".join(str(exc).split())[:200] or type(exc).__name__
    return None


def _calibrate_from_file_instead_of_prompting(device: Any):
    """Make `connect()` write the loaded calibration file to mismatched motors instead of asking.

    LeRobot's `calibrate()` asks "press ENTER to use the file" when the motors disagree with the file;
    pressing ENTER writes the file to the motors, which is what this does, without a terminal. With no
    calibration loaded there is nothing safe to write, so the prompt path is turned into an error.
    Returns a function that restores the original method.
    """
    bus = getattr(device, "bus", None)
    if bus is None:
        return lambda: None

    def calibrate_from_file() -> None:
        if not device.calibration:
            raise CalibrationMissingError(
                f"{device} has no calibration loaded ({device.calibration_fpath}); run `pirl calibrate` first"
            )
        logger.info("writing calibration file %s to the motors of %s", device.calibration_fpath, device)
        bus.write_calibration(device.calibration)

    device.calibrate = calibrate_from_file
    return lambda: device.__dict__.pop("calibrate", None)


def _port_error(config: Any, role: str, exc: BaseException) -> DeviceOpenError:
    port = getattr(config, "port", None)
    missing = " (no such device)" if port and port.startswith("/dev/") and not os.path.exists(port) else ""
    cause = " ".join(str(exc.__cause__ or exc).split())  # LeRobot's wrapper hides the SDK's reason
    return DeviceOpenError(
        f"{role} {config.type}: serial port {port!r} did not open{missing} ({cause}). "
        f"Is the arm plugged in and powered? Find the port with `lerobot-find-port` and pass --{role}.port=..."
    )


def _camera_error(key: str, config: Any, exc: BaseException) -> DeviceOpenError:
    where = getattr(config, "index_or_path", None) or getattr(config, "serial_number_or_name", None)
    tool = "intelrealsense" if getattr(config, "type", "") == "intelrealsense" else "opencv"
    return DeviceOpenError(
        f"camera {key!r} ({getattr(config, 'type', '?')} {where!r}) did not open: {str(exc).strip()}. "
        f"Check the cable and list cameras with `lerobot-find-cameras {tool}`"
    )


def leader_in_degrees(teleop: Any) -> None:
    """LeRobot's Koch leader always reports -100..100 range units; a follower with use_degrees=true (what
    the safety layer needs) takes degrees. Read the leader's body joints in degrees too (about the middle of
    its calibrated range, as the follower does), so that one joint angle means the same on both arms."""
    from lerobot.motors import MotorNormMode

    for motor in teleop.bus.motors.values():
        if motor.norm_mode is MotorNormMode.RANGE_M100_100:
            motor.norm_mode = MotorNormMode.DEGREES
