"""Sim tasks: what is randomised at reset, what the policy may see of the world, and when it has succeeded.

A task owns the props it needs in the scene (`scene_spec`), samples its initial conditions from the
robot's seeded RNG (never numpy's global state), exposes its world state as extra float observation keys
(so a state-based policy can see the target) and answers `success`. Targets are sampled inside the
reachable workspace: every candidate is checked with the same IK the scripted expert uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mujoco
import numpy as np

from hardware import so101_model
from hardware.sim.ik import ArmIK
from hardware.sim.scene import CUBE_BODY, CUBE_HALF_SIZE, TARGET_BODY, SceneSpec


@dataclass
class SimTask:
    """Base task: an empty workcell, never succeeds. Subclasses override the hooks."""

    name = "none"

    def scene_spec(self) -> SceneSpec:
        return SceneSpec()

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

    def success(self) -> bool:
        return False

    def info(self) -> dict:
        return {"task": self.name, "success": self.success()}

    def ee_position(self) -> np.ndarray:
        return self.data.site_xpos[self._site_id()].copy()

    def _site_id(self) -> int:
        return self.model.site(so101_model.EE_SITE).id


@dataclass
class ReachTask(SimTask):
    """Bring the gripper frame within `tolerance_m` of a randomised target (a green marker in the scene)."""

    name = "reach"
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
        """A target the arm can reach (checked by IK from the home pose)."""
        if self._ik is None:
            self._ik = ArmIK()
            self._home_ee = self._ik.pose(so101_model.HOME_POSITION)[0]
        for _ in range(100):
            r = rng.uniform(*self.radius_m)
            a = math.radians(rng.uniform(*self.azimuth_deg))
            candidate = np.array([r * math.cos(a), r * math.sin(a), rng.uniform(*self.height_m)])
            if np.linalg.norm(candidate - self._home_ee) < self.min_start_distance_m:
                continue
            _, err = self._ik.solve(candidate, so101_model.HOME_POSITION)
            if err < 0.003:
                return candidate
        raise RuntimeError("could not sample a reachable reach target; check ReachTask ranges")

    def reset(self, rng: np.random.Generator) -> None:
        self.target = self.sample_target(rng)
        self.data.mocap_pos[self._mocap] = self.target

    def distance(self) -> float:
        return float(np.linalg.norm(self.ee_position() - self.target))

    def success(self) -> bool:
        return self.distance() <= self.tolerance_m

    def info(self) -> dict:
        return {**super().info(), "distance_m": self.distance(), "target": self.target.tolist()}


@dataclass
class PickCubeTask(SimTask):
    """Grasp a cube placed at a random pose on the floor and lift it `lift_m` above its resting height."""

    name = "pick_cube"
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
        r = rng.uniform(*self.radius_m)
        a = math.radians(rng.uniform(*self.azimuth_deg))
        yaw = math.radians(rng.uniform(*self.yaw_deg))
        self.data.qpos[self._qadr : self._qadr + 3] = [r * math.cos(a), r * math.sin(a), self.half_size]
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


TASKS: dict[str, type[SimTask]] = {"none": SimTask, "reach": ReachTask, "pick_cube": PickCubeTask}


def make_task(name: str) -> SimTask:
    if name not in TASKS:
        raise ValueError(f"unknown sim task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name]()
