"""EpisodeManager on the simulated SO-101: limits, endings, smooth resets, gating and re-records."""

from __future__ import annotations

from pathlib import Path

import pytest

from hardware.episodes import EpisodeConfig, EpisodeError, EpisodeManager, EpisodeState
from hardware.guard import RobotGuard
from hardware.safety.config import SafetyConfig
from hardware.sim import SimSO101Follower, SimSO101FollowerConfig
from hardware.sim.expert import ExpertConfig, ScriptedExpert
from hardware.takeover import ExpertSource, Takeover
from hardware.watchdog import LinkWatchdog

AWAY = {
    "shoulder_pan.pos": 60.0,
    "shoulder_lift.pos": -10.0,
    "elbow_flex.pos": -20.0,
    "wrist_flex.pos": 30.0,
    "wrist_roll.pos": 45.0,
    "gripper.pos": 80.0,
}


@pytest.fixture
def sim(tmp_path: Path):
    robot = SimSO101Follower(SimSO101FollowerConfig(task="reach", id="episodes", calibration_dir=tmp_path))
    guard = RobotGuard(robot, SafetyConfig()).connect()
    yield robot, guard
    guard.close()


def hold_policy(guard):
    """A policy that keeps the arm still (never succeeds at reach: the target is elsewhere)."""
    return {k: v for k, v in guard.present().items()}


def run_episode(ep, guard, takeover=None, policy=None, max_steps=10_000):
    for _ in range(max_steps):
        obs = guard.observation()
        if takeover is not None:
            d = takeover.arbitrate(obs, (lambda o=obs: policy(o)) if policy else None)
            res = guard.step(d.action, source=d.source)
            out = ep.record_step(d, res, guard.observation())
        else:
            res = guard.step(policy(obs) if policy else None)
            out = ep.record_step(result=res, observation=obs)
        if out.done:
            return out
    raise AssertionError("episode never ended")


def test_reset_is_smooth_reaches_home_and_auto_starts_in_sim(sim):
    robot, guard = sim
    ep = EpisodeManager(guard, EpisodeConfig(seed=7), task_success=robot.task_success, env_reset=robot.reset)
    assert ep.state is EpisodeState.RESETTING and not ep.can_start
    guard.move_to(AWAY, tolerance=3.0)  # leave home
    guard.layer.report.reset_episode()
    n_before = guard.layer.report.total_steps
    assert ep.reset()
    home = {f"{m}.pos": v for m, v in robot.home_position.items()}
    err = max(abs(guard.present()[k] - home[k]) for k in home)
    assert err <= ep.config.home_tolerance
    rep = guard.layer.report.report()
    assert rep["clamped_steps"] == 0 and rep["rejected"] == 0  # planned within limits: nothing to clamp
    # 60 deg at half of 120 deg/s with min-jerk peak 1.875x: ~1.9 s of control, at 30 Hz ~56 steps
    assert 40 <= guard.layer.report.total_steps - n_before <= 56 + 20
    assert ep.state is EpisodeState.IDLE and ep.can_start  # sim: automatic start


def test_time_limit_success_and_records(sim):
    robot, guard = sim
    records = []
    expert = ScriptedExpert(ExpertConfig(task="reach"))
    takeover = Takeover(ExpertSource(expert.act))
    ep = EpisodeManager(
        guard,
        EpisodeConfig(time_limit_s=1.0, seed=3),
        takeover=takeover,
        task_success=robot.task_success,
        env_reset=robot.reset,
    )
    ep.on_record(records.append)
    assert ep.reset()
    ep.start()
    out = run_episode(ep, guard, takeover, policy=lambda obs: hold_policy(guard))
    assert out.truncated and not out.terminated and out.reason == "time_limit" and out.success is False
    assert ep.records[-1].steps == 30 and ep.records[-1].duration_s == pytest.approx(1.0)
    assert ep.state is EpisodeState.RESETTING
    with pytest.raises(EpisodeError, match="reset"):
        ep.start()

    assert ep.reset()
    ep.start()
    expert.reset()
    takeover.request(True)  # the scripted expert solves it: a human-driven success
    out = run_episode(ep, guard, takeover)
    rec = ep.records[-1]
    assert out.terminated and out.success and rec.termination == "success" and rec.reward == 1.0
    assert rec.interventions == 1 and rec.intervention_steps == rec.steps and rec.intervention_rate == 1.0
    assert rec.index == 1 and rec.seed == 4 and set(rec.safety) >= {"steps", "clamped_steps", "events"}
    assert records == ep.records


def test_learner_link_gates_new_episodes_and_ends_the_running_one(sim):
    robot, guard = sim
    t = [0.0]
    link = LinkWatchdog(timeout_s=5.0, clock=lambda: t[0])
    ep = EpisodeManager(guard, EpisodeConfig(), link=link, task_success=robot.task_success)
    assert ep.reset()
    link.lost("learner stream broke")
    assert not ep.can_start and "learner link down" in ep.why_not_start()
    with pytest.raises(EpisodeError, match="learner link down"):
        ep.start()
    link.heartbeat()
    ep.start()
    ep.record_step(result=guard.step(None))
    t[0] += 6.0  # silence longer than the timeout counts as lost too
    out = ep.record_step(result=guard.step(hold_policy(guard)))
    assert out.done and out.reason == "link_lost" and out.truncated
    assert guard.holding and guard.status().hold_reason == "link_lost"
    assert link.losses == 2


def test_estop_ends_episode_and_blocks_reset_until_cleared(sim):
    robot, guard = sim
    ep = EpisodeManager(guard, EpisodeConfig(), task_success=robot.task_success)
    assert ep.reset()
    ep.start()
    guard.estop("operator key")
    out = ep.record_step(result=guard.step(dict(AWAY)))
    assert out.reason == "estop" and out.truncated
    assert not ep.reset() and not ep.can_start and "e-stop" in ep.why_not_start()
    guard.clear_estop()
    assert ep.reset() and ep.can_start


def test_rerecord_repeats_the_index_and_operator_marks_win(sim):
    robot, guard = sim
    ep = EpisodeManager(guard, EpisodeConfig(seed=0), task_success=robot.task_success)
    assert ep.reset()
    ep.start()
    ep.record_step(result=guard.step(None))
    ep.request_rerecord()
    out = ep.record_step(result=guard.step(None))
    assert out.reason == "rerecord" and ep.records[-1].rerecord
    assert ep.reset()
    assert ep.start() == 0 and ep.attempt == 1
    ep.mark_failure()
    out = ep.record_step(result=guard.step(None))
    assert out.terminated and out.success is False and ep.records[-1].termination == "failure"
    assert ep.index == 1 and ep.attempt == 0


def test_real_robot_waits_for_operator_and_reward_classifier_hook(sim):
    robot, guard = sim
    ep = EpisodeManager(
        guard,
        EpisodeConfig(auto_start=False, classifier_success_threshold=0.5, time_limit_s=2.0),
        reward_classifier=lambda obs: 1.0 if obs["shoulder_pan.pos"] > 10.0 else 0.1,
    )
    assert ep.reset()
    assert ep.state is EpisodeState.WAITING_CONFIRMATION and "confirm" in ep.why_not_start()
    ep.confirm()
    ep.start()
    target = {k: v for k, v in guard.present().items()}
    target["shoulder_pan.pos"] = 30.0
    rewards = []
    while True:
        res = guard.step(target)
        out = ep.record_step(result=res, observation=guard.observation())
        rewards.append(out.reward)
        if out.done:
            break
    assert out.success and rewards[0] == pytest.approx(0.1) and rewards[-1] == 1.0
    assert ep.records[-1].reward == pytest.approx(sum(rewards))


def test_home_pose_must_be_inside_limits(sim):
    _, guard = sim
    with pytest.raises(ValueError, match="outside the joint limit"):
        EpisodeManager(guard, EpisodeConfig(home_pose={**AWAY, "elbow_flex.pos": 170.0}))
    with pytest.raises(ValueError, match="reset_profile"):
        EpisodeManager(guard, EpisodeConfig(reset_profile="jerk"))


def test_begin_attempt_repeats_an_index_and_is_refused_mid_episode(sim):
    """What an evaluation needs: run episode 0 again as its attempt 1, or replay the scene of episode 3."""
    robot, guard = sim
    ep = EpisodeManager(guard, EpisodeConfig(seed=100, time_limit_s=0.1), env_reset=robot.reset)
    assert ep.reset()
    ep.start()
    with pytest.raises(EpisodeError, match="running"):
        ep.begin_attempt(0, 1)
    run_episode(ep, guard)
    assert (ep.index, ep.attempt) == (1, 0)
    ep.begin_attempt(0, 1)
    assert ep.reset() and ep.start() == 0 and ep.seed == 100
    run_episode(ep, guard)
    assert (ep.records[-1].index, ep.records[-1].attempt) == (0, 1)
    ep.begin_attempt(3)
    assert (ep.index, ep.attempt, ep.seed) == (3, 0, 103)
    with pytest.raises(ValueError):
        ep.begin_attempt(-1)


def test_reset_in_place_resets_the_scene_without_driving_home(sim):
    """The batched sim rollouts: the simulator teleports its arm home and draws the scene from the seed;
    no control steps are spent, and start() may follow at once."""
    robot, guard = sim
    seeds = []
    ep = EpisodeManager(guard, EpisodeConfig(), env_reset=lambda s: (seeds.append(s), robot.reset(seed=s)))
    guard.move_to(AWAY, tolerance=3.0)
    steps = guard.layer.report.total_steps
    ep.reset_in_place(5)
    assert seeds == [5] and guard.layer.report.total_steps == steps
    home = {f"{m}.pos": v for m, v in robot.home_position.items()}
    assert max(abs(guard.present()[k] - home[k]) for k in home) < 1e-3
    assert ep.state is EpisodeState.IDLE and ep.start() == 0
    with pytest.raises(EpisodeError, match="running"):
        ep.reset_in_place(6)
    no_sim = EpisodeManager(guard, EpisodeConfig())
    with pytest.raises(EpisodeError, match="simulator"):
        no_sim.reset_in_place(1)


def test_no_drive_home_while_the_link_is_down_and_a_link_loss_stops_a_running_one(sim):
    """docs/safety.md: on link loss the arm holds. The reset used to start a few ms after the hold, with
    the link still down; now it waits for the link, and a link lost mid-drive stops the drive and holds."""
    robot, guard = sim
    link = LinkWatchdog(timeout_s=5.0)
    ep = EpisodeManager(guard, EpisodeConfig(), link=link, env_reset=robot.reset)
    guard.move_to(AWAY, tolerance=3.0)
    link.lost("learner silent")
    steps = guard.layer.report.total_steps
    before = guard.present()
    assert not ep.reset() and ep.state is EpisodeState.RESETTING
    assert guard.layer.report.total_steps == steps and ep.reset_steps_total == 0  # nothing moved
    assert max(abs(guard.present()[k] - v) for k, v in before.items()) < 0.5

    link.heartbeat()
    step, n = guard.step, [0]

    def step_then_lose(action, source="policy"):
        n[0] += 1
        if n[0] == 10:
            link.lost("learner silent again")
        return step(action, source)

    guard.step = step_then_lose
    assert not ep.reset()  # stopped after its 10th step, holding
    assert ep.reset_steps_total == 10 and ep.state is EpisodeState.RESETTING
    assert guard.holding and guard.status().hold_reason == "link_lost"
    assert max(abs(guard.present()[k] - v) for k, v in AWAY.items()) > 3.0  # not home: it stopped

    link.heartbeat()
    guard.step = step
    assert ep.reset() and ep.state is EpisodeState.IDLE  # link back: home now
    home = {f"{m}.pos": v for m, v in robot.home_position.items()}
    assert max(abs(guard.present()[k] - home[k]) for k in home) <= ep.config.home_tolerance
    total = ep.reset_steps_total
    assert total > 10
    ep.start()
    out = run_episode(ep, guard, policy=lambda obs: hold_policy(guard))
    assert out.done and ep.records[-1].reset_steps == total  # both drives belong to this episode
    assert ep.reset()
    ep.start()
    run_episode(ep, guard, policy=lambda obs: hold_policy(guard))
    assert ep.records[-1].reset_steps == ep.reset_steps_total - total
