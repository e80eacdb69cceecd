"""Simulated SO-101 follower: LeRobot's `Robot` interface over MuJoCo, indistinguishable to the actor.

Same motor names, units (degrees with `use_degrees=True`, gripper 0..100) and observation/action keys as
LeRobot's `so101_follower`; switching a config between sim and real is one line (`type: sim_so101` vs
`type: so101_follower`). The joints are driven by the model's position actuators (the STS3215's
position loop, with its torque limit), so a goal is tracked over a few hundred milliseconds with gravity
sag, not teleported.

Two clocks:
- lockstep (`realtime=False`, the default for the demo and tests): each `send_action` advances physics by
  exactly one control period (`round(1 / (fps * 2 ms))` physics steps), so training runs as fast as the
  CPU allows; `get_observation` returns the state after the last step.
- real time (`realtime=True`): physics follows the wall clock like a real arm; every call first catches
  the simulation up to "now" (at most `max_catchup_s` at once, so a stalled process does not fast-forward).

Sim-only extras (reset, task success, task info) are described by `hardware.sim.protocol.SimTaskRobot`.

A randomized twin (`randomize.enable=true`, `hardware/sim/randomization.py`) or the held-out stand-in arm
(`variant="stand_in"`, `hardware/sim/stand_in.py`) changes the arm, cameras, light and object at each
reset; the calibration offsets, latency, backlash and control-period jitter live in this file's command
path, as they would in a real arm's controller. With neither, that path is never entered: the nominal
simulator runs exactly as it did before they existed.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import mujoco
import numpy as np
from lerobot.cameras import CameraConfig
from lerobot.robots import Robot, RobotConfig
from lerobot.robots.utils import ensure_safe_goal_position
from lerobot.utils.decorators import check_if_already_connected, check_if_not_connected

from hardware import so101_model
from hardware.sim.cameras import SimCamera, SimCameraConfig
from hardware.sim.randomization import RandomizationConfig, SimParams, TwinModel
from hardware.sim.scene import build_model
from hardware.sim.stand_in import VARIANTS
from hardware.sim.tasks import import_task_module, make_task

logger = logging.getLogger(__name__)


@RobotConfig.register_subclass("sim_so101")
@dataclass(kw_only=True)
class SimSO101FollowerConfig(RobotConfig):
    # Sim task: "reach", "pick_cube", "none" (empty workcell) or one registered by task_module
    # (hardware/sim/tasks.py `register_task`; docs/simulation.md, "Your own task").
    task: str = "reach"
    # Module that registers a task of your own, imported before `task` is looked up: a dotted name on the
    # Python path or a .py file. null = only the built-in tasks.
    task_module: str | None = None
    # Cameras by observation key, e.g. {"front": SimCameraConfig(camera="front")}; empty = state-only.
    cameras: dict[str, CameraConfig] = field(default_factory=dict)
    fps: int = 30  # control rate (Hz): one send_action = one control period in lockstep mode
    realtime: bool = False  # True: physics follows the wall clock; False: lockstep, one period per action
    seed: int = 0  # seed of the sim's own RNG (task randomisation at connect and at reset(seed=None))
    # Same meaning as so101_follower: cap on |goal - present| per action (deg / gripper units); None = off.
    max_relative_target: float | dict[str, float] | None = None
    use_degrees: bool = True  # must stay True: the sim speaks degrees like so101_follower(use_degrees=True)
    max_catchup_s: float = 0.25  # realtime only: most simulated time advanced in one catch-up
    # Domain randomization (`--robot.randomize.enable=true`, ranges `--robot.randomize.<name>=[lo,hi]`): a new
    # twin of the arm, cameras, light and object at every reset, drawn from this robot's seeded RNG.
    randomize: RandomizationConfig = field(default_factory=RandomizationConfig)
    # "default" (the nominal sim) or "stand_in": the fixed held-out arm that plays the real one
    # (hardware/sim/stand_in.py); it cannot be combined with randomize.enable.
    variant: str = "default"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.use_degrees:
            raise ValueError("sim_so101 only supports use_degrees=True (degrees, gripper 0..100)")
        if self.fps <= 0:
            raise ValueError(f"sim_so101 fps must be positive, got {self.fps}")
        for key, cam in self.cameras.items():
            if not isinstance(cam, SimCameraConfig):
                raise ValueError(
                    f"sim_so101 camera {key!r} has type {getattr(cam, 'type', type(cam).__name__)!r}; "
                    "the simulator renders only cameras of type 'sim_mujoco'"
                )
        if self.task_module:
            import_task_module(self.task_module)
        make_task(self.task)  # validates the task name early
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown sim_so101 variant {self.variant!r}; choose one of {sorted(VARIANTS)}")
        if self.variant != "default" and self.randomize.enable:
            raise ValueError(
                f"sim_so101 variant {self.variant!r} is one fixed arm; it cannot be combined with "
                "randomize.enable=true (the training distribution)"
            )


class SimSO101Follower(Robot):
    """MuJoCo SO-101 behind LeRobot's Robot interface; see the module docstring for the clocks."""

    config_class = SimSO101FollowerConfig
    name = "sim_so101"
    PHYSICS_DT = 0.002  # s, the arm model's timestep

    def __init__(self, config: SimSO101FollowerConfig):
        # Robot.__init__ would create (and read) a calibration folder under the user's LeRobot home; a
        # simulated arm has no calibration, so set the same attributes without touching the disk.
        self.robot_type = self.name
        self.id = config.id
        self.calibration_dir = config.calibration_dir or Path("/nonexistent/pirl-sim-has-no-calibration")
        self.calibration_fpath = self.calibration_dir / f"{self.id}.json"
        self.calibration = {}
        self.config = config
        self.task = make_task(config.task)
        self.rng = np.random.default_rng(config.seed)
        self.substeps = max(1, round(1.0 / (config.fps * self.PHYSICS_DT)))
        self._lock = threading.RLock()
        self.model: mujoco.MjModel | None = None
        self.data: mujoco.MjData | None = None
        self.cameras: dict[str, SimCamera] = {}
        self._wall_anchor = 0.0
        self._sim_anchor = 0.0
        self._limits = so101_model.motor_limits()
        self._twin: TwinModel | None = None
        self._params: SimParams | None = None  # this episode's twin; None = nominal, untouched command path
        self._offset = np.zeros(len(so101_model.MOTORS))  # calibration offset per motor (robot units)
        self._command: dict[str, float] = {}  # last goal per motor, robot units (twin only)
        self._pending: deque[np.ndarray] = deque()  # latency: goals (rad) not yet at the servos
        self._play = np.zeros(len(so101_model.MOTORS))  # backlash: where the gear train holds the joint (rad)
        self._period_rng = np.random.default_rng(0)

    # ---- LeRobot Robot interface -------------------------------------------------------------------
    @cached_property
    def observation_features(self) -> dict[str, type | tuple]:
        motors = {f"{m}.pos": float for m in so101_model.MOTORS}
        cams = {key: (cam.height, cam.width, 3) for key, cam in self.config.cameras.items()}
        return {**motors, **self.task.observation_features(), **cams}

    @cached_property
    def action_features(self) -> dict[str, type]:
        return {f"{m}.pos": float for m in so101_model.MOTORS}

    @property
    def is_connected(self) -> bool:
        return self.data is not None

    @property
    def is_calibrated(self) -> bool:
        return True

    def calibrate(self) -> None:
        """No-op: the simulated encoders are calibrated by construction (model zero = LeRobot zero)."""

    def configure(self) -> None:
        """No-op: the position loop's gains live in the MJCF (the STS3215 class)."""

    @check_if_already_connected
    def connect(self, calibrate: bool = True) -> None:
        spec = self.task.scene_spec()
        widths = [c.width for c in self.config.cameras.values()] or [spec.max_render_width]
        heights = [c.height for c in self.config.cameras.values()] or [spec.max_render_height]
        spec = replace(
            spec,
            max_render_width=max(widths),
            max_render_height=max(heights),
            # Nothing renders a state-only arm: skip building the light visual meshes.
            visual_mesh_cell_m=spec.visual_mesh_cell_m if self.config.cameras else 0.0,
        )
        model = build_model(spec, self.task.add_to_scene)
        data = mujoco.MjData(model)
        self._qadr = np.array([model.joint(m).qposadr[0] for m in so101_model.MOTORS])
        self._vadr = np.array([model.joint(m).dofadr[0] for m in so101_model.MOTORS])
        self._act = np.array([model.actuator(m).id for m in so101_model.MOTORS])
        self._twin = TwinModel(model, self._act, self._vadr, self.task.object_body)
        self.cameras = {key: SimCamera(cfg, model) for key, cfg in self.config.cameras.items()}
        for cam in self.cameras.values():
            cam.connect()
        region = self.config.randomize.region()
        with self._lock:
            self.model, self.data = model, data
            self.task.bind(model, data)
            if region is not None:  # the user's envelope bounds where the task puts things
                self.task.set_workspace(region.low, region.high, region.joint_limits)
            self.reset()
        logger.info("%s connected (task=%s, realtime=%s)", self, self.config.task, self.config.realtime)

    @check_if_not_connected
    def get_observation(self) -> dict:
        with self._lock:
            self._catch_up()
            obs: dict = {f"{m}.pos": v for m, v in self._present().items()}
            obs.update(self.task.observation())
            for key, cam in self.cameras.items():
                obs[key] = cam.read(self.data, self.data.time)
            return obs

    @check_if_not_connected
    def send_action(self, action: dict) -> dict:
        """Set goal positions (clamped to the joint limits and `max_relative_target`); return what was sent.

        Like so101_follower, only the motors named in `action` get a new goal; others keep theirs.
        """
        goal = {}
        for key, value in action.items():
            if not key.endswith(".pos"):
                continue
            motor = key.removesuffix(".pos")
            if motor not in self._limits:
                raise ValueError(
                    f"unknown motor {motor!r} in action key {key!r}; expected {list(self._limits)}"
                )
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(f"action {key} is not finite ({value})")
            lo, hi = self._limits[motor]
            goal[motor] = min(max(value, lo), hi)
        with self._lock:
            self._catch_up()
            if self.config.max_relative_target is not None and goal:
                present = self._present()
                goal = ensure_safe_goal_position(
                    {m: (g, present[m]) for m, g in goal.items()}, self.config.max_relative_target
                )
            if self._params is not None:
                self._send_twin(goal)
                return {f"{m}.pos": v for m, v in goal.items()}
            for motor, value in goal.items():
                self.data.ctrl[self._act[so101_model.MOTORS.index(motor)]] = so101_model.motor_to_rad(
                    motor, value
                )
            if not self.config.realtime:
                mujoco.mj_step(self.model, self.data, nstep=self.substeps)
        return {f"{m}.pos": v for m, v in goal.items()}

    @check_if_not_connected
    def disconnect(self) -> None:
        with self._lock:
            for cam in self.cameras.values():
                cam.disconnect()
            self.data = None
        logger.info("%s disconnected.", self)

    # ---- sim-only API (hardware.sim.protocol.SimTaskRobot) -----------------------------------------
    @property
    def home_position(self) -> dict[str, float]:
        """Reset pose in robot units (motor -> value)."""
        return dict(so101_model.HOME_POSITION)

    @property
    def control_period_s(self) -> float:
        """Simulated seconds one lockstep send_action advances (substeps x 2 ms)."""
        return self.substeps * self.PHYSICS_DT

    @property
    def sim_time_s(self) -> float:
        return float(self.data.time) if self.data is not None else 0.0

    @property
    def sim_params(self) -> SimParams | None:
        """This episode's twin (randomized draw or the fixed variant); None = the nominal simulator."""
        return self._params

    @check_if_not_connected
    def reset(self, seed: int | None = None, params: SimParams | None = None) -> None:
        """Put the arm at home (goals too), re-randomise the task; `seed` restarts the sim's RNG.

        With `randomize.enable` a new twin is drawn from the same RNG first (before the task), with a
        `variant` its fixed twin is applied; `params` pins this episode's twin instead (tests, studies).
        """
        with self._lock:
            if seed is not None:
                self.rng = np.random.default_rng(seed)
            mujoco.mj_resetData(self.model, self.data)
            if params is None:
                if self.config.randomize.enable:
                    params = self.config.randomize.sample(self.rng)
                else:
                    params = VARIANTS[self.config.variant]
            self._use_params(params)
            home = so101_model.positions_to_rad(so101_model.HOME_POSITION)
            if params is not None:  # a miscalibrated arm at "home" reads home; it truly stands offset
                home = so101_model.positions_to_rad(
                    {m: v - self._offset[i] for i, (m, v) in enumerate(so101_model.HOME_POSITION.items())}
                )
                self._command = dict(so101_model.HOME_POSITION)
                self._pending = deque([home.copy() for _ in range(params.latency_steps)])
                self._play = home.copy()
            self.data.qpos[self._qadr] = home
            self.data.ctrl[self._act] = home
            self.task.reset(self.rng)
            if params is not None:
                self.task.nudge(*params.object_xy_jitter_m, params.object_yaw_jitter_deg)
            mujoco.mj_forward(self.model, self.data)
            self._wall_anchor, self._sim_anchor = time.monotonic(), float(self.data.time)
            for cam in self.cameras.values():
                cam.invalidate()

    @check_if_not_connected
    def task_success(self) -> bool:
        with self._lock:
            return bool(self.task.success())

    @check_if_not_connected
    def task_info(self) -> dict:
        with self._lock:
            return {**self.task.info(), "sim_time_s": self.sim_time_s}

    @check_if_not_connected
    def read_joint_positions(self) -> dict[str, float]:
        """Joints only, no camera render: what RobotGuard's control thread reads at control rate. A render
        there would run on a thread that does not own the EGL context (EGL_BAD_ACCESS) and cost a frame."""
        with self._lock:
            self._catch_up()
            return {f"{m}.pos": v for m, v in self._present().items()}

    # ---- internals ---------------------------------------------------------------------------------
    def _present(self) -> dict[str, float]:
        q = self.data.qpos[self._qadr]
        if self._params is not None:  # what a miscalibrated encoder reads
            return {
                m: so101_model.rad_to_motor(m, q[i]) + self._offset[i]
                for i, m in enumerate(so101_model.MOTORS)
            }
        return {m: so101_model.rad_to_motor(m, q[i]) for i, m in enumerate(so101_model.MOTORS)}

    def true_joint_positions(self) -> dict[str, float]:
        """Joints as the model truly stands (no calibration offset): for the expert and tests, never a policy."""
        with self._lock:
            q = self.data.qpos[self._qadr]
            return {f"{m}.pos": so101_model.rad_to_motor(m, q[i]) for i, m in enumerate(so101_model.MOTORS)}

    def _use_params(self, params: SimParams | None) -> None:
        """Write this episode's twin into the model (nominal first) and the command path."""
        unknown = set(params.joint_offset) - set(so101_model.MOTORS) if params is not None else set()
        if unknown:
            raise ValueError(
                f"sim params name unknown joints {sorted(unknown)}; expected {list(so101_model.MOTORS)}"
            )
        self._params = params
        self._twin.apply(params)
        self.task.set_object_scale(params.object_size_scale if params is not None else 1.0)
        if params is None:
            return
        self._offset = np.array([float(params.joint_offset.get(m, 0.0)) for m in so101_model.MOTORS])
        self._period_rng = np.random.default_rng(params.period_seed)

    def _send_twin(self, goal: dict[str, float]) -> None:
        """The twin's command path: offset -> latency queue -> backlash -> servos -> one (jittered) period."""
        params = self._params
        self._command.update(goal)
        target = np.array(
            [
                so101_model.motor_to_rad(m, self._command[m] - self._offset[i])
                for i, m in enumerate(so101_model.MOTORS)
            ]
        )
        self._pending.append(target)
        target = self._pending.popleft()  # k goals ahead of it in the queue: k periods late
        half_play = math.radians(params.backlash_deg) / 2
        self._play = np.clip(self._play, target - half_play, target + half_play)
        self.data.ctrl[self._act] = self._play
        if self.config.realtime:
            return
        steps = self.substeps
        if params.period_jitter > 0:
            u = self._period_rng.uniform(-params.period_jitter, params.period_jitter)
            steps = max(1, round(self.substeps * (1.0 + u)))
        mujoco.mj_step(self.model, self.data, nstep=steps)

    def _catch_up(self) -> None:
        """Realtime mode: advance physics to the wall clock (bounded by max_catchup_s)."""
        if not self.config.realtime:
            return
        now = time.monotonic()
        behind = (self._sim_anchor + (now - self._wall_anchor)) - self.data.time
        if behind > self.config.max_catchup_s:
            logger.warning(
                "sim fell %.2f s behind real time; skipping ahead only %.2f s",
                behind,
                self.config.max_catchup_s,
            )
            behind = self.config.max_catchup_s
            self._wall_anchor, self._sim_anchor = now, float(self.data.time) + behind
        n = int(behind / self.PHYSICS_DT)
        if n > 0:
            mujoco.mj_step(self.model, self.data, nstep=n)
