"""A task of your own in the twin (hardware/sim/tasks.py `register_task`): registered from this file only,
it gets its own scene body, reset distribution, observation keys and success, and the randomized twin
treats its body as the object. Nothing outside hardware/sim is touched (tests/app/test_twin_task_eval.py
runs it through `pirl eval`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import mujoco
import numpy as np
import pytest

from hardware import so101_model
from hardware.sim import SimSO101Follower, SimSO101FollowerConfig
from hardware.sim.ik import ArmIK
from hardware.sim.randomization import RandomizationConfig
from hardware.sim.tasks import TASKS, SimTask, import_task_module, make_task, register_task

BALL_RADIUS = 0.015  # m


@register_task
@dataclass
class TouchBallTask(SimTask):
    """Touch a ball resting on the table: the gripper frame within `tolerance_m` of the ball's centre."""

    name = "touch_ball"
    object_body = "ball"  # the twin resizes, recolours and reweighs it
    tolerance_m: float = 0.03
    radius_m: tuple[float, float] = (0.16, 0.24)  # reset distribution: distance from the base axis
    azimuth_deg: tuple[float, float] = (-30.0, 30.0)

    def add_to_scene(self, spec: mujoco.MjSpec) -> None:
        ball = spec.worldbody.add_body(name="ball", pos=[0.2, 0.0, BALL_RADIUS])
        ball.add_freejoint(name="ball")
        ball.add_geom(
            name="ball",
            type=mujoco.mjtGeom.mjGEOM_SPHERE,
            size=[BALL_RADIUS, 0, 0],
            mass=0.02,
            rgba=[0.9, 0.8, 0.1, 1.0],
            contype=3,
            conaffinity=3,
        )

    def bind(self, model: mujoco.MjModel, data: mujoco.MjData) -> None:
        super().bind(model, data)
        self._qadr = model.joint("ball").qposadr[0]
        self._vadr = model.joint("ball").dofadr[0]
        self._body = model.body("ball").id

    def reset(self, rng: np.random.Generator) -> None:
        r = rng.uniform(*self.radius_m)
        a = math.radians(rng.uniform(*self.azimuth_deg))
        self.data.qpos[self._qadr : self._qadr + 7] = [
            r * math.cos(a),
            r * math.sin(a),
            BALL_RADIUS,
            1,
            0,
            0,
            0,
        ]
        self.data.qvel[self._vadr : self._vadr + 6] = 0.0

    def ball(self) -> np.ndarray:
        return self.data.xpos[self._body].copy()

    def observation_features(self) -> dict[str, type]:
        return {"ball.x": float, "ball.y": float, "ball.z": float}

    def observation(self) -> dict[str, float]:
        return dict(zip(("ball.x", "ball.y", "ball.z"), (float(v) for v in self.ball()), strict=True))

    def success(self) -> bool:
        return float(np.linalg.norm(self.ee_position() - self.ball())) <= self.tolerance_m


@register_task
@dataclass
class TouchBallAnywhereTask(TouchBallTask):
    """The same ball, solved from the first step (a 1 m tolerance): `pirl eval` must report 100 %."""

    name = "touch_ball_anywhere"
    tolerance_m: float = 1.0


@pytest.fixture
def robot(tmp_path):
    made = []

    def factory(**kw) -> SimSO101Follower:
        made.append(
            SimSO101Follower(SimSO101FollowerConfig(task="touch_ball", calibration_dir=tmp_path, **kw))
        )
        made[-1].connect()
        return made[-1]

    yield factory
    for r in made:
        r.disconnect()


def ball_at(obs: dict) -> np.ndarray:
    return np.array([obs["ball.x"], obs["ball.y"], obs["ball.z"]])


def test_registered_from_this_file_only():
    assert TASKS["touch_ball"] is TouchBallTask and isinstance(make_task("touch_ball"), TouchBallTask)
    assert {"none", "reach", "pick_cube"} <= set(TASKS)  # the built-in tasks use the same registry
    SimSO101FollowerConfig(task="touch_ball")  # the robot config accepts it by name
    register_task(TouchBallTask)  # the same class again (a module imported twice): a no-op
    with pytest.raises(ValueError, match=r"unknown sim task 'touch_wall'.*--robot.task_module"):
        SimSO101FollowerConfig(task="touch_wall")

    class Other(SimTask):
        name = "touch_ball"

    with pytest.raises(ValueError, match="'touch_ball' is taken by .*TouchBallTask"):
        register_task(Other)

    class Nameless(SimTask):
        pass

    with pytest.raises(ValueError, match="needs its own class attribute `name`"):
        register_task(Nameless)
    assert TASKS["touch_ball"] is TouchBallTask


def test_episodes_run_with_its_scene_reset_observation_and_success(robot):
    arm = robot(seed=3)
    feats = arm.observation_features
    assert [k for k in feats if k.startswith("ball.")] == ["ball.x", "ball.y", "ball.z"]
    starts = []
    for episode in range(6):
        arm.reset(seed=100 + episode)
        start = ball_at(arm.get_observation())
        r, az = math.hypot(start[0], start[1]), math.degrees(math.atan2(start[1], start[0]))
        assert 0.16 <= r <= 0.24 and -30 <= az <= 30 and start[2] == pytest.approx(BALL_RADIUS, abs=1e-6)
        starts.append(start)
        assert not arm.task_success()  # the gripper starts far from the table
    assert len({tuple(s.round(6)) for s in starts}) == 6
    arm.reset(seed=102)
    assert np.array_equal(ball_at(arm.get_observation()), starts[2])  # seeded: same seed, same ball

    # Drive the gripper 2 cm above the ball with IK: the task's own success function says so.
    goal, err = ArmIK().solve(starts[2] + [0, 0, 0.02], so101_model.HOME_POSITION)
    assert err < 0.003
    for _ in range(90):
        arm.send_action({f"{m}.pos": v for m, v in goal.items()})
    assert arm.task_success() and arm.task_info()["task"] == "touch_ball"


def test_the_twin_randomizes_its_object_body(robot):
    nominal = robot(seed=0)
    twin = robot(seed=0, randomize=RandomizationConfig(enable=True))
    geom = nominal.model.body("ball").geomadr[0]
    body = nominal.model.body("ball").id
    sizes, masses, colours = set(), set(), set()
    for episode in range(4):
        twin.reset(seed=episode)
        p = twin.sim_params
        assert twin.model.geom_size[geom][0] == pytest.approx(BALL_RADIUS * p.object_size_scale)
        assert twin.model.body_mass[body] == pytest.approx(
            nominal.model.body_mass[body] * p.object_mass_scale
        )
        sizes.add(float(twin.model.geom_size[geom][0]))
        masses.add(float(twin.model.body_mass[body]))
        colours.add(tuple(twin.model.geom_rgba[geom][:3].round(6)))
    assert len(sizes) == len(masses) == len(colours) == 4
    assert nominal.model.geom_size[geom][0] == BALL_RADIUS  # the nominal arm's ball is untouched


def test_a_task_module_file_registers_its_task(tmp_path):
    module = tmp_path / "my_tasks.py"
    module.write_text(
        "from hardware.sim.tasks import SimTask, register_task\n\n"
        "@register_task\nclass WaveTask(SimTask):\n    name = 'wave_from_file'\n"
    )
    cfg = SimSO101FollowerConfig(task="wave_from_file", task_module=str(module))
    assert TASKS["wave_from_file"].__name__ == "WaveTask" and cfg.task_module == str(module)
    import_task_module(str(module))  # again: the same module, nothing re-registered
    with pytest.raises(ValueError, match="task_module: .* is not a file"):
        SimSO101FollowerConfig(task="x", task_module=str(tmp_path / "missing.py"))
    with pytest.raises(ValueError, match="cannot import 'no_such_tasks_module'"):
        SimSO101FollowerConfig(task="x", task_module="no_such_tasks_module")
