"""The simulated operator (`--teleop.type=sim_operator`) on the real MuJoCo sim, through the real Takeover.

The test plays the actor: each control step `Takeover.arbitrate` asks the operator for its events and, when
it intervenes, for its action; a scripted "policy" drives otherwise. Only the test reads the simulator's
ground truth (`task_success`); the operator sees the arm through an `OperatorView`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import draccus
import numpy as np
import pytest
from lerobot.robots import RobotConfig
from lerobot.robots.so_follower import SO101Follower, SO101FollowerConfig
from lerobot.teleoperators import TeleoperatorConfig

from hardware import factory, so101_model
from hardware.factory import HardwareConfigError
from hardware.sim import SimOperatorTeleop, SimOperatorTeleopConfig, SimSO101Follower, SimSO101FollowerConfig
from hardware.sim.expert import ExpertConfig, ScriptedExpert
from hardware.sim.operator import OperatorView
from hardware.takeover import FAILURE, SUCCESS, Takeover, TeleopSource

JOINTS = tuple(f"{m}.pos" for m in so101_model.MOTORS)
HOME = so101_model.as_action(so101_model.HOME_POSITION)


@dataclass
class Trace:
    intervention: list[bool] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)  # "success" / "failure" / ""
    sim_success: list[bool] = field(default_factory=list)  # ground truth, for the test only
    share_ok: list[bool] = field(default_factory=list)

    @property
    def key(self) -> str:
        return next((k for k in self.keys if k), "")

    def streaks(self) -> list[int]:
        out, n = [], 0
        for flag in [*self.intervention, False]:
            if flag:
                n += 1
            elif n:
                out.append(n)
                n = 0
        return out


def episode(robot, teleop, policy, seed: int, steps: int, share: float | None = None) -> Trace:
    """One episode as the actor runs it: reset the scene, reset the operator, arbitrate every step."""
    robot.reset(seed=seed)
    teleop.reset()
    takeover = Takeover(TeleopSource(teleop))
    trace = Trace()
    for _ in range(steps):
        obs = robot.get_observation()
        decision = takeover.arbitrate(obs, lambda obs=obs: policy(obs))
        key = SUCCESS if decision.events.get(SUCCESS) else FAILURE if decision.events.get(FAILURE) else ""
        trace.intervention.append(decision.intervention)
        trace.keys.append(key)
        trace.sim_success.append(robot.task_success())
        if share is not None:
            st = teleop.stats()
            trace.share_ok.append(st["intervened_steps"] <= share * st["steps"] + 1e-9)
        robot.send_action(decision.action)
        if key:
            break
    return trace


def make(robot, **kw) -> SimOperatorTeleop:
    teleop = factory.make_teleoperator(SimOperatorTeleopConfig(**kw), robot=robot)
    factory.connect_teleoperator(teleop)
    return teleop


def stuck(obs):
    """A policy that never leaves home."""
    return HOME


def hold(obs):
    """A policy that keeps the arm where it is."""
    return {k: obs[k] for k in JOINTS}


def away(obs):
    """A policy that swings the arm round to the side, out of the workspace the operator expects."""
    return {**HOME, "shoulder_pan.pos": 100.0}


class Expert:
    """The scripted expert as a (good) policy; `freeze_grasp`: stop once the jaws closed, never lift."""

    def __init__(self, task: str, freeze_grasp: bool = False) -> None:
        self.expert = ScriptedExpert(ExpertConfig(task=task))
        self.freeze_grasp = freeze_grasp
        self.frozen = None

    def __call__(self, obs):
        if self.frozen is not None:
            return self.frozen
        action = self.expert.act(obs)
        if self.freeze_grasp and self.expert._phase == "lift":
            self.frozen = {**action, **{k: obs[k] for k in JOINTS}, "gripper.pos": 0.0}
            return self.frozen
        return action


@pytest.fixture(scope="module")
def reach(tmp_path_factory):
    r = SimSO101Follower(SimSO101FollowerConfig(task="reach", calibration_dir=tmp_path_factory.mktemp("c")))
    r.connect()
    yield r
    r.disconnect()


@pytest.fixture(scope="module")
def pick(tmp_path_factory):
    r = SimSO101Follower(
        SimSO101FollowerConfig(task="pick_cube", calibration_dir=tmp_path_factory.mktemp("c"))
    )
    r.connect()
    yield r
    r.disconnect()


# ---- what it reacts to -------------------------------------------------------------------------------
def test_does_not_take_over_a_good_policy_and_presses_success(reach, pick):
    for robot, task, seeds in ((reach, "reach", range(4)), (pick, "pick_cube", (0, 1))):
        teleop = make(robot)
        for seed in seeds:
            trace = episode(robot, teleop, Expert(task), seed, 300)
            assert not any(trace.intervention), (task, seed)
            assert trace.key == SUCCESS, (task, seed)
            # it pressed after (a reaction delay) it could see what the simulator calls success
            first = trace.sim_success.index(True)
            assert 0 < len(trace.keys) - 1 - first <= 0.5 * robot.config.fps + 1
        assert teleop.stats()["takeovers"] == 0 and teleop.stats()["success_presses"] == len(seeds)


def test_takes_over_a_stuck_policy_after_a_reaction_delay_and_hands_back_near_the_goal(reach):
    teleop = make(reach, max_intervention_share=None)
    trace = episode(reach, teleop, hold, seed=0, steps=600)
    start = trace.intervention.index(True)
    window, (lo, hi) = round(1.5 * 30), (0.3 * 30, 0.8 * 30)
    assert window + lo <= start <= window + hi + 1  # no progress for 1.5 s, then 0.3-0.8 s to react
    st = teleop.stats()
    assert st["triggers"]["no_progress"] >= 1 and st["handbacks"]["near_goal"] >= 1
    assert st["takeovers"] == len(trace.streaks()) and st["intervened_steps"] == sum(trace.intervention)
    # handed back 3 cm short of the target; the arm settles into the 2.5 cm success radius
    assert st["takeovers"] == 1 and trace.key == SUCCESS and any(trace.sim_success)

    # a policy that swings the arm away after every hand-back: 3 takeovers (the per-episode cap), then
    # FAILURE once 90 % of the episode time (10 s here) is gone without progress
    teleop = make(reach, max_intervention_share=None, episode_time_s=10.0)
    trace = episode(reach, teleop, away, seed=1, steps=400)
    assert teleop.stats()["takeovers"] == 3 and trace.key == FAILURE and not any(trace.sim_success)
    assert 0.9 * 10 * 30 <= len(trace.keys) <= 0.9 * 10 * 30 + 0.5 * 30 + 1


def test_stalled_grasp_makes_it_take_over_and_the_expert_lifts_the_cube(pick):
    # a long no-progress window: only the stalled grasp (1 s with the jaws shut and the cube still) fires
    teleop = make(pick, max_intervention_share=None, progress_window_s=5.0)
    trace = episode(pick, teleop, Expert("pick_cube", freeze_grasp=True), seed=0, steps=400)
    st = teleop.stats()
    assert st["triggers"]["stalled_grasp"] == st["takeovers"] == 1 and st["triggers"]["no_progress"] == 0
    assert trace.intervention.index(True) < 5.0 * 30
    assert any(trace.sim_success) and trace.key == SUCCESS


def test_arm_leaving_the_workspace_makes_it_take_over_quickly(reach):
    teleop = make(reach, max_intervention_share=None, handback_near_goal=False)
    trace = episode(reach, teleop, away, seed=1, steps=120)
    assert teleop.stats()["triggers"]["out_of_workspace"] >= 1
    assert trace.intervention.index(True) < round(1.5 * 30)  # long before the no-progress window


def test_hands_back_within_max_takeover_s(reach):
    teleop = make(reach, max_intervention_share=None, handback_near_goal=False, max_takeover_s=0.5)
    trace = episode(reach, teleop, away, seed=2, steps=300)
    assert trace.streaks() and max(trace.streaks()) <= round(0.5 * 30)
    assert teleop.stats()["handbacks"]["timeout"] >= 1


# ---- budget, keys, off -------------------------------------------------------------------------------
def test_intervention_share_and_takeovers_per_episode_are_respected(reach):
    teleop = make(reach, max_intervention_share=0.1, press_keys=False)
    for seed in range(3):
        trace = episode(reach, teleop, away, seed, 200, share=0.1)
        assert all(trace.share_ok)
    st = teleop.stats()
    assert st["takeovers"] >= 1 and st["intervened_steps"] <= 0.1 * st["steps"]

    teleop = make(reach, max_intervention_share=None, max_takeovers_per_episode=1, max_takeover_s=0.3)
    for seed in range(2):
        assert len(episode(reach, teleop, away, seed, 200).streaks()) == 1
    assert teleop.stats()["takeovers"] == 2


def test_failure_key_when_the_episode_is_hopeless(reach):
    teleop = make(reach, max_takeovers_per_episode=0, episode_time_s=3.0)
    trace = episode(reach, teleop, stuck, seed=4, steps=200)
    assert trace.key == FAILURE and not any(trace.intervention)
    assert 0.9 * 3.0 * 30 <= len(trace.keys) <= 0.9 * 3.0 * 30 + 0.5 * 30 + 1
    assert teleop.stats()["failure_presses"] == 1

    quiet = make(reach, max_takeovers_per_episode=0, episode_time_s=3.0, press_keys=False)
    assert episode(reach, quiet, stuck, seed=4, steps=150).key == ""


def test_off_mode_never_intervenes_nor_presses_keys(reach):
    teleop = make(reach, mode="off")
    trace = episode(reach, teleop, away, seed=0, steps=150)
    trace2 = episode(reach, teleop, Expert("reach"), seed=1, steps=150)
    assert not any(trace.intervention + trace2.intervention) and not any(trace.keys + trace2.keys)
    st = teleop.stats()
    assert st["takeovers"] == st["intervened_steps"] == st["key_presses"] == 0 and st["steps"] == 300
    assert any(trace2.sim_success)


# ---- determinism, honesty, episodes ------------------------------------------------------------------
def test_same_seed_same_decisions(reach):
    def run(seed):
        teleop = make(
            reach, seed=seed, react_probability=0.5, max_takeover_s=1.0, max_intervention_share=None
        )
        traces = [episode(reach, teleop, stuck, s, 300) for s in (5, 6)]
        return [(t.intervention, t.keys) for t in traces], teleop.stats()

    first, again = run(7), run(7)
    assert first == again
    assert any(run(s)[0] != first[0] for s in (8, 9))  # the reaction delays and misses come from the seed


class Forbidden(BaseException):
    """Raised (past any `except Exception`) when the operator reaches for what a person cannot see."""


class _Watched:
    def __init__(self, target, allowed: set[str], log: list[str], prefix: str) -> None:
        object.__setattr__(self, "_t", (target, allowed, log, prefix))

    def __getattribute__(self, name):
        target, allowed, log, prefix = object.__getattribute__(self, "_t")
        log.append(prefix + name)
        if name == "config" and "config" in allowed:
            return _Watched(target.config, {"task", "fps"}, log, "config.")
        if name == "get_observation" and name in allowed:
            return lambda: log.append("get_observation()") or target.get_observation()
        if name in allowed:
            return getattr(target, name)
        raise Forbidden(f"sim_operator read {prefix}{name}")

    def __setattr__(self, name, value):
        raise Forbidden(f"sim_operator wrote {name}")


def test_never_reads_hidden_state(reach):
    """Bound to a proxy that only lets through get_observation, config.task and config.fps."""
    log: list[str] = []
    proxy = _Watched(reach, {"get_observation", "config"}, log, "")
    teleop = SimOperatorTeleop(SimOperatorTeleopConfig(max_intervention_share=None))
    teleop.bind(proxy)
    teleop.connect()
    trace = episode(reach, teleop, hold, seed=3, steps=600)  # the test drives `reach` itself
    assert any(trace.intervention) and trace.key == SUCCESS
    assert set(log) <= {"get_observation", "get_observation()", "config", "config.task", "config.fps"}
    assert log.count("get_observation()") == len(trace.keys) + sum(trace.intervention)  # look; act
    seen = teleop.view()
    assert set(seen) == {*JOINTS, "target.x", "target.y", "target.z"}
    for holder in (teleop, teleop.operator, teleop.view):
        assert not any(v is reach or v is proxy for v in vars(holder).values())


def test_view_filters_the_observation_to_what_a_person_sees():
    obs = {**HOME, "cube.x": 0.2, "cube.y": 0.0, "cube.z": 0.0125, "cube.yaw": 3.0, "front": np.zeros(3)}
    view = OperatorView(lambda: {**obs, "secret.sim_time": 1.0}, "pick_cube", 30)
    assert set(view()) == {*JOINTS, "cube.x", "cube.y", "cube.z", "cube.yaw"}
    with pytest.raises(ValueError, match="knows tasks"):
        OperatorView(lambda: obs, "none", 30)
    with pytest.raises(KeyError, match="cannot see"):
        OperatorView(lambda: HOME, "reach", 30)()


def test_detects_a_new_episode_without_reset(reach, pick):
    for robot, policy in ((reach, stuck), (pick, away)):
        teleop = make(robot)
        episode(robot, teleop, policy, seed=0, steps=40)
        op = teleop.operator
        assert op.episode == 0 and op.step == 40
        robot.reset(seed=11)  # the actor forgot teleop.reset(): the scene starting over is visible
        teleop.get_teleop_events()
        assert op.episode == 1 and op.step == 1
        for _ in range(5):
            robot.send_action(HOME)
            teleop.get_teleop_events()
        assert op.episode == 1 and op.step == 6


# ---- factory and config ------------------------------------------------------------------------------
@dataclass
class RunConfig:
    robot: RobotConfig
    teleop: TeleoperatorConfig | None = None


def test_factory_builds_binds_and_refuses(reach, tmp_path):
    assert "sim_operator" in factory.TELEOP_TYPES
    cfg = draccus.parse(
        RunConfig,
        args=[
            "--robot.type=sim_so101",
            "--teleop.type=sim_operator",
            "--teleop.mode=off",
            "--teleop.reaction_delay_s=[0.1,0.2]",
        ],
    )
    assert isinstance(cfg.teleop, SimOperatorTeleopConfig) and cfg.teleop.mode == "off"
    assert tuple(cfg.teleop.reaction_delay_s) == (0.1, 0.2)
    teleop = factory.make_teleoperator(SimOperatorTeleopConfig(), robot=reach)
    assert isinstance(teleop, SimOperatorTeleop) and teleop.view.task == "reach" and teleop.view.fps == 30
    factory.connect_teleoperator(teleop)
    assert set(teleop.get_action()) == set(reach.action_features)
    teleop.disconnect()

    with pytest.raises(HardwareConfigError, match="needs the simulated robot"):
        factory.make_teleoperator(SimOperatorTeleopConfig())
    real = SO101Follower(SO101FollowerConfig(port="/dev/x", id="a", calibration_dir=tmp_path))
    with pytest.raises(TypeError, match="sim_so101"):
        factory.make_teleoperator(SimOperatorTeleopConfig(), robot=real)
    with pytest.raises(ValueError, match="pick_cube"):
        factory.make_teleoperator(SimOperatorTeleopConfig(task="pick_cube"), robot=reach)
    with pytest.raises(ValueError, match="mode"):
        SimOperatorTeleopConfig(mode="sometimes")
