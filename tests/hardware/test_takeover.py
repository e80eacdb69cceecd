"""Takeover on the simulated SO-101: human steps are flagged, and neither switch makes the arm jump."""

from __future__ import annotations

from pathlib import Path

import pytest
from lerobot.teleoperators.utils import TeleopEvents

from hardware.guard import RobotGuard
from hardware.safety.config import SafetyConfig
from hardware.sim import SimSO101Follower, SimSO101FollowerConfig
from hardware.sim.expert import ExpertConfig, ScriptedExpert
from hardware.takeover import ExpertSource, Takeover, TeleopSource

# A pose far from home: a policy that has "gone wrong" and lunges for it.
FAR = {
    "shoulder_pan.pos": 70.0,
    "shoulder_lift.pos": 20.0,
    "elbow_flex.pos": -30.0,
    "wrist_flex.pos": 10.0,
    "wrist_roll.pos": 90.0,
    "gripper.pos": 90.0,
}


@pytest.fixture
def sim(tmp_path: Path):
    robot = SimSO101Follower(SimSO101FollowerConfig(task="reach", id="takeover", calibration_dir=tmp_path))
    guard = RobotGuard(robot, SafetyConfig()).connect()
    yield robot, guard
    guard.close()


class ScriptedLeader:
    """Stands in for a LeRobot leader arm with an intervention pedal: fixed pose, real TeleopEvents keys."""

    def __init__(self, pose):
        self.pose = dict(pose)
        self.pedal = False

    def get_action(self):
        return dict(self.pose)

    def get_teleop_events(self):
        return {TeleopEvents.IS_INTERVENTION: self.pedal, TeleopEvents.SUCCESS: False}


def run(guard, takeover, policy, n, log):
    for _ in range(n):
        obs = guard.observation()
        present = {k: obs[k] for k in guard.keys}
        d = takeover.arbitrate(obs, policy)
        res = guard.step(d.action, source=d.source)
        log.append((d, res, present))


def test_takeover_flags_steps_and_hand_back_does_not_jump(sim):
    robot, guard = sim
    expert = ScriptedExpert(ExpertConfig(task="reach"))
    takeover = Takeover(ExpertSource(expert.act))
    order: list[str] = []
    takeover.on_handback(lambda: order.append("flush"))

    def policy():
        order.append("policy")
        return dict(FAR)

    log: list = []
    run(guard, takeover, policy, 20, log)  # the policy lunges for FAR
    takeover.request(True)
    run(guard, takeover, policy, 25, log)  # the expert pulls it back towards the target
    takeover.request(False)
    order.clear()
    run(guard, takeover, policy, 15, log)  # hand back: the policy resumes from where the arm is

    flags = [d.intervention for d, _, _ in log]
    assert flags == [False] * 20 + [True] * 25 + [False] * 15
    assert all(res.source == ("human" if d.intervention else "policy") for d, res, _ in log)
    assert log[20][0].started and log[45][0].handed_back
    assert order[:2] == ["flush", "policy"]  # the old chunk is dropped before the policy is asked again

    # no jump anywhere, including both switches: commands move at most the velocity bound per step and
    # stay within max_step of the measured position
    vstep = {k: guard.layer.max_velocity[k.removesuffix(".pos")] / guard.layer.control_hz for k in guard.keys}
    for (_, a, _), (_, b, present_b) in zip(log, log[1:], strict=False):
        for k in guard.keys:
            assert abs(b.action[k] - a.action[k]) <= vstep[k] + 1e-6
            assert abs(b.action[k] - present_b[k]) <= guard.layer.max_step[k.removesuffix(".pos")] + 1e-6

    rep = takeover.report()
    assert rep == {"interventions": 1, "intervention_steps": 25, "steps": 60, "intervention_rate": 25 / 60}


def test_precomputed_policy_action_is_discarded_on_hand_back(sim):
    _, guard = sim
    takeover = Takeover(ExpertSource(lambda obs: {k: obs[k] for k in guard.keys}))
    obs = guard.observation()
    takeover.request(True)
    assert takeover.arbitrate(obs, dict(FAR)).source == "human"
    takeover.request(False)
    d = takeover.arbitrate(obs, dict(FAR))  # a stale chunk action computed before the takeover
    assert d.handed_back and d.action is None and d.source == "policy"
    res = guard.step(d.action, source=d.source)
    assert res.held  # the guard holds this one step; the next policy action is planned from here
    d = takeover.arbitrate(obs, dict(FAR))
    assert d.action == FAR and not d.handed_back


def test_leader_pedal_events_drive_takeover(sim):
    _, guard = sim
    obs = guard.observation()
    leader = ScriptedLeader({k: obs[k] + 5.0 for k in guard.keys})
    takeover = Takeover(TeleopSource(leader))
    log: list = []
    run(guard, takeover, dict(FAR), 3, log)
    leader.pedal = True
    run(guard, takeover, dict(FAR), 4, log)
    leader.pedal = False
    run(guard, takeover, dict(FAR), 3, log)
    assert [d.intervention for d, _, _ in log] == [False] * 3 + [True] * 4 + [False] * 3
    assert log[3][0].events["success"] is False  # events arrive with LeRobot's names
    assert log[3][0].action == leader.pose
    assert takeover.report()["interventions"] == 1


def test_takeover_without_a_human_source_is_refused():
    with pytest.raises(RuntimeError, match="nothing to take over with"):
        Takeover().request(True)


def test_sim_expert_teleoperator_takes_over_through_the_teleop_interface(sim):
    """The sim's `sim_expert` LeRobot Teleoperator drives a takeover to task success via TeleopSource."""
    from hardware.factory import make_teleoperator
    from hardware.sim.teleop import SimExpertTeleopConfig

    robot, guard = sim
    teleop = make_teleoperator(SimExpertTeleopConfig(id="expert"), robot=robot)
    teleop.connect()
    takeover = Takeover(TeleopSource(teleop))
    takeover.request(True)
    for _ in range(150):
        obs = guard.observation()
        d = takeover.arbitrate(obs, dict(FAR))
        guard.step(d.action, source=d.source)
        assert d.intervention
        if robot.task_success():
            break
    assert robot.task_success()
    teleop.disconnect()


def test_end_effector_deltas_become_joint_targets(sim):
    """Gamepad-style deltas (+x, then -z) move the measured gripper frame that way, through the guard."""
    from hardware.kinematics import SO101Kinematics
    from hardware.takeover import EndEffectorDeltaMap

    _, guard = sim
    fk = SO101Kinematics()

    def ee():
        return fk.fk({k.removesuffix(".pos"): v for k, v in guard.present().items()})

    mapper = EndEffectorDeltaMap(step_m=0.004)
    start = ee()
    for _ in range(15):  # 15 steps of +x at 4 mm
        guard.step(mapper({"delta_x": 1.0, "gripper": 1}, guard.observation()), source="human")
    for _ in range(20):  # let the servos settle on the last target
        guard.step(mapper({}, guard.observation()), source="human")
    moved = ee() - start
    assert 0.04 < moved[0] < 0.08 and abs(moved[1]) < 0.01 and abs(moved[2]) < 0.015
    grip = guard.present()["gripper.pos"]
    for _ in range(5):
        guard.step(mapper({"gripper": 2}, guard.observation()), source="human")  # open
    assert guard.present()["gripper.pos"] > grip + 10.0


def test_a_takeover_asked_between_episodes_starts_the_next_one_with_the_human(sim):
    _, guard = sim
    takeover = Takeover(ExpertSource(lambda obs: {k: obs[k] for k in guard.keys}))
    takeover.request_next_episode()
    assert takeover.pending and not takeover.active
    takeover.reset_episode()  # EpisodeManager.start()
    assert not takeover.pending
    assert takeover.arbitrate(guard.observation(), None).intervention
    takeover.reset_episode()  # the one after it: the policy again
    assert not takeover.arbitrate(guard.observation(), None).intervention
    takeover.request_next_episode()
    takeover.request(False)  # handing back cancels it
    assert not takeover.pending
    with pytest.raises(RuntimeError, match="nothing to take over with"):
        Takeover().request_next_episode()


def test_a_new_episode_restarts_the_teleoperators_end_effector_target():
    class Map:
        resets = 0

        def reset(self):
            Map.resets += 1

    takeover = Takeover(TeleopSource(object(), action_map=Map()))
    assert Map.resets == 1  # built: a fresh episode
    takeover.reset_episode()
    assert Map.resets == 2
