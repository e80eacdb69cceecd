"""The randomized SO-101 twin and the held-out stand-in arm (hardware/sim/randomization.py, stand_in.py).

Real MuJoCo throughout: each parameter is checked by what the simulator then does (a read shifted by the
offset, a response k periods late, a different rendered image), not by what the config says.
"""

from __future__ import annotations

import dataclasses
import math

import draccus
import numpy as np
import pytest
from lerobot.motors import MotorCalibration

from hardware import so101_model
from hardware.sim import SimCameraConfig, SimSO101Follower, SimSO101FollowerConfig
from hardware.sim.expert import ExpertConfig, ScriptedExpert
from hardware.sim.randomization import RandomizationConfig, SimParams, calibration_offsets
from hardware.sim.scene import CUBE_HALF_SIZE, CUBE_MASS
from hardware.sim.stand_in import STAND_IN
from tests.mocks.calibration_files import SO101_RANGES, write_calibration_file

HOME = so101_model.HOME_POSITION


def make(tmp_path, **kw) -> SimSO101Follower:
    robot = SimSO101Follower(SimSO101FollowerConfig(calibration_dir=tmp_path, **kw))
    robot.connect()
    return robot


@pytest.fixture
def robots(tmp_path):
    made: list[SimSO101Follower] = []

    def factory(**kw) -> SimSO101Follower:
        made.append(make(tmp_path, **kw))
        return made[-1]

    yield factory
    for robot in made:
        if robot.is_connected:
            robot.disconnect()


def joints(robot: SimSO101Follower, true: bool = False) -> np.ndarray:
    obs = robot.true_joint_positions() if true else robot.get_observation()
    return np.array([obs[f"{m}.pos"] for m in so101_model.MOTORS])


def run(robot: SimSO101Follower, actions: list[dict], true: bool = False) -> np.ndarray:
    """Send each action (one period each); the joints after every step."""
    out = []
    for action in actions:
        robot.send_action(action)
        out.append(joints(robot, true))
    return np.array(out)


def step_to(motor: str, delta: float, steps: int) -> list[dict]:
    action = so101_model.as_action({**HOME, motor: HOME[motor] + delta})
    return [action] * steps


# ---- config --------------------------------------------------------------------------------------------
def test_off_by_default_and_parsed_from_the_command_line():
    assert SimSO101FollowerConfig().randomize.enable is False
    assert SimSO101FollowerConfig().variant == "default"
    cfg = draccus.parse(
        SimSO101FollowerConfig,
        args=["--randomize.enable=true", "--randomize.latency_steps=[1,3]", "--randomize.kp_scale=[0.5,0.9]"],
    )
    assert (
        cfg.randomize.enable
        and cfg.randomize.latency_steps == (1, 3)
        and cfg.randomize.kp_scale == (0.5, 0.9)
    )
    assert draccus.parse(SimSO101FollowerConfig, args=["--variant=stand_in"]).variant == "stand_in"


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"kp_scale": (1.2, 0.8)}, "low <= high"),
        ({"kp_scale": (0.0, 1.0)}, "must be positive"),
        ({"latency_steps": (-1, 1)}, "non-negative integers"),
        ({"latency_steps": (0, 1.5)}, "non-negative integers"),
        ({"period_jitter": (0.0, 0.6)}, "below 0.5"),
        ({"joint_offset_centre": {"elbow": 1.0}}, "unknown joints"),
        ({"centre_from": "/nonexistent/arm.json"}, "does not exist"),
    ],
)
def test_bad_ranges_fail_with_one_clear_line(kw, message):
    with pytest.raises(ValueError, match=message):
        RandomizationConfig(**kw)


def test_bad_variant_and_variant_with_randomization_are_refused():
    with pytest.raises(ValueError, match="unknown sim_so101 variant"):
        SimSO101FollowerConfig(variant="real")
    with pytest.raises(ValueError, match="cannot be combined"):
        SimSO101FollowerConfig(variant="stand_in", randomize=RandomizationConfig(enable=True))


# ---- seeding and ranges ----------------------------------------------------------------------------------
def test_same_seed_same_twins_different_seeds_differ(robots):
    on = RandomizationConfig(enable=True)
    a, b, c = (robots(randomize=on, seed=s) for s in (5, 5, 6))

    def sequence(robot):
        seq = [robot.sim_params]  # drawn at connect
        for _ in range(4):
            robot.reset()
            seq.append(robot.sim_params)
        return seq

    seq_a, seq_b, seq_c = sequence(a), sequence(b), sequence(c)
    assert seq_a == seq_b
    assert all(p != q for p, q in zip(seq_a, seq_c, strict=True))
    assert len({p.kp_scale for p in seq_a}) == 5  # re-sampled at every reset
    a.reset(seed=42)
    c.reset(seed=42)
    assert a.sim_params == c.sim_params and a.get_observation() == c.get_observation()


def test_every_parameter_stays_inside_its_range_over_many_draws(robots):
    cfg = RandomizationConfig(enable=True, latency_steps=(0, 3))
    rng = np.random.default_rng(0)
    draws = [cfg.sample(rng) for _ in range(2000)]
    assert all(cfg.outside(p) == [] for p in draws)
    # The draws cover their ranges (a sampler stuck at the centre would pass the check above).
    kp = [p.kp_scale for p in draws]
    assert min(kp) < 0.82 and max(kp) > 1.23
    assert {p.latency_steps for p in draws} == {0, 1, 2, 3}
    # And the robot, which draws from its own RNG at every reset, stays inside too.
    robot = robots(randomize=cfg, task="pick_cube")
    for _ in range(30):
        robot.reset()
        assert cfg.outside(robot.sim_params) == []
        assert robot.task.half_size == pytest.approx(CUBE_HALF_SIZE * robot.sim_params.object_size_scale)


def test_global_numpy_rng_is_neither_used_nor_disturbed(robots):
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    robot = robots(randomize=RandomizationConfig(enable=True))
    for _ in range(5):
        robot.reset()
        robot.send_action(so101_model.as_action(HOME))
    assert np.random.random() == expected


# ---- off is the nominal simulator, bit for bit -------------------------------------------------------------
@pytest.mark.parametrize("task", ["reach", "pick_cube"])
def test_randomization_off_is_bit_identical_to_the_nominal_sim(robots, task):
    sweep = [
        so101_model.as_action(
            {**HOME, "shoulder_pan": HOME["shoulder_pan"] + 20 * math.sin(i / 5), "gripper": 40}
        )
        for i in range(25)
    ]
    nominal = robots(task=task, seed=3)
    # The section present but off (with odd ranges), and the twin path itself at its nominal point.
    off = robots(task=task, seed=3, randomize=RandomizationConfig(enable=False, kp_scale=(0.1, 0.2)))
    pinned = robots(task=task, seed=3)
    pinned.reset(seed=3, params=SimParams())
    nominal.reset(seed=3)
    off.reset(seed=3)
    obs = {id(r): [] for r in (nominal, off, pinned)}
    for action in sweep:
        for r in (nominal, off, pinned):
            r.send_action(action)
            obs[id(r)].append(r.get_observation())
    assert obs[id(off)] == obs[id(nominal)]
    assert obs[id(pinned)] == obs[id(nominal)]
    assert off.sim_params is None and pinned.sim_params == SimParams()


# ---- each parameter changes what the simulator does ----------------------------------------------------------
def test_calibration_offset_shifts_the_read_and_the_pose(robots):
    offset = {"shoulder_pan": 3.0, "elbow_flex": -2.5}
    nominal, twin = robots(), robots()
    twin.reset(params=SimParams(joint_offset=offset))
    want = np.array([offset.get(m, 0.0) for m in so101_model.MOTORS])
    # At reset the miscalibrated arm reads home, but truly stands offset from it.
    assert joints(twin) == pytest.approx(joints(nominal), abs=1e-9)
    assert joints(twin) - joints(twin, true=True) == pytest.approx(want, abs=1e-9)
    actions = step_to("shoulder_pan", 15.0, 30)
    ref, read = run(nominal, actions), run(twin, actions)
    true = joints(twin, true=True)
    assert read[-1] - true == pytest.approx(want, abs=1e-9)
    # Commanded to the same goal, it truly stands `offset` away from where the nominal arm stands.
    assert true[0] == pytest.approx(ref[-1][0] - 3.0, abs=0.3)
    assert true[2] == pytest.approx(ref[-1][2] + 2.5, abs=0.3)


def test_latency_delays_the_response_by_k_periods(robots):
    nominal, late = robots(), robots()
    late.reset(params=SimParams(latency_steps=2))
    actions = step_to("shoulder_pan", 20.0, 12)
    ref, got = run(nominal, actions)[:, 0], run(late, actions)[:, 0]
    assert abs(ref[0] - HOME["shoulder_pan"]) > 0.5  # the nominal arm moves in the first period
    assert np.abs(got[:2] - HOME["shoulder_pan"]).max() < 0.05  # the late one does not, for two periods
    assert got[2:] == pytest.approx(ref[:-2], abs=0.05)  # then it does the same, two periods behind


def test_tracking_gain_damping_and_friction_change_the_step_response(robots):
    actions = step_to("shoulder_pan", 20.0, 4)
    nominal = run(robots(), actions)[:, 0] - HOME["shoulder_pan"]
    for params, slower in (
        (SimParams(kp_scale=0.5), True),
        (SimParams(kp_scale=1.5), False),
        (SimParams(damping_scale=4.0), True),
        (SimParams(friction_scale=20.0), True),
    ):
        robot = robots()
        robot.reset(params=params)
        moved = run(robot, actions)[:, 0] - HOME["shoulder_pan"]
        assert (moved[-1] < nominal[-1] - 0.2) if slower else (moved[-1] > nominal[-1] + 0.2), params


def test_backlash_is_a_deadband_on_the_goal(robots):
    nominal, loose = robots(), robots()
    loose.reset(params=SimParams(backlash_deg=4.0))  # +-2 deg of play
    small = run(loose, step_to("shoulder_pan", 1.5, 20))[-1, 0]
    small_ref = run(nominal, step_to("shoulder_pan", 1.5, 20))[-1, 0]
    assert abs(small_ref - HOME["shoulder_pan"]) > 1.0
    assert abs(small - HOME["shoulder_pan"]) < 0.1  # inside the play: the joint does not turn
    big = run(loose, step_to("shoulder_pan", 8.0, 30))[-1, 0]
    big_ref = run(nominal, step_to("shoulder_pan", 8.0, 30))[-1, 0]
    assert big == pytest.approx(big_ref - 2.0, abs=0.3)  # beyond it: short of the goal by half the play


def test_period_jitter_varies_the_period_reproducibly(robots):
    steady, jittery, again = robots(), robots(), robots()
    params = SimParams(period_jitter=0.3, period_seed=7)
    jittery.reset(params=params)
    again.reset(params=params)
    actions = step_to("shoulder_pan", 10.0, 30)
    for robot in (steady, jittery, again):
        run(robot, actions)
    assert steady.sim_time_s == pytest.approx(30 * steady.control_period_s)
    assert jittery.sim_time_s != pytest.approx(30 * steady.control_period_s, abs=1e-6)
    assert jittery.sim_time_s == again.sim_time_s


def test_object_size_mass_and_pose_jitter(robots):
    nominal, twin = robots(task="pick_cube", seed=4), robots(task="pick_cube", seed=4)
    params = SimParams(object_size_scale=1.1, object_mass_scale=1.5, object_xy_jitter_m=(0.01, -0.008))
    twin.reset(seed=9, params=params)
    nominal.reset(seed=9)
    a, b = nominal.get_observation(), twin.get_observation()
    assert b["cube.x"] - a["cube.x"] == pytest.approx(0.01, abs=1e-9)
    assert b["cube.y"] - a["cube.y"] == pytest.approx(-0.008, abs=1e-9)
    assert b["cube.z"] == pytest.approx(CUBE_HALF_SIZE * 1.1, abs=1e-9)  # rests on its larger face
    geom = twin.model.geom("cube")
    assert geom.size == pytest.approx([CUBE_HALF_SIZE * 1.1] * 3)
    assert twin.model.body("cube").mass[0] == pytest.approx(CUBE_MASS * 1.5)
    # After a few periods the bigger cube still rests on the floor (collision uses the new size).
    run(twin, [so101_model.as_action(HOME)] * 15)
    assert twin.get_observation()["cube.z"] == pytest.approx(CUBE_HALF_SIZE * 1.1, abs=5e-4)
    twin.reset(seed=9, params=SimParams(object_yaw_jitter_deg=10.0))
    yaw = (twin.get_observation()["cube.yaw"] - a["cube.yaw"] + 45) % 90 - 45
    assert yaw == pytest.approx(10.0, abs=1e-6)
    twin.reset(seed=9)  # off again: nominal cube, nominal model
    assert twin.model.geom("cube").size == pytest.approx([CUBE_HALF_SIZE] * 3)
    assert twin.get_observation() == nominal.get_observation()


@pytest.fixture
def camera_robot(robots):
    cam = SimCameraConfig(camera="top", width=64, height=64, fps=30)
    return robots(task="pick_cube", seed=2, cameras={"top": cam})


def frame(robot, params: SimParams | None) -> np.ndarray:
    robot.reset(seed=2, params=params)
    return robot.get_observation()["top"].astype(float)


def test_camera_pose_fov_and_light_change_the_image(camera_robot):
    base = frame(camera_robot, None)
    assert np.array_equal(frame(camera_robot, SimParams()), base)
    for params in (
        SimParams(camera_pos_jitter_m={"top": (0.02, 0.0, 0.0)}),
        SimParams(camera_rot_jitter_deg={"top": (0.0, 0.0, 5.0)}),
        SimParams(camera_fovy_deg={"top": 8.0}),
    ):
        changed = np.abs(frame(camera_robot, params) - base).max(axis=-1) > 30
        assert changed.mean() > 0.005, params
    assert frame(camera_robot, SimParams(light_scale=0.4)).mean() < base.mean() - 10
    assert frame(camera_robot, SimParams(light_dir_deg=(30.0, 0.0))).mean() != pytest.approx(
        base.mean(), abs=0.5
    )
    assert np.array_equal(frame(camera_robot, None), base)  # restored exactly


def test_object_and_table_colours_change_pixel_colours(camera_robot):
    base = frame(camera_robot, None)
    cube = frame(camera_robot, SimParams(object_rgb_delta=(-0.6, 0.6, 0.0)))
    moved = np.abs(cube - base).max(axis=-1) > 30
    assert 0 < moved.mean() < 0.2  # the cube's pixels, not the whole picture
    assert (cube[moved, 1] - base[moved, 1]).mean() > 40 and (cube[moved, 0] - base[moved, 0]).mean() < -40
    table = frame(camera_robot, SimParams(table_rgb_delta=(0.3, 0.0, 0.0)))
    floor = np.abs(table - base).max(axis=-1) > 10
    assert floor.mean() > 0.5  # most of the top view is table
    assert (table[floor, 0] - base[floor, 0]).mean() > 20


# ---- centring on the user's calibration ----------------------------------------------------------------------
def test_centre_from_a_lerobot_calibration_file(tmp_path, robots):
    cal = {
        name: MotorCalibration(id=i + 1, drive_mode=0, homing_offset=0, range_min=lo, range_max=hi)
        for i, (name, (lo, hi)) in enumerate(SO101_RANGES.items())
    }
    path = write_calibration_file(tmp_path / "arm.json", cal)
    offsets = calibration_offsets(path)
    lo, hi = SO101_RANGES["shoulder_lift"]
    assert offsets["shoulder_lift"] == pytest.approx((2047 - (lo + hi) / 2) * 360 / 4095)
    assert "gripper" not in offsets  # 0..100 mode: no degree zero to be off
    cfg = RandomizationConfig(enable=True, centre_from=str(path), joint_offset_centre={"gripper": 1.0})
    centre = cfg.centre().joint_offset
    assert centre["shoulder_lift"] == pytest.approx(offsets["shoulder_lift"]) and centre["gripper"] == 1.0
    robot = robots(randomize=cfg)
    for _ in range(10):
        robot.reset()
        for m, value in robot.sim_params.joint_offset.items():
            assert abs(value - centre[m]) <= 2.0
    read_minus_true = joints(robot) - joints(robot, true=True)
    assert read_minus_true == pytest.approx([robot.sim_params.joint_offset[m] for m in so101_model.MOTORS])
    (tmp_path / "bad.json").write_text('{"shoulder_lift": {"range_min": 5}}')
    with pytest.raises(ValueError, match="range_min/range_max"):
        RandomizationConfig(centre_from=str(tmp_path / "bad.json"))


# ---- the held-out stand-in ----------------------------------------------------------------------------------
def test_stand_in_lies_outside_the_training_distribution(robots):
    training = RandomizationConfig(enable=True)
    assert training.centre() != STAND_IN
    outside = training.outside(STAND_IN)
    for name in ("joint_offset[elbow_flex]", "latency_steps", "camera_pos_jitter_m", "object_rgb_delta"):
        assert name in outside
    robot = robots(variant="stand_in")
    assert robot.sim_params is STAND_IN
    robot.reset()
    assert robot.sim_params is STAND_IN  # fixed, every episode
    nominal = robots()
    actions = step_to("elbow_flex", 10.0, 20)
    assert np.abs(run(robot, actions, true=True) - run(nominal, actions, true=True))[-1].max() > 2.0


# ---- the expert still solves reach on the twin ------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["randomized", "stand_in"])
def test_scripted_expert_solves_reach_on_the_twin(robots, variant):
    """The expert sees only what a policy sees (reads with the twin's offsets): does it still succeed?"""
    if variant == "stand_in":
        robot = robots(task="reach", variant="stand_in")
    else:
        robot = robots(task="reach", randomize=RandomizationConfig(enable=True))
    solved = 0
    for episode in range(20):
        robot.reset(seed=1000 + episode)
        expert = ScriptedExpert(ExpertConfig(task="reach", fps=30))
        for _ in range(90):  # 3 s of simulated time, as in test_sim_expert
            robot.send_action(expert.act(robot.get_observation()))
            if robot.task_success():
                solved += 1
                break
    assert solved >= 17, f"expert solved {solved}/20 reach episodes on the {variant} twin"


def test_calibration_offsets_are_what_the_pick_expert_trips_on(robots):
    """Measured: on the randomized twin the pick expert, reading offset joints, lifts the cube in about 3 of
    4 episodes (docs/simulation.md); handed the true joints (it is the expert) it solves them all."""
    robot = robots(task="pick_cube", randomize=RandomizationConfig(enable=True))
    solved = 0
    for episode in range(10):
        robot.reset(seed=1000 + episode)
        offset = robot.sim_params.joint_offset
        expert = ScriptedExpert(ExpertConfig(task="pick_cube", fps=30))
        for _ in range(300):
            action = expert.act({**robot.get_observation(), **robot.true_joint_positions()})
            robot.send_action({k: v + offset[k.removesuffix(".pos")] for k, v in action.items()})
            if robot.task_success():
                solved += 1
                break
    assert solved >= 9, f"expert with true joints solved {solved}/10 pick episodes on the randomized twin"


def test_params_are_a_plain_record():
    p = RandomizationConfig().sample(np.random.default_rng(1))
    assert set(p.as_dict()) == {f.name for f in dataclasses.fields(SimParams)}
