"""The user's own files that centre the randomized twin: the arm's calibration and its safety envelope.

The twin should be a distribution *around the user's arm and task*, not around the nominal model. Two files
the user already has say where that is:

- LeRobot's calibration JSON (`pirl calibrate` writes it): `calibration_offsets` turns it into per-joint
  reading offsets, the centre of `randomize.joint_offset_deg` (`randomize.centre_from`);
- the safety envelope (`pirl calibrate envelope` writes it, hardware/safety/envelope.py): `envelope_region`
  reads its workspace box and joint limits, which bound where the task draws its object or target
  (`randomize.envelope_from`, applied through `SimTask.set_workspace`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hardware import so101_model
from hardware.safety.envelope import EnvelopeError, SafetyEnvelope

# LeRobot's STS3215 encoder: 4096 ticks a turn; calibration puts the pose you hold at half a turn.
_ENCODER_MAX = 4095
_HALF_TURN = _ENCODER_MAX // 2


def calibration_offsets(path: str | Path) -> dict[str, float]:
    """Per-joint reading offset (deg) of an arm calibrated by LeRobot, from its calibration JSON.

    LeRobot's calibration sets each motor's homing offset so the pose you hold ("middle of the range",
    which is the sim model's joint zero) reads half a turn (2047 ticks), then records the range you sweep.
    In degrees mode the reading is centred on the *middle of that range*, not on the held pose, so at the
    calibration pose the arm reads `(2047 - (range_min + range_max) / 2) * 360 / 4095` degrees: that is
    the offset. The gripper (0..100 mode, no degree zero) and motors missing from the file get 0.
    """
    path = Path(path).expanduser()
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"randomize.centre_from: calibration file {path} does not exist") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"randomize.centre_from: cannot read {path} as JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"randomize.centre_from: {path} is not a LeRobot calibration (motor -> calibration)")
    out = {}
    for motor in so101_model.ARM_MOTORS:
        cal = raw.get(motor)
        if cal is None:
            continue
        try:
            lo, hi = float(cal["range_min"]), float(cal["range_max"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                f"randomize.centre_from: {path} entry {motor!r} lacks numeric range_min/range_max"
            ) from None
        if not 0 <= lo < hi <= _ENCODER_MAX:
            raise ValueError(
                f"randomize.centre_from: {path} {motor!r} range {lo}..{hi} is not 0 <= min < max"
            )
        out[motor] = (_HALF_TURN - (lo + hi) / 2) * 360.0 / _ENCODER_MAX
    return out


@dataclass(frozen=True)
class EnvelopeRegion:
    """Where the user's task lives, from their safety envelope."""

    low: np.ndarray | None  # workspace box corner (m, base frame); None: the envelope has no box
    high: np.ndarray | None
    joint_limits: dict[str, tuple[float, float]]  # motor -> (lo, hi), robot units, SO-101 motors only


def envelope_region(path: str | Path) -> EnvelopeRegion:
    """The workspace box and joint limits of a safety envelope file (one-line errors naming the option)."""
    try:
        env = SafetyEnvelope.load(Path(path).expanduser())
    except EnvelopeError as exc:
        raise ValueError(f"randomize.envelope_from: {exc}") from None
    limits = {m: env.joint_limits[m] for m in so101_model.MOTORS if m in env.joint_limits}
    unknown = sorted(set(env.joint_limits) - set(so101_model.MOTORS))
    if unknown:
        raise ValueError(
            f"randomize.envelope_from: {path} has limits for {unknown}, which are not SO-101 motors "
            f"({list(so101_model.MOTORS)})"
        )
    if env.workspace_min is None:
        return EnvelopeRegion(None, None, limits)
    return EnvelopeRegion(np.asarray(env.workspace_min, float), np.asarray(env.workspace_max, float), limits)
