"""The safety envelope: the file that calibration writes and the safety layer loads.

A JSON file, human-readable and diff-able, so an operator can inspect and hand-edit what the arm is
allowed to do:

    {"robot_type": "so101_follower", "robot_id": "arm1",
     "joint_limits": {"shoulder_pan": [-90.0, 90.0], ...},          # LeRobot units (deg; gripper 0..100)
     "workspace_min": [x, y, z], "workspace_max": [x, y, z],         # metres, base frame; null = no box
     "home_pose": {"shoulder_pan.pos": 0.0, ...},                     # optional: where resets go
     "recorded_at": "2026-11-24T12:00:00Z", "source": "pirl calibrate envelope"}

`home_pose` is optional (older files without it load unchanged); when present it must lie within the
joint limits, because the episode reset drives the arm there through the safety layer.

`waypoints` is optional too: poses ("<motor>.pos" keys) the operator actually moved the arm through while
recording (where each joint reached its extremes), so `pirl calibrate check` can revisit known
collision-free poses at the edges of the envelope. They must lie within the joint limits.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path


class EnvelopeError(ValueError):
    """A safety envelope file that cannot be trusted; the message says what is wrong and what to do."""


@dataclass
class SafetyEnvelope:
    robot_type: str
    joint_limits: dict[str, tuple[float, float]]
    workspace_min: tuple[float, float, float] | None = None
    workspace_max: tuple[float, float, float] | None = None
    robot_id: str | None = None
    recorded_at: str | None = None
    source: str = ""
    notes: dict[str, str] = field(default_factory=dict)
    # Reset target in robot units with "<motor>.pos" keys (what the episode reset drives to); optional.
    home_pose: dict[str, float] | None = None
    # Recorded poses at the envelope's edges ("<motor>.pos" keys) for `pirl calibrate check`; optional.
    waypoints: list[dict[str, float]] | None = None

    def validate(self) -> None:
        if not self.joint_limits:
            raise EnvelopeError(
                "safety envelope has no joint limits; record one with `pirl calibrate envelope`"
            )
        for name, lim in self.joint_limits.items():
            if len(lim) != 2 or not all(math.isfinite(v) for v in lim):
                raise EnvelopeError(f"joint limit for {name!r} must be two finite numbers, got {lim!r}")
            if lim[0] >= lim[1]:
                raise EnvelopeError(f"joint limit for {name!r} is empty or inverted: {lim[0]} >= {lim[1]}")
        if (self.workspace_min is None) != (self.workspace_max is None):
            raise EnvelopeError("workspace_min and workspace_max must both be set or both be null")
        if self.workspace_min is not None:
            lo, hi = self.workspace_min, self.workspace_max
            if len(lo) != 3 or len(hi) != 3 or any(a >= b for a, b in zip(lo, hi, strict=True)):
                raise EnvelopeError(f"workspace box must be 3-D with min < max, got {lo} .. {hi}")
        poses = [("home pose", self.home_pose or {})]
        poses += [(f"waypoint {i}", wp) for i, wp in enumerate(self.waypoints or [])]
        for what, pose in poses:
            for key, value in pose.items():
                joint = key.removesuffix(".pos")
                if joint not in self.joint_limits:
                    raise EnvelopeError(
                        f"{what} names {key!r}, which has no joint limit; use '<motor>.pos' keys"
                    )
                lo, hi = self.joint_limits[joint]
                if not (math.isfinite(value) and lo <= value <= hi):
                    raise EnvelopeError(f"{what} {key}={value} is outside the joint limit [{lo}, {hi}]")

    def save(self, path: str | Path) -> Path:
        """Atomic write (temp file + fsync + rename): a crash never leaves a half-written envelope."""
        self.validate()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = asdict(self)
        data["joint_limits"] = {k: list(v) for k, v in self.joint_limits.items()}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> SafetyEnvelope:
        path = Path(path)
        if not path.is_file():
            raise EnvelopeError(
                f"safety envelope {path} not found; record one with `pirl calibrate envelope`"
            )
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise EnvelopeError(f"safety envelope {path} is not valid JSON ({exc}); re-record it") from exc
        try:
            env = cls(
                robot_type=data["robot_type"],
                joint_limits={k: (float(v[0]), float(v[1])) for k, v in data["joint_limits"].items()},
                workspace_min=tuple(data["workspace_min"]) if data.get("workspace_min") else None,
                workspace_max=tuple(data["workspace_max"]) if data.get("workspace_max") else None,
                robot_id=data.get("robot_id"),
                recorded_at=data.get("recorded_at"),
                source=data.get("source", ""),
                notes=data.get("notes", {}),
                home_pose={k: float(v) for k, v in data["home_pose"].items()}
                if data.get("home_pose")
                else None,
                waypoints=[{k: float(v) for k, v in wp.items()} for wp in data["waypoints"]]
                if data.get("waypoints")
                else None,
            )
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise EnvelopeError(f"safety envelope {path} is malformed ({exc!r}); re-record it") from exc
        env.validate()
        return env
