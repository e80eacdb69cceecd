"""The scripted expert solves the sim tasks from reset and from arbitrary takeover states (real MuJoCo)."""

from __future__ import annotations

import pytest

from hardware import so101_model
from hardware.sim import SimSO101Follower, SimSO101FollowerConfig
from hardware.sim.expert import ExpertConfig, ScriptedExpert


def run_episode(robot, expert, seed: int, max_steps: int) -> tuple[bool, int]:
    robot.reset(seed=seed)
    expert.reset()
    for step in range(max_steps):
        if robot.task_success():
            return True, step
        robot.send_action(expert.act(robot.get_observation()))
    return robot.task_success(), max_steps


@pytest.fixture(scope="module")
def reach_robot(tmp_path_factory):
    r = SimSO101Follower(SimSO101FollowerConfig(task="reach", calibration_dir=tmp_path_factory.mktemp("cal")))
    r.connect()
    yield r
    r.disconnect()


def test_reach_expert_solves_95_percent_of_50_seeded_episodes_within_3_s(reach_robot):
    budget = round(3.0 / reach_robot.control_period_s)  # 3 s of sim time at 30 Hz
    expert = ScriptedExpert(ExpertConfig(task="reach"))
    results = [run_episode(reach_robot, expert, seed, budget) for seed in range(50)]
    assert sum(ok for ok, _ in results) >= 48
    assert max(steps for ok, steps in results if ok) < budget // 2  # well under the limit


def test_reach_expert_takes_over_from_a_disturbed_state(reach_robot):
    """Drive the arm somewhere odd (as a bad policy would), then hand over to the expert mid-episode."""
    expert = ScriptedExpert(ExpertConfig(task="reach"))
    for seed in range(5):
        reach_robot.reset(seed=100 + seed)
        for _ in range(20):
            reach_robot.send_action(
                {
                    "shoulder_pan.pos": -60.0 + 30 * seed,
                    "shoulder_lift.pos": 10.0,
                    "elbow_flex.pos": -40.0,
                    "wrist_flex.pos": 0.0,
                }
            )
        assert not reach_robot.task_success()
        for _ in range(90):
            reach_robot.send_action(expert.act(reach_robot.get_observation()))
            if reach_robot.task_success():
                break
        assert reach_robot.task_success(), reach_robot.task_info()


def test_expert_actions_use_robot_keys_and_respect_its_speed_cap(reach_robot):
    reach_robot.reset(seed=1)
    expert = ScriptedExpert(ExpertConfig(task="reach", fps=30, max_speed_deg_s=60))
    obs = reach_robot.get_observation()
    action = expert.act(obs)
    assert set(action) == set(reach_robot.action_features)
    for m in so101_model.MOTORS:
        assert abs(action[f"{m}.pos"] - obs[f"{m}.pos"]) <= 2.0 + 1e-9


def test_expert_rejects_unknown_task_and_missing_keys():
    with pytest.raises(ValueError, match="no scripted expert"):
        ScriptedExpert(ExpertConfig(task="none"))
    with pytest.raises(ValueError, match="no scripted expert"):
        ScriptedExpert(ExpertConfig(task="juggle"))
    with pytest.raises(KeyError, match="shoulder_pan.pos"):
        ScriptedExpert().act({"target.x": 0.2})


@pytest.fixture(scope="module")
def pick_robot(tmp_path_factory):
    cfg = SimSO101FollowerConfig(task="pick_cube", calibration_dir=tmp_path_factory.mktemp("cal"))
    r = SimSO101Follower(cfg)
    r.connect()
    yield r
    r.disconnect()


def test_pick_expert_lifts_the_cube_in_95_percent_of_50_seeded_episodes(pick_robot):
    budget = round(5.0 / pick_robot.control_period_s)
    expert = ScriptedExpert(ExpertConfig(task="pick_cube"))
    results = [run_episode(pick_robot, expert, seed, budget) for seed in range(50)]
    assert sum(ok for ok, _ in results) >= 48
    info = pick_robot.task_info()
    assert info["lift_m"] >= 0.04 or not info["success"]


def test_pick_expert_recovers_after_the_policy_drops_the_cube(pick_robot):
    expert = ScriptedExpert(ExpertConfig(task="pick_cube"))
    ok, _ = run_episode(pick_robot, expert, seed=3, max_steps=150)
    assert ok
    for _ in range(30):  # a bad policy opens the gripper and swings away: the cube falls
        pick_robot.send_action({"gripper.pos": 60.0, "shoulder_pan.pos": 30.0})
    assert not pick_robot.task_success()
    assert pick_robot.get_observation()["cube.z"] < 0.02
    for _ in range(200):  # takeover: the expert starts from this state, not from reset
        pick_robot.send_action(expert.act(pick_robot.get_observation()))
        if pick_robot.task_success():
            break
    assert pick_robot.task_success(), pick_robot.task_info()
