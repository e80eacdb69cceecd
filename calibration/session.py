"""Open a calibrated follower for envelope recording or checking, with the checks that must come first.

Both need positions in degrees (pirl's safety limits are in degrees) and a calibration that matches the
motors; otherwise the envelope would be recorded in one frame and enforced in another.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from calibration.devices import make_device, spec_for
from calibration.errors import CalibrationError
from calibration.validate import validate_file


def default_envelope_path(robot_type: str, robot_id: str | None) -> Path:
    """~/.cache/pirl/envelopes/<type>/<id>.json (PIRL_HOME moves ~/.cache/pirl)."""
    home = Path(os.environ.get("PIRL_HOME", "~/.cache/pirl")).expanduser()
    return home / "envelopes" / robot_type / f"{robot_id or 'default'}.json"


def open_follower(config: Any, out=print) -> Any:
    """Validate the calibration file, then connect the follower in degrees with the file in its motors."""
    spec = spec_for(config.type)
    if spec.kind != "robot":
        raise CalibrationError(
            f"{config.type} is a leader; record and check the envelope on the follower (--robot.type=...)"
        )
    if hasattr(config, "use_degrees") and not config.use_degrees:
        out("  note: using degrees (--robot.use_degrees=true): pirl's safety limits are in degrees")
        config.use_degrees = True
    report = validate_file(config)
    if not report.ok:
        raise CalibrationError("the follower's calibration is not usable:\n" + report.format())
    robot = make_device(config)
    try:
        robot.connect(calibrate=False)
    except (ConnectionError, RuntimeError, OSError) as exc:
        raise CalibrationError(
            f"could not connect {config.type} on {config.port}:\n{exc}\n"
            "check power, cables and the port (lerobot-find-port)"
        ) from exc
    if not robot.is_calibrated:
        out("  the motors held a different calibration; writing the file's calibration into them")
        with robot.bus.torque_disabled():
            robot.bus.write_calibration(robot.calibration)
    return robot
