"""Run LeRobot's own calibration for a follower or leader, guided, and check the result.

We call the device's real `calibrate()` so the file lands where every `lerobot-*` tool reads it
(`~/.cache/huggingface/lerobot/calibration/{robots|teleoperators}/<name>/<id>.json`) with exactly LeRobot's
content. What pirl adds around it: a numbered walk-through, a clear error when a motor is missing or a joint
was not moved, setting a corrupt old file aside (LeRobot would crash parsing it), and validation of the
new file. LeRobot's flow is interactive (`input()` prompts and "press Enter to stop" while recording
ranges); `OperatorIO` lets tests (and other front-ends) answer the prompts and end the recording.
"""

from __future__ import annotations

import builtins
import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from calibration.devices import calibration_path, make_device, spec_for
from calibration.errors import CalibrationError
from calibration.validate import (
    ValidationReport,
    device_label,
    load_calibration_file,
    recalibrate_hint,
    validate_file,
)


def stdin_enter_pressed() -> bool:
    """Non-blocking "did the operator press Enter?"; False when stdin is not a terminal."""
    try:
        if not sys.stdin.isatty():
            return False
    except (AttributeError, ValueError, OSError):
        return False
    from lerobot.utils.utils import enter_pressed

    return bool(enter_pressed())


@dataclass
class OperatorIO:
    """How calibration talks to the operator. Defaults are the terminal; tests inject scripted versions."""

    # Answers LeRobot's prompts ("Move ... to the middle ... press ENTER", "type 'c' to recalibrate").
    input: Callable[[str], str] = builtins.input
    # Polled once per recorded sample; True ends a recording (LeRobot's range recording, envelope).
    stop: Callable[[], bool] = stdin_enter_pressed
    # Progress output.
    out: Callable[[str], None] = print
    # Time source and sleep for the envelope recorder's pacing and --duration_s.
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    # Redraw live tables in place (terminal) instead of printing a new block each time.
    redraw: bool = field(default_factory=lambda: isatty(sys.stdout))


def isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


@contextlib.contextmanager
def lerobot_prompts(device: Any, io: OperatorIO) -> Iterator[None]:
    """Route LeRobot's `input()` prompts and its "Enter pressed?" poll through `io` while calibrating.

    LeRobot calls the bare builtins from the module that defines `calibrate`, and `enter_pressed` from
    `lerobot.motors.motors_bus`; we shadow exactly those two names and restore them afterwards.
    """
    import lerobot.motors.motors_bus as motors_bus

    module = sys.modules[type(device).calibrate.__module__]
    had_input = "input" in vars(module)
    saved_input = vars(module).get("input")
    saved_enter = motors_bus.enter_pressed
    module.input = io.input
    motors_bus.enter_pressed = io.stop
    try:
        yield
    finally:
        motors_bus.enter_pressed = saved_enter
        if had_input:
            module.input = saved_input
        else:
            del module.input


def set_aside_bad_file(config: Any, io: OperatorIO) -> None:
    """LeRobot parses an existing file when the device is built; move a corrupt one out of its way."""
    spec = spec_for(config.type)
    path = calibration_path(config, spec)
    if not path.exists():
        return
    try:
        load_calibration_file(path, spec, recalibrate_hint(config))
    except CalibrationError as exc:
        backup = path.with_name(f"{path.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}")
        path.rename(backup)
        io.out(f"  the existing file is unusable ({exc.args[0].split(';')[0]}); moved it to {backup}")


def run_calibration(config: Any, io: OperatorIO | None = None) -> ValidationReport:
    """Calibrate one device with LeRobot's flow, save LeRobot's file, validate it; returns the report."""
    io = io or OperatorIO()
    spec = spec_for(config.type)
    path = calibration_path(config, spec)
    full_turn = ", ".join(sorted(spec.full_turn))
    io.out(f"pirl calibrate: {device_label(config)} on {config.port}\n  calibration file: {path}")
    set_aside_bad_file(config, io)

    io.out("[1/4] connecting: every motor must answer with the right model ...")
    device = make_device(config)
    try:
        device.connect(calibrate=False)
    except (ConnectionError, RuntimeError, OSError) as exc:
        raise CalibrationError(
            f"could not talk to every motor of {device_label(config)} on {config.port}:\n{exc}\n"
            "check power and cables, the port (lerobot-find-port) and the motor ids (lerobot-setup-motors)"
        ) from exc
    io.out(f"  {len(spec.motors)} motors answered.")

    io.out(
        "[2/4] LeRobot calibration. Torque is switched off; you move the arm by hand:\n"
        "  a) put every joint in the MIDDLE of its range, press Enter (this sets the homing offsets);\n"
        f"  b) move every joint except {full_turn} slowly through its WHOLE range, end to end,\n"
        "     watch MIN/MAX grow in the live table, then press Enter."
    )
    before = path.stat().st_mtime_ns if path.exists() else None
    try:
        with lerobot_prompts(device, io):
            device.calibrate()
    except ValueError as exc:
        if "same min and max" in str(exc):
            raise CalibrationError(
                f"some joints did not move while ranges were recorded:{str(exc).split(':', 1)[1]}\n"
                "re-run and move every joint end to end before pressing Enter"
            ) from exc
        raise
    finally:
        device.disconnect()
    if path.exists() and path.stat().st_mtime_ns == before:
        io.out(f"[3/4] kept the existing file {path} (written into the motors); type 'c' to recalibrate")
    else:
        io.out(f"[3/4] saved {path}")

    io.out("[4/4] validating the new calibration ...")
    report = validate_file(config)
    io.out("  " + report.format().replace("\n", "\n  "))
    return report
