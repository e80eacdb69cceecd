"""`pirl eval` on LeRobot's real so101_follower over the packet-level serial mock, with a scripted operator.

Above the serial port everything is the real thing: LeRobot's SO101Follower and FeetechMotorsBus, the
guard's realtime control thread, smooth resets home, and the operator's answers (Enter to start, y/n/r/q
verdicts) arriving through the same `ask` callable that reads the terminal in `pirl eval`.
"""

from __future__ import annotations

import numpy as np
import pytest
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from lerobot.robots.koch_follower import KochFollowerConfig
from lerobot.robots.so_follower import SO101Follower, SO101FollowerConfig
from lerobot.teleoperators.gamepad.configuration_gamepad import GamepadTeleopConfig
from lerobot.teleoperators.so_leader import SO101LeaderConfig

from app.eval import EvalConfig, RecordConfig, run_eval
from hardware import so101_model
from hardware.episodes import EpisodeConfig
from hardware.safety.config import SafetyConfig
from tests.mocks.calibration_files import SO101_RANGES, calibrate_registers, write_calibration_file

pytest_plugins = ["tests.mocks.fixtures"]

BOX = ((0.05, -0.25, 0.03), (0.45, 0.25, 0.35))  # contains the mock's power-on pose (joints mid-range)


class Operator:
    """Answers prompts from a script and keeps what it was asked."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.prompts: list[str] = []

    def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


@pytest.fixture
def follower(so101_sim, calib_dir):
    write_calibration_file(calib_dir / "arm1.json", calibrate_registers(so101_sim, SO101_RANGES))
    robot_cfg = SO101FollowerConfig(port=so101_sim.port, id="arm1", calibration_dir=calib_dir)
    probe = SO101Follower(robot_cfg)  # read the power-on pose once: it is the home pose of these tests
    probe.connect(calibrate=False)
    home = {k: float(v) for k, v in probe.get_observation().items() if k.endswith(".pos")}
    probe.disconnect()
    return robot_cfg, home


def eval_cfg(policy, robot_cfg, home, episodes, **kw):
    return EvalConfig(
        policy=policy,
        episodes=episodes,
        robot=robot_cfg,
        safety=SafetyConfig(workspace_min=list(BOX[0]), workspace_max=list(BOX[1]), handle_signals=False),
        episode=EpisodeConfig(time_limit_s=0.3, home_pose=home, reset_duration_s=0.2),
        progress=False,
        **kw,
    )


def test_operator_confirms_starts_and_gives_verdicts(joints_policy, follower, so101_sim, tmp_path):
    robot_cfg, home = follower
    root = tmp_path / "ds"
    # ep 1: start, "yes"; ep 2: start, re-record (discarded, same episode again), start, "no"
    operator = Operator(["", "y", "", "r", "", "maybe", "n"])
    result = run_eval(
        eval_cfg(joints_policy, robot_cfg, home, 2, record=RecordConfig(root=str(root), task="hold still")),
        ask=operator,
    )
    assert not operator.answers and result.stopped is None
    starts = [p for p in operator.prompts if "Enter to start" in p]
    verdicts = [p for p in operator.prompts if "success?" in p]
    assert len(starts) == 3 and len(verdicts) == 4  # "maybe" is asked again
    assert [e["success"] for e in result.episodes] == [True, False]
    assert [e["episode"] for e in result.episodes] == [0, 1]
    assert all(e["termination"] == "time_limit" and e["steps"] == 9 for e in result.episodes)
    assert str(result.success) == "50.0% (1/2), 95% CI [9.5%, 90.5%]"
    assert so101_sim.bus.traffic["sync_write"] > 0  # it drove the (mock) motors
    assert not any(so101_sim[m].torque_enabled for m in so101_model.MOTORS)  # released at the end

    ds = LeRobotDataset("local/pirl_eval", root=root)
    assert ds.num_episodes == 2 and ds.num_frames == 18  # the re-recorded attempt is not in it
    frames = ds.hf_dataset.with_format("numpy")[:]
    success = np.asarray(frames["next.success"]).reshape(-1).astype(bool)
    reward = np.asarray(frames["next.reward"]).reshape(-1)
    assert success.tolist() == [False] * 8 + [True] + [False] * 9  # the verdict sits on the last frame
    assert reward.tolist() == [0.0] * 8 + [1.0] + [0.0] * 9
    assert not np.asarray(frames["intervention"]).any()
    assert ds[0]["task"] == "hold still" and ds.meta.robot_type == robot_cfg.type  # LeRobot's name for it


def test_operator_can_stop_and_keeps_the_partial_result(joints_policy, follower):
    robot_cfg, home = follower
    operator = Operator(["", "y", "q"])
    result = run_eval(eval_cfg(joints_policy, robot_cfg, home, 5), ask=operator)
    assert result.stopped == "operator quit"
    assert len(result.episodes) == 1 and result.success.successes == 1


def test_ctrl_c_keeps_the_finished_episodes(joints_policy, follower, tmp_path):
    robot_cfg, home = follower
    operator = Operator(["", "y", "", KeyboardInterrupt()])  # Ctrl-C at the second verdict
    root = tmp_path / "ds"
    cfg = eval_cfg(joints_policy, robot_cfg, home, 3, record=RecordConfig(root=str(root)))
    result = run_eval(cfg, ask=operator)
    assert result.stopped.startswith("interrupted")
    assert [e["success"] for e in result.episodes] == [True]
    assert LeRobotDataset("local/pirl_eval", root=root).num_episodes == 1  # finalised, readable


def test_real_robot_options_are_checked_before_connecting(joints_policy, follower):
    robot_cfg, home = follower
    with pytest.raises(ValueError, match="--takeover_prob drives the scripted sim expert"):
        run_eval(eval_cfg(joints_policy, robot_cfg, home, 1, takeover_prob=0.5), ask=Operator([]))
    pad = GamepadTeleopConfig()
    with pytest.raises(ValueError, match=r"needs an id \(teleop.id\)"):
        run_eval(eval_cfg(joints_policy, robot_cfg, home, 1, teleop=SO101LeaderConfig(port="/dev/x")))
    koch = KochFollowerConfig(port="/dev/mock_koch", id="k", use_degrees=True)
    with pytest.raises(ValueError, match="a Koch follower has none"):
        run_eval(eval_cfg(joints_policy, koch, home, 1, teleop=pad))
    with pytest.raises(ValueError, match="no home pose"):
        cfg = eval_cfg(joints_policy, robot_cfg, home, 1)
        cfg.episode.home_pose = {}
        run_eval(cfg, ask=Operator([]))


class FakeGamepad:
    """A teleoperator like LeRobot's gamepad: its intervention button is held from the 4th read on and its
    success button pressed at the 7th; it commands the home pose (already in joint degrees)."""

    def __init__(self, home):
        self.home, self.reads = home, 0

    def get_action(self):
        return dict(self.home)

    def get_teleop_events(self):
        self.reads += 1
        return {"is_intervention": self.reads >= 4, "success": self.reads == 7}


def test_teleop_takeover_and_success_button_end_the_episode(joints_policy, follower, tmp_path):
    from hardware.takeover import TeleopSource

    robot_cfg, home = follower
    operator = Operator([""])  # start only: the success button gives the verdict
    root = tmp_path / "ds"
    cfg = eval_cfg(joints_policy, robot_cfg, home, 1, record=RecordConfig(root=str(root)))
    result = run_eval(cfg, ask=operator, human=TeleopSource(FakeGamepad(home)))
    (ep,) = result.episodes
    assert (ep["termination"], ep["steps"], ep["success"]) == ("success", 7, True)
    assert ep["interventions"] == 1 and ep["intervention_steps"] == 4 and not ep["counted"]
    assert result.success.episodes == 0 and result.intervened == 1
    assert not any("success?" in p for p in operator.prompts)
    frames = LeRobotDataset("local/pirl_eval", root=root).hf_dataset.with_format("numpy")[:]
    assert np.asarray(frames["intervention"]).reshape(-1).tolist() == [False] * 3 + [True] * 4
    assert np.asarray(frames["next.success"]).reshape(-1).tolist() == [False] * 6 + [True]
