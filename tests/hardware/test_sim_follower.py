"""The simulated SO-101 against the same interface checks a real so101_follower must pass (real MuJoCo)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from lerobot.robots import Robot, RobotConfig
from lerobot.robots.so_follower import SO101FollowerConfig
from lerobot.utils.errors import DeviceAlreadyConnectedError, DeviceNotConnectedError

from hardware import so101_model
from hardware.sim import SimCameraConfig, SimSO101Follower, SimSO101FollowerConfig, SimTaskRobot


def make(tmp_path, **kw) -> SimSO101Follower:
    return SimSO101Follower(SimSO101FollowerConfig(calibration_dir=tmp_path, **kw))


@pytest.fixture
def robot(tmp_path):
    r = make(tmp_path)
    r.connect()
    yield r
    if r.is_connected:
        r.disconnect()


def test_keys_and_features_match_real_so101_follower(tmp_path):
    real_cfg = SO101FollowerConfig(port="/dev/null", calibration_dir=tmp_path / "real")
    from lerobot.robots.so_follower import SO101Follower

    real = SO101Follower(real_cfg)
    sim = make(tmp_path)
    assert isinstance(sim, Robot)
    assert sim.action_features == real.action_features
    motors = {k: v for k, v in sim.observation_features.items() if k.endswith(".pos")}
    assert motors == real.observation_features
    assert set(sim.observation_features) - set(motors) == {"target.x", "target.y", "target.z"}


def test_registered_as_robot_type():
    cls = RobotConfig.get_choice_class("sim_so101")
    assert cls is SimSO101FollowerConfig
    assert SimSO101FollowerConfig().type == "sim_so101"


def test_connect_calibrate_observe_disconnect(tmp_path):
    r = make(tmp_path)
    assert not r.is_connected
    with pytest.raises(DeviceNotConnectedError):
        r.get_observation()
    r.connect()
    assert r.is_connected and r.is_calibrated
    with pytest.raises(DeviceAlreadyConnectedError):
        r.connect()
    r.calibrate()  # no-op, must not raise or prompt
    obs = r.get_observation()
    assert set(obs) == set(r.observation_features)
    for key, ft in r.observation_features.items():
        assert ft is float and isinstance(obs[key], float), key
    for m, v in so101_model.HOME_POSITION.items():
        assert obs[f"{m}.pos"] == pytest.approx(v, abs=1e-6)
    assert isinstance(r, SimTaskRobot)
    r.disconnect()
    assert not r.is_connected
    with pytest.raises(DeviceNotConnectedError):
        r.send_action({"gripper.pos": 10.0})


def test_send_action_clamps_to_joint_limits_and_returns_what_was_sent(robot):
    limits = so101_model.motor_limits()
    sent = robot.send_action({"shoulder_pan.pos": 500.0, "gripper.pos": -20.0, "elbow_flex.pos": 12.5})
    assert sent == {
        "shoulder_pan.pos": pytest.approx(limits["shoulder_pan"][1]),
        "gripper.pos": pytest.approx(0.0),
        "elbow_flex.pos": 12.5,
    }
    with pytest.raises(ValueError, match="unknown motor"):
        robot.send_action({"elbow.pos": 1.0})
    with pytest.raises(ValueError, match="not finite"):
        robot.send_action({"elbow_flex.pos": float("nan")})


def test_max_relative_target_caps_the_step_from_present(tmp_path):
    r = make(tmp_path, max_relative_target=5.0)
    r.connect()
    sent = r.send_action({"shoulder_pan.pos": 40.0})
    assert sent["shoulder_pan.pos"] == pytest.approx(5.0, abs=1e-3)
    r.disconnect()


def test_position_control_tracks_a_goal_over_time_not_instantly(robot):
    """A 30 deg pan step: not there after one 33 ms period, within 2 deg after 0.5 s (like the servo)."""
    start = robot.get_observation()["shoulder_pan.pos"]
    robot.send_action({"shoulder_pan.pos": start + 30.0})
    after_one = robot.get_observation()["shoulder_pan.pos"]
    assert 0.5 < after_one - start < 20.0
    for _ in range(14):
        robot.send_action({"shoulder_pan.pos": start + 30.0})
    assert robot.get_observation()["shoulder_pan.pos"] == pytest.approx(start + 30.0, abs=2.0)
    assert robot.sim_time_s == pytest.approx(15 * robot.control_period_s)


def test_lockstep_advances_exactly_one_control_period_per_action(robot):
    assert robot.substeps == 17 and robot.control_period_s == pytest.approx(0.034)
    t0 = robot.sim_time_s
    obs = robot.get_observation()
    robot.get_observation()
    assert robot.sim_time_s == t0  # observing does not advance time
    robot.send_action({k: v for k, v in obs.items() if k.endswith(".pos")})
    assert robot.sim_time_s == pytest.approx(t0 + 0.034)


def test_realtime_follows_the_wall_clock(tmp_path):
    r = make(tmp_path, realtime=True)
    r.connect()
    r.get_observation()
    time.sleep(0.15)
    r.get_observation()
    assert 0.12 <= r.sim_time_s <= 0.25
    r.disconnect()


def test_reset_is_seeded_and_randomises_the_target(robot):
    robot.reset(seed=7)
    a = robot.task_info()["target"]
    robot.reset(seed=7)
    assert robot.task_info()["target"] == a
    robot.reset()
    assert robot.task_info()["target"] != a
    assert robot.task_info()["task"] == "reach" and robot.task_success() in (True, False)


def test_no_reach_episode_starts_solved(robot):
    # 1-2 % of targets used to fall within the success radius of the gripper's home position.
    for seed in range(150):
        robot.reset(seed=seed)
        assert robot.task_info()["distance_m"] >= 0.05 - 1e-6, seed
        assert not robot.task_success()


def test_global_numpy_rng_is_untouched(tmp_path):
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    r = make(tmp_path, seed=3)
    r.connect()
    r.reset()
    assert np.random.random() == expected
    r.disconnect()


def test_camera_frames_shape_dtype_and_change_when_the_arm_moves(tmp_path):
    r = make(tmp_path, cameras={"front": SimCameraConfig(camera="front", width=96, height=64, fps=30)})
    assert r.observation_features["front"] == (64, 96, 3)
    r.connect()
    first = r.get_observation()["front"]
    assert first.shape == (64, 96, 3) and first.dtype == np.uint8 and first.std() > 5
    for _ in range(10):
        r.send_action({"shoulder_pan.pos": 45.0, "shoulder_lift.pos": 0.0})
    assert np.abs(r.get_observation()["front"].astype(int) - first).mean() > 1.0
    r.disconnect()


def test_bad_configs_fail_with_clear_errors():
    with pytest.raises(ValueError, match="unknown sim task"):
        SimSO101FollowerConfig(task="juggle")
    with pytest.raises(ValueError, match="use_degrees"):
        SimSO101FollowerConfig(use_degrees=False)
    with pytest.raises(ValueError, match="unknown sim camera"):
        SimCameraConfig(camera="ceiling")
    from lerobot.cameras.opencv import OpenCVCameraConfig

    with pytest.raises(ValueError, match="sim_mujoco"):
        SimSO101FollowerConfig(
            cameras={"c": OpenCVCameraConfig(index_or_path=0, width=64, height=64, fps=30)}
        )


def test_light_visual_meshes_look_like_the_full_ones_and_leave_collisions_alone():
    import mujoco

    from hardware.sim.scene import SceneSpec, build_model

    frames = []
    for cell in (0.0, 0.003):
        model = build_model(
            SceneSpec(cube=True, visual_mesh_cell_m=cell, max_render_width=96, max_render_height=96)
        )
        data = mujoco.MjData(model)
        data.qpos[:6] = so101_model.positions_to_rad(so101_model.HOME_POSITION)
        mujoco.mj_forward(model, data)
        renderer = mujoco.Renderer(model, 96, 96)
        renderer.update_scene(data, camera="side")
        frames.append(renderer.render().astype(int))
        renderer.close()
        visual = {model.geom_dataid[g] for g in range(model.ngeom) if model.geom_group[g] == 2}
        collision = {model.geom_dataid[g] for g in range(model.ngeom) if model.geom_group[g] == 3}
        names = {model.mesh(i).name for i in visual if i >= 0}
        assert all(n.endswith("_light") for n in names) == (cell > 0)
        assert not any(model.mesh(i).name.endswith("_light") for i in collision if i >= 0)
    assert np.abs(frames[0] - frames[1]).mean() < 3.0  # same picture, a few grey levels at the edges
