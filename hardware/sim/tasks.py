"""Sim tasks: what is randomised at reset, what the policy may see of the world, and when it has succeeded.

A task owns the props it needs in the scene (`scene_spec` for the built-in ones, `add_to_scene` for its
own bodies), samples its initial conditions from the robot's seeded RNG (never numpy's global state),
exposes its world state as extra float observation keys (so a state-based policy can see the target) and
answers `success`. Targets are sampled inside the reachable workspace: every candidate is checked with the
same IK the scripted expert uses.

Tasks are found by name in one registry (`TASKS`, filled by `register_task`): `--robot.task=<name>` picks
one, and a task of your own needs only a `SimTask` subclass decorated with `@register_task`, in a module the
run imports (`--robot.task_module=<module or .py file>`). Nothing in the actor, learner or `pirl eval` names a
task: they see a LeRobot robot with more observation keys and a `task_success()` (docs/simulation.md, "Your
own task").

The randomized twin (`hardware/sim/randomization.py`) resizes, recolours and reweighs the body named by
`object_body`, calls `set_object_scale` and `nudge`, and with an envelope's workspace box calls
`set_workspace`: the hooks below say what a task does with each.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import mujoco
import numpy as np

from hardware import so101_model
from hardware.sim.ik import ArmIK
from hardware.sim.scene import CUBE_BODY, CUBE_HALF_SIZE, TARGET_BODY, SceneSpec

# name -> task class; `register_task` adds to it, `make_task` builds from it.
TASKS: dict[str, type[SimTask]] = {}


def register_task[S: SimTask](cls: type[S]) -> type[S]:
    """Class decorator: make `cls` (a `SimTask` subclass with a class attribute `name`) a sim task, so that
    `--robot.task=<name>` builds it. Registering the same class again is a no-op (a module imported twice);
    another class under a name already taken is refused (one line naming both)."""
    if not (isinstance(cls, type) and issubclass(cls, SimTask)):
        raise TypeError(f"register_task takes a SimTask subclass, got {cls!r}")
    name = cls.__dict__.get("name")
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ValueError(
            f"sim task {cls.__qualname__} needs its own class attribute `name` (a non-empty word)"
        )
    taken = TASKS.get(name)
    where = (cls.__module__, cls.__qualname__)  # a module imported again makes a new class of the same name
    if taken is not None and (taken.__module__, taken.__qualname__) != where:
        raise ValueError(
            f"sim task name {name!r} is taken by {taken.__module__}.{taken.__qualname__}; "
            f"give {cls.__module__}.{cls.__qualname__} another name"
        )
    TASKS[name] = cls
    return cls


@dataclass
class SimTask:
    """Base task: an empty workcell, never succeeds. Subclasses override the hooks."""

    name = "none"
    # The body the randomized twin treats as the task's object: its first geom is resized
    # (`object_size_scale`) and recoloured (`object_rgb_delta`), its mass scaled (`object_mass_scale`)
    # unless it is a mocap body. None: the twin randomizes no object.
    object_body: ClassVar[str | None] = None
    # (low, high) corners (m, base frame) start poses are drawn in (`set_workspace`); None: no box.
    workspace: ClassVar[tuple[np.ndarray, np.ndarray] | None] = None
    # motor -> (lo, hi) robot units a start pose must be reachable within (`set_workspace`); empty: the model's.
    joint_limits: ClassVar[dict[str, tuple[float, float]]] = {}

    def scene_spec(self) -> SceneSpec:
        """The built-in props this task wants (target marker, cube); its own bodies go in `add_to_scene`."""
        return SceneSpec()

    def add_to_scene(self, spec: mujoco.MjSpec) -> None:
        """Add this task's own bodies, geoms or sites to the workcell before it compiles (`spec.worldbody`
        is the world; the arm, floor, light, cameras and the `scene_spec` props are already in)."""

    def bind(self, model: mujoco.MjModel, data: mujoco.MjData) -> None:
        """Remember ids in the compiled model (called once after the scene is built)."""
        self.model, self.data = model, data

    def observation_features(self) -> dict[str, type]:
        return {}

    def observation(self) -> dict[str, float]:
        return {}

    def reset(self, rng: np.random.Generator) -> None:
        """Randomise the world (the arm is already at home, physics reset)."""

    def set_object_scale(self, scale: float) -> None:
        """The randomized twin resized the task's object (hardware/sim/randomization.py); 1 = nominal."""

    def nudge(self, dx: float, dy: float, dyaw_deg: float) -> None:
        """Shift the object's start pose after `reset` (domain randomization). No-op without a free object:
        reach targets are already drawn over the whole reachable range, and a nudge could leave it."""

    def set_workspace(
        self,
        low: np.ndarray | None,
        high: np.ndarray | None,
        joint_limits: dict[str, tuple[float, float]] | None = None,
    ) -> None:
        """Draw start poses only inside this box (m, base frame) and, where the task solves IK for them,
        only where the arm reaches them within `joint_limits`: the user's safety envelope
        (`randomize.envelope_from`). Kept as `self.workspace` (None without a box) and `self.joint_limits`;
        `in_workspace` tests a point against the box."""
        self.workspace = None if low is None else (np.asarray(low, float), np.asarray(high, float))
        self.joint_limits = dict(joint_limits or {})

    def in_workspace(self, point: np.ndarray, axes: slice = slice(0, 3)) -> bool:
        """Whether `point` lies in the workspace box (on `axes`; e.g. slice(0, 2): x and y only); True
        without a box."""
        box = self.workspace
        if box is None:
            return True
        p = np.asarray(point, dtype=float)[axes]
        return bool(np.all(p >= box[0][axes]) and np.all(p <= box[1][axes]))

    def success(self) -> bool:
        return False

    def info(self) -> dict:
        return {"task": self.name, "success": self.success()}

    def ee_position(self) -> np.ndarray:
        return self.data.site_xpos[self._site_id()].copy()

    def _site_id(self) -> int:
        return self.model.site(so101_model.EE_SITE).id


@register_task
@dataclass
class ReachTask(SimTask):
    """Bring the gripper frame within `tolerance_m` of a randomised target (a green marker in the scene)."""

    name = "reach"
    object_body = TARGET_BODY
    tolerance_m: float = 0.025  # success radius around the target
    radius_m: tuple[float, float] = (0.14, 0.28)  # horizontal distance of targets from the base axis
    azimuth_deg: tuple[float, float] = (-50.0, 50.0)  # targets in front of the arm (0 = straight ahead)
    height_m: tuple[float, float] = (0.04, 0.18)  # target height above the floor
    # Targets closer than this to the gripper's home position are redrawn: an episode must not start solved.
    min_start_distance_m: float = 0.05

    def __post_init__(self) -> None:
        self._ik: ArmIK | None = None
        self.target = np.array([0.2, 0.0, 0.1])

    def scene_spec(self) -> SceneSpec:
        return SceneSpec(target_marker=True)

    def bind(self, model: mujoco.MjModel, data: mujoco.MjData) -> None:
        super().bind(model, data)
        self._mocap = model.body(TARGET_BODY).mocapid[0]

    def observation_features(self) -> dict[str, type]:
        return {"target.x": float, "target.y": float, "target.z": float}

    def observation(self) -> dict[str, float]:
        x, y, z = (float(v) for v in self.target)
        return {"target.x": x, "target.y": y, "target.z": z}

    def sample_target(self, rng: np.random.Generator) -> np.ndarray:
        """A target the arm can reach (checked by IK from the home pose), inside the workspace box if set."""
        if self._ik is None:
            self._ik = ArmIK()
            self._home_ee = self._ik.pose(so101_model.HOME_POSITION)[0]
        for _ in range(100 if self.workspace is None and not self.joint_limits else 1000):
            r = rng.uniform(*self.radius_m)
            a = math.radians(rng.uniform(*self.azimuth_deg))
            candidate = np.array([r * math.cos(a), r * math.sin(a), rng.uniform(*self.height_m)])
            if np.linalg.norm(candidate - self._home_ee) < self.min_start_distance_m:
                continue
            if not self.in_workspace(candidate):
                continue
            joints, err = self._ik.solve(candidate, so101_model.HOME_POSITION)
            if err < 0.003 and all(lo <= joints[m] <= hi for m, (lo, hi) in self.joint_limits.items()):
                return candidate
        raise RuntimeError(
            "could not sample a reachable reach target; check ReachTask ranges, the workspace box "
            f"{self.workspace} and the joint limits {self.joint_limits}"
        )

    def reset(self, rng: np.random.Generator) -> None:
        self.target = self.sample_target(rng)
        self.data.mocap_pos[self._mocap] = self.target

    def distance(self) -> float:
        return float(np.linalg.norm(self.ee_position() - self.target))

    def success(self) -> bool:
        return self.distance() <= self.tolerance_m

    def info(self) -> dict:
        return {**super().info(), "distance_m": self.distance(), "target": self.target.tolist()}


@register_task
@dataclass
class PickCubeTask(SimTask):
    """Grasp a cube placed at a random pose on the floor and lift it `lift_m` above its resting height."""

    name = "pick_cube"
    object_body = CUBE_BODY
    lift_m: float = 0.04  # success when the cube's centre is this far above its resting height
    radius_m: tuple[float, float] = (0.16, 0.26)  # cube distance from the base axis
    azimuth_deg: tuple[float, float] = (-35.0, 35.0)
    yaw_deg: tuple[float, float] = (-45.0, 45.0)  # cube rotation about z
    half_size: float = CUBE_HALF_SIZE  # m; the cube's half edge (its resting height), set by the twin's scale

    def scene_spec(self) -> SceneSpec:
        return SceneSpec(cube=True)

    def bind(self, model: mujoco.MjModel, data: mujoco.MjData) -> None:
        super().bind(model, data)
        joint = model.joint(CUBE_BODY)
        self._qadr = joint.qposadr[0]
        self._vadr = joint.dofadr[0]
        self._body = model.body(CUBE_BODY).id

    def observation_features(self) -> dict[str, type]:
        return {"cube.x": float, "cube.y": float, "cube.z": float, "cube.yaw": float}

    def cube_pose(self) -> tuple[np.ndarray, float]:
        """Cube centre (m) and yaw (deg, folded to [-45, 45) since the cube is 4-fold symmetric)."""
        pos = self.data.xpos[self._body].copy()
        w, x, y, z = self.data.xquat[self._body]
        yaw = math.degrees(math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))
        yaw = (yaw + 45.0) % 90.0 - 45.0
        return pos, yaw

    def observation(self) -> dict[str, float]:
        pos, yaw = self.cube_pose()
        return {"cube.x": float(pos[0]), "cube.y": float(pos[1]), "cube.z": float(pos[2]), "cube.yaw": yaw}

    def reset(self, rng: np.random.Generator) -> None:
        for _ in range(1000):  # with a workspace box: redrawn until the cube's x, y lie inside it
            r = rng.uniform(*self.radius_m)
            a = math.radians(rng.uniform(*self.azimuth_deg))
            yaw = math.radians(rng.uniform(*self.yaw_deg))
            xy = np.array([r * math.cos(a), r * math.sin(a)])
            if self.in_workspace(xy, slice(0, 2)):
                break
        else:
            raise RuntimeError(
                f"no cube start inside the workspace box {self.workspace}; check PickCubeTask ranges"
            )
        self.data.qpos[self._qadr : self._qadr + 3] = [xy[0], xy[1], self.half_size]
        self.data.qpos[self._qadr + 3 : self._qadr + 7] = [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]
        self.data.qvel[self._vadr : self._vadr + 6] = 0.0

    def set_object_scale(self, scale: float) -> None:
        self.half_size = CUBE_HALF_SIZE * scale

    def nudge(self, dx: float, dy: float, dyaw_deg: float) -> None:
        q = self.data.qpos
        q[self._qadr] += dx
        q[self._qadr + 1] += dy
        turn = np.array(
            [math.cos(math.radians(dyaw_deg) / 2), 0.0, 0.0, math.sin(math.radians(dyaw_deg) / 2)]
        )
        quat = np.zeros(4)
        mujoco.mju_mulQuat(quat, turn, q[self._qadr + 3 : self._qadr + 7].copy())
        q[self._qadr + 3 : self._qadr + 7] = quat

    def height(self) -> float:
        return float(self.data.xpos[self._body][2])

    def success(self) -> bool:
        return self.height() >= self.half_size + self.lift_m

    def info(self) -> dict:
        pos, yaw = self.cube_pose()
        return {
            **super().info(),
            "cube": pos.tolist(),
            "cube_yaw_deg": yaw,
            "lift_m": pos[2] - self.half_size,
        }


register_task(SimTask)


def import_task_module(module: str) -> None:
    """Import the module that registers a task of your own (`--robot.task_module`): a dotted module name
    on the Python path (`my_tasks.stack`) or a `.py` file (`tasks/stack.py`, relative to the working folder).
    Importing runs its `@register_task` decorators; importing it again is a no-op."""
    if module.endswith(".py"):
        path = Path(module).expanduser().resolve()
        if not path.is_file():
            raise ValueError(f"robot.task_module: {module} is not a file")
        name = f"pirl_sim_task_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"
        if name in sys.modules:
            return
        spec = importlib.util.spec_from_file_location(name, path)
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[name] = loaded
        try:
            spec.loader.exec_module(loaded)
        except BaseException:
            del sys.modules[name]
            raise
        return
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise ValueError(f"robot.task_module: cannot import {module!r} ({exc})") from None


def make_task(name: str) -> SimTask:
    """A new instance of the task registered as `name` (one line naming the known ones otherwise)."""
    if name not in TASKS:
        raise ValueError(
            f"unknown sim task {name!r}; choose one of {sorted(TASKS)} (a task of your own: "
            "@register_task in a module named by --robot.task_module)"
        )
    return TASKS[name]()
