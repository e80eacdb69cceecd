"""Domain randomization of the simulated SO-101: a different, plausible twin of the arm at every episode.

A policy trained in one nominal simulator learns its quirks; one trained over a *distribution* of arms,
cameras and lights has a better chance on the one real arm it finally meets (issue "Train in the twin,
finish on the arm"). `RandomizationConfig` (`--robot.randomize.*`) defines that distribution: every
parameter is a `[low, high]` range, sampled uniformly at each episode reset from the robot's own seeded
RNG (never numpy's global state), so the same seed gives the same sequence of twins. Off by default: a
robot without it behaves bit-identically to the nominal simulator.

`SimParams` is one draw (what one episode's arm, camera and light are); `TwinModel` writes the model-side
part of it (gains, damping, cameras, light, colours, object size and mass) into a compiled `MjModel` and
restores the nominal values first, so draws never accumulate. The servo-side part (calibration offsets,
latency, backlash, control-period jitter) lives in the follower's command path
(`hardware/sim/so101_follower.py`), where a real arm's controller would have it.

`centre_from` centres the calibration offsets on the user's own arm: LeRobot's calibration JSON (what
`pirl calibrate` writes) implies by how much each joint's degree reading is off at the calibration pose
(`calibration_offsets`). `envelope_from` centres the task on the user's safety envelope (what
`pirl calibrate envelope` writes): object and target start poses are drawn inside its workspace box, reach
targets only where the arm reaches them within its joint limits (`envelope_region`). Both readers live in
`hardware/sim/centring.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import mujoco
import numpy as np

from hardware import so101_model
from hardware.sim.centring import EnvelopeRegion, calibration_offsets, envelope_region
from hardware.sim.scene import FLOOR_MATERIAL, SCENE_CAMERAS, SCENE_LIGHT

__all__ = ["RandomizationConfig", "SimParams", "TwinModel", "calibration_offsets", "envelope_region"]

# Scalar parameters: name -> what it scales or shifts (used in errors and `outside`).
_SCALAR_RANGES = (
    "kp_scale",
    "latency_steps",
    "backlash_deg",
    "damping_scale",
    "friction_scale",
    "object_size_scale",
    "object_mass_scale",
    "light_scale",
    "period_jitter",
)
# Vector parameters: each component is sampled from the same range.
_VECTOR_RANGES = (
    "object_xy_jitter_m",
    "object_yaw_jitter_deg",
    "camera_pos_jitter_m",
    "camera_rot_jitter_deg",
    "camera_fovy_deg",
    "light_dir_deg",
    "object_rgb_delta",
    "table_rgb_delta",
)


@dataclass
class RandomizationConfig:
    """The training distribution of twins (`--robot.randomize.*`); every range is `[low, high]`, uniform."""

    # Master switch of the twin draws; false (and no envelope_from) = the nominal simulator, bit-identical to
    # having no section.
    enable: bool = False
    # LeRobot calibration JSON of the user's own arm (`pirl calibrate` writes it under
    # ~/.cache/huggingface/lerobot/calibration/robots/<type>/<id>.json); the offsets it implies
    # (`calibration_offsets`) centre `joint_offset_deg`. null = every joint centred on 0.
    centre_from: str | None = None
    # Safety envelope JSON of the user's arm (`pirl calibrate envelope --output=...`, the real run's
    # safety.envelope_path): object/target start poses are drawn inside its workspace box (cube: x and y; reach
    # target: x, y, z) and reach targets only where IK reaches them within its joint limits. Applies with or
    # without `enable` (the stand-in and `pirl eval` then draw from the same region). null = the task's ranges.
    envelope_from: str | None = None
    # Extra per-joint centre (deg; gripper in its 0..100 units), added to centre_from's, e.g. {"elbow_flex": 1}.
    joint_offset_centre: dict[str, float] = field(default_factory=dict)
    # Calibration offset per joint around its centre: the arm reads true + offset and drives to goal - offset,
    # like a miscalibrated real arm (gripper: the same numbers in 0..100 units).
    joint_offset_deg: tuple[float, float] = (-2.0, 2.0)
    kp_scale: tuple[float, float] = (0.8, 1.25)  # servo tracking gain: the position actuators' kp, scaled
    latency_steps: tuple[int, int] = (0, 1)  # actions reach the servos k control periods late (integers)
    backlash_deg: tuple[float, float] = (0.0, 0.6)  # deadband: the goal must move this far to turn the joint
    damping_scale: tuple[float, float] = (0.7, 1.4)  # joint damping (the arm's six joints), scaled
    friction_scale: tuple[float, float] = (0.5, 2.0)  # joint dry friction (frictionloss), scaled
    object_size_scale: tuple[float, float] = (0.9, 1.1)  # the cube (pick_cube) or target marker (reach)
    object_mass_scale: tuple[float, float] = (0.7, 1.5)  # the cube's mass (reach's marker has none)
    object_xy_jitter_m: tuple[float, float] = (-0.01, 0.01)  # cube start, x and y, on top of the task's
    object_yaw_jitter_deg: tuple[float, float] = (-10.0, 10.0)  # cube start yaw, on top of the task's
    camera_pos_jitter_m: tuple[float, float] = (-0.01, 0.01)  # every scene camera, per axis of its position
    camera_rot_jitter_deg: tuple[float, float] = (-2.0, 2.0)  # every scene camera, per axis of its own frame
    camera_fovy_deg: tuple[float, float] = (-3.0, 3.0)  # added to every scene camera's vertical field of view
    light_scale: tuple[float, float] = (0.6, 1.4)  # intensity of the scene light and the headlight
    light_dir_deg: tuple[float, float] = (-20.0, 20.0)  # scene light tilt from straight down, about x and y
    object_rgb_delta: tuple[float, float] = (-0.15, 0.15)  # per channel, added to the object's colour
    table_rgb_delta: tuple[float, float] = (-0.1, 0.1)  # per channel, added to the floor's colour
    # Control-period jitter amplitude a (lockstep only): each period lasts nominal x (1 + u), u ~ U(-a, a),
    # in whole 2 ms physics steps; a itself is drawn per episode from this range.
    period_jitter: tuple[float, float] = (0.0, 0.1)

    def __post_init__(self) -> None:
        for name in ("joint_offset_deg", *_SCALAR_RANGES, *_VECTOR_RANGES):
            value = getattr(self, name)
            try:
                lo, hi = (float(v) for v in value)
            except (TypeError, ValueError):
                raise ValueError(f"randomize.{name} must be [low, high], got {value!r}") from None
            if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                raise ValueError(f"randomize.{name} must be finite with low <= high, got {value!r}")
            setattr(self, name, (lo, hi))
        if self.latency_steps[0] < 0 or not all(float(v).is_integer() for v in self.latency_steps):
            raise ValueError(
                f"randomize.latency_steps must be non-negative integers, got {self.latency_steps}"
            )
        self.latency_steps = (int(self.latency_steps[0]), int(self.latency_steps[1]))
        for name in ("kp_scale", "damping_scale", "friction_scale", "object_size_scale", "object_mass_scale"):
            if getattr(self, name)[0] <= 0:
                raise ValueError(f"randomize.{name} must be positive, got {getattr(self, name)}")
        for name, lo in (("backlash_deg", 0.0), ("light_scale", 0.0), ("period_jitter", 0.0)):
            if getattr(self, name)[0] < lo:
                raise ValueError(f"randomize.{name} must be >= {lo}, got {getattr(self, name)}")
        if self.period_jitter[1] >= 0.5:
            raise ValueError(f"randomize.period_jitter must stay below 0.5, got {self.period_jitter}")
        unknown = set(self.joint_offset_centre) - set(so101_model.MOTORS)
        if unknown:
            raise ValueError(
                f"randomize.joint_offset_centre has unknown joints {sorted(unknown)}; "
                f"expected {list(so101_model.MOTORS)}"
            )
        if self.centre_from is not None:
            calibration_offsets(self.centre_from)  # a missing or malformed file fails at config time
        if self.envelope_from is not None:
            envelope_region(self.envelope_from)

    def region(self) -> EnvelopeRegion | None:
        """The task region `envelope_from` implies (None without one)."""
        return envelope_region(self.envelope_from) if self.envelope_from else None

    def offset_centre(self) -> dict[str, float]:
        """Per-joint centre of the calibration offsets: centre_from's, plus joint_offset_centre."""
        base = calibration_offsets(self.centre_from) if self.centre_from else {}
        return {m: base.get(m, 0.0) + float(self.joint_offset_centre.get(m, 0.0)) for m in so101_model.MOTORS}

    def sample(self, rng: np.random.Generator) -> SimParams:
        """One twin, drawn from `rng` in a fixed order (so a seed fixes the whole sequence)."""

        def u(name: str, size: int | None = None):
            lo, hi = getattr(self, name)
            return rng.uniform(lo, hi, size)

        centre = self.offset_centre()
        offsets = u("joint_offset_deg", len(so101_model.MOTORS))
        return SimParams(
            joint_offset={m: centre[m] + float(o) for m, o in zip(so101_model.MOTORS, offsets, strict=True)},
            kp_scale=float(u("kp_scale")),
            latency_steps=int(rng.integers(self.latency_steps[0], self.latency_steps[1] + 1)),
            backlash_deg=float(u("backlash_deg")),
            damping_scale=float(u("damping_scale")),
            friction_scale=float(u("friction_scale")),
            object_size_scale=float(u("object_size_scale")),
            object_mass_scale=float(u("object_mass_scale")),
            object_xy_jitter_m=tuple(float(v) for v in u("object_xy_jitter_m", 2)),
            object_yaw_jitter_deg=float(u("object_yaw_jitter_deg")),
            camera_pos_jitter_m={
                c: tuple(float(v) for v in u("camera_pos_jitter_m", 3)) for c in SCENE_CAMERAS
            },
            camera_rot_jitter_deg={
                c: tuple(float(v) for v in u("camera_rot_jitter_deg", 3)) for c in SCENE_CAMERAS
            },
            camera_fovy_deg={c: float(u("camera_fovy_deg")) for c in SCENE_CAMERAS},
            light_scale=float(u("light_scale")),
            light_dir_deg=tuple(float(v) for v in u("light_dir_deg", 2)),
            object_rgb_delta=tuple(float(v) for v in u("object_rgb_delta", 3)),
            table_rgb_delta=tuple(float(v) for v in u("table_rgb_delta", 3)),
            period_jitter=float(u("period_jitter")),
            period_seed=int(rng.integers(2**63)),
        )

    def centre(self) -> SimParams:
        """The distribution's centre: every range at its midpoint, offsets at their per-joint centre."""
        mid = {
            name: sum(getattr(self, name)) / 2
            for name in ("joint_offset_deg", *_SCALAR_RANGES, *_VECTOR_RANGES)
        }
        centre = self.offset_centre()
        return SimParams(
            joint_offset={m: centre[m] + mid["joint_offset_deg"] for m in so101_model.MOTORS},
            kp_scale=mid["kp_scale"],
            latency_steps=round(mid["latency_steps"]),
            backlash_deg=mid["backlash_deg"],
            damping_scale=mid["damping_scale"],
            friction_scale=mid["friction_scale"],
            object_size_scale=mid["object_size_scale"],
            object_mass_scale=mid["object_mass_scale"],
            object_xy_jitter_m=(mid["object_xy_jitter_m"],) * 2,
            object_yaw_jitter_deg=mid["object_yaw_jitter_deg"],
            camera_pos_jitter_m={c: (mid["camera_pos_jitter_m"],) * 3 for c in SCENE_CAMERAS},
            camera_rot_jitter_deg={c: (mid["camera_rot_jitter_deg"],) * 3 for c in SCENE_CAMERAS},
            camera_fovy_deg={c: mid["camera_fovy_deg"] for c in SCENE_CAMERAS},
            light_scale=mid["light_scale"],
            light_dir_deg=(mid["light_dir_deg"],) * 2,
            object_rgb_delta=(mid["object_rgb_delta"],) * 3,
            table_rgb_delta=(mid["table_rgb_delta"],) * 3,
            period_jitter=mid["period_jitter"],
        )

    def outside(self, params: SimParams) -> list[str]:
        """Names of the parameters of `params` that this distribution never draws (empty: inside)."""
        out = []
        centre = self.offset_centre()
        lo, hi = self.joint_offset_deg
        for m, value in params.joint_offset.items():
            if not centre[m] + lo - 1e-9 <= value <= centre[m] + hi + 1e-9:
                out.append(f"joint_offset[{m}]")
        for name in (*_SCALAR_RANGES, *_VECTOR_RANGES):
            lo, hi = getattr(self, name)
            value = getattr(params, name)
            values = value.values() if isinstance(value, dict) else [value]
            flat = [float(x) for v in values for x in np.atleast_1d(v)]
            if any(not lo - 1e-9 <= x <= hi + 1e-9 for x in flat):
                out.append(name)
        return out


@dataclass(frozen=True)
class SimParams:
    """One twin: the values one episode runs with. Defaults are the nominal simulator."""

    joint_offset: dict[str, float] = field(default_factory=lambda: dict.fromkeys(so101_model.MOTORS, 0.0))
    kp_scale: float = 1.0
    latency_steps: int = 0
    backlash_deg: float = 0.0
    damping_scale: float = 1.0
    friction_scale: float = 1.0
    object_size_scale: float = 1.0
    object_mass_scale: float = 1.0
    object_xy_jitter_m: tuple[float, float] = (0.0, 0.0)
    object_yaw_jitter_deg: float = 0.0
    camera_pos_jitter_m: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # camera -> xyz
    camera_rot_jitter_deg: dict[str, tuple[float, float, float]] = field(
        default_factory=dict
    )  # rotation vector
    camera_fovy_deg: dict[str, float] = field(default_factory=dict)
    light_scale: float = 1.0
    light_dir_deg: tuple[float, float] = (0.0, 0.0)
    object_rgb_delta: tuple[float, float, float] = (0.0, 0.0, 0.0)
    table_rgb_delta: tuple[float, float, float] = (0.0, 0.0, 0.0)
    period_jitter: float = 0.0
    period_seed: int = 0  # seeds this episode's control-period jitter

    def as_dict(self) -> dict:
        """Plain values (for logs and task_info)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _rotation_quat(rotvec_deg: tuple[float, ...]) -> np.ndarray:
    vec = np.radians(np.asarray(rotvec_deg, dtype=float))
    angle = float(np.linalg.norm(vec))
    quat = np.array([1.0, 0.0, 0.0, 0.0])
    if angle > 0:
        mujoco.mju_axisAngle2Quat(quat, vec / angle, angle)
    return quat


class TwinModel:
    """Writes the model-side part of `SimParams` into a compiled model; `apply(None)` restores nominal.

    `object_body` (the task's `SimTask.object_body`) is the object: its first geom is resized and recoloured,
    its mass and inertia scaled unless it is a mocap body (a marker has no mass)."""

    def __init__(
        self, model: mujoco.MjModel, actuators: np.ndarray, dofs: np.ndarray, object_body: str | None = None
    ) -> None:
        self.model = model
        self._act, self._dof = actuators, dofs
        self._object_geom = self._cube_body = None
        if object_body is not None:
            if not _has_body(model, object_body):
                raise ValueError(f"the task's object_body {object_body!r} is not a body of the scene")
            body = model.body(object_body)
            if body.geomnum[0] < 1:
                raise ValueError(f"the task's object_body {object_body!r} has no geom to randomize")
            self._object_geom = int(body.geomadr[0])
            self._cube_body = body.id if body.mocapid[0] < 0 and model.body_mass[body.id] > 0 else None
        self._cams = [model.camera(c).id for c in SCENE_CAMERAS]
        self._light = model.light(SCENE_LIGHT).id
        self._floor = model.material(FLOOR_MATERIAL).id
        m = model
        self._nominal = {
            "gain": m.actuator_gainprm[self._act, 0].copy(),
            "bias": m.actuator_biasprm[self._act, 1].copy(),
            "damping": m.dof_damping[self._dof].copy(),
            "friction": m.dof_frictionloss[self._dof].copy(),
            "cam_pos": m.cam_pos.copy(),
            "cam_quat": m.cam_quat.copy(),
            "cam_fovy": m.cam_fovy.copy(),
            "light_diffuse": m.light_diffuse.copy(),
            "light_dir": m.light_dir.copy(),
            "headlight": m.vis.headlight.diffuse.copy(),
            "floor_rgba": m.mat_rgba[self._floor].copy(),
        }
        if self._object_geom is not None:
            g = self._object_geom
            self._nominal.update(
                obj_size=m.geom_size[g].copy(),
                obj_rbound=float(m.geom_rbound[g]),
                obj_aabb=m.geom_aabb[g].copy(),
                obj_rgba=m.geom_rgba[g].copy(),
            )
        if self._cube_body is not None:
            b = self._cube_body
            self._nominal.update(mass=float(m.body_mass[b]), inertia=m.body_inertia[b].copy())
        self._dirty = False

    def restore(self) -> None:
        if not self._dirty:
            return
        m, n = self.model, self._nominal
        m.actuator_gainprm[self._act, 0] = n["gain"]
        m.actuator_biasprm[self._act, 1] = n["bias"]
        m.dof_damping[self._dof] = n["damping"]
        m.dof_frictionloss[self._dof] = n["friction"]
        m.cam_pos[:] = n["cam_pos"]
        m.cam_quat[:] = n["cam_quat"]
        m.cam_fovy[:] = n["cam_fovy"]
        m.light_diffuse[:] = n["light_diffuse"]
        m.light_dir[:] = n["light_dir"]
        m.vis.headlight.diffuse[:] = n["headlight"]
        m.mat_rgba[self._floor] = n["floor_rgba"]
        if self._object_geom is not None:
            g = self._object_geom
            m.geom_size[g], m.geom_rbound[g] = n["obj_size"], n["obj_rbound"]
            m.geom_aabb[g], m.geom_rgba[g] = n["obj_aabb"], n["obj_rgba"]
        if self._cube_body is not None:
            m.body_mass[self._cube_body] = n["mass"]
            m.body_inertia[self._cube_body] = n["inertia"]
        self._dirty = False

    def apply(self, params: SimParams | None) -> None:
        """Nominal values, then `params` on top (None: nominal only, and nothing written if already so)."""
        self.restore()
        if params is None:
            return
        self._dirty = True
        m, n = self.model, self._nominal
        m.actuator_gainprm[self._act, 0] = n["gain"] * params.kp_scale
        m.actuator_biasprm[self._act, 1] = n["bias"] * params.kp_scale
        m.dof_damping[self._dof] = n["damping"] * params.damping_scale
        m.dof_frictionloss[self._dof] = n["friction"] * params.friction_scale
        for name, cam in zip(SCENE_CAMERAS, self._cams, strict=True):
            m.cam_pos[cam] = n["cam_pos"][cam] + np.asarray(params.camera_pos_jitter_m.get(name, (0, 0, 0)))
            quat = np.zeros(4)
            mujoco.mju_mulQuat(
                quat, n["cam_quat"][cam], _rotation_quat(params.camera_rot_jitter_deg.get(name, (0, 0, 0)))
            )
            m.cam_quat[cam] = quat
            m.cam_fovy[cam] = n["cam_fovy"][cam] + params.camera_fovy_deg.get(name, 0.0)
        m.light_diffuse[self._light] = np.clip(n["light_diffuse"][self._light] * params.light_scale, 0, 1)
        m.vis.headlight.diffuse[:] = np.clip(n["headlight"] * params.light_scale, 0, 1)
        tilt = _rotation_quat((params.light_dir_deg[0], params.light_dir_deg[1], 0.0))
        direction = np.zeros(3)
        mujoco.mju_rotVecQuat(direction, n["light_dir"][self._light], tilt)
        m.light_dir[self._light] = direction
        m.mat_rgba[self._floor, :3] = np.clip(n["floor_rgba"][:3] + params.table_rgb_delta, 0, 1)
        if self._object_geom is not None:
            g, s = self._object_geom, params.object_size_scale
            m.geom_size[g] = n["obj_size"] * s
            m.geom_rbound[g] = n["obj_rbound"] * s
            m.geom_aabb[g] = np.concatenate([n["obj_aabb"][:3] * s, n["obj_aabb"][3:] * s])
            m.geom_rgba[g, :3] = np.clip(n["obj_rgba"][:3] + params.object_rgb_delta, 0, 1)
        if self._cube_body is not None:
            mass = params.object_mass_scale
            m.body_mass[self._cube_body] = n["mass"] * mass
            m.body_inertia[self._cube_body] = n["inertia"] * mass * params.object_size_scale**2


def _has_body(model: mujoco.MjModel, name: str) -> bool:
    return mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, name) >= 0
