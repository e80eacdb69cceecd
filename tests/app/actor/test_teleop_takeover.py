"""Takeover with a configured teleoperator (`teleop` in the run config), end to end in the actor.

The actor runs in-process against an in-process learner over real loopback gRPC (as in test_actor.py). The
leader arm is LeRobot's own SO101Leader on a packet-level simulated Feetech bus (tests/mocks) whose joints a
scripted "hand" holds far from the follower; the gamepad is LeRobot's own GamepadTeleop with a fake
controller behind it (no USB device here). What must hold: console takeover / the gamepad's intervention
button hand the arm to the human, the follower goes to the human's pose no faster than the safety layer's
clamps allow, those chunks reach the learner flagged as interventions with the executed human actions,
hand-back resumes the policy from the present state without a jump, and the teleop is let go on exit.
"""

from __future__ import annotations

import pytest
import torch

from app.actor.loop import Actor
from hardware import so101_model
from tests.app.actor.conftest import LearnerThread
from tests.mocks.calibration_files import SO101_RANGES, calibrate_registers, write_calibration_file
from tests.mocks.feetech_bus import so101_arm

pytest_plugins = ["tests.mocks.fixtures"]

MOTORS = list(so101_model.MOTORS)
KEYS = [f"{m}.pos" for m in MOTORS]
LEADER_PORT = "/dev/mock_so101_leader"
# Where the operator holds the leader (follower units: degrees, gripper 0..100): 45 deg of pan and 60 deg
# of wrist roll away from the follower's home pose, i.e. many clamped control steps away.
LEADER_POSE = {**so101_model.HOME_POSITION, "shoulder_pan": 45.0, "wrist_roll": 60.0, "gripper": 50.0}
EPS = 1e-6


def _ticks(motor: str, value: float) -> float:
    """Follower units -> the raw shaft position that makes a calibrated leader joint read `value`
    (LeRobot's degrees: about the middle of the calibrated range; gripper: 0..100 of the range)."""
    lo, hi = SO101_RANGES[motor]
    if motor == "gripper":
        return lo + value / 100.0 * (hi - lo)
    return (lo + hi) / 2 + value * 4095 / 360


@pytest.fixture
def leader(sim_ports, calib_dir):
    """A calibrated SO-101 leader on a simulated port, held by the operator at LEADER_POSE."""
    arm = so101_arm()
    sim_ports.add(LEADER_PORT, arm.bus)
    write_calibration_file(calib_dir / "lead1.json", calibrate_registers(arm, SO101_RANGES))
    arm.script({m: (lambda _i, t=round(_ticks(m, LEADER_POSE[m])): t) for m in MOTORS})
    return arm


def _leader_args(calib_dir) -> list[str]:
    return [
        "--teleop.type=so101_leader",
        f"--teleop.port={LEADER_PORT}",
        "--teleop.id=lead1",
        f"--teleop.calibration_dir={calib_dir}",
    ]


def _actor(run_config, learner, *extra) -> tuple[Actor, list, list]:
    cfg = run_config(f"--transport.port={learner.port}", *extra)
    actor = Actor(cfg, progress=None)
    sent: list = []
    original = actor.client.send_rollout
    actor.client.send_rollout = lambda r: (sent.append(r), original(r))
    steps: list[dict] = []  # per control step: who drove, the present pose before it, what was commanded

    apply = actor.executor.pacer.apply

    def traced(decision):
        before = actor.guard.present()
        result = apply(decision)
        steps.append(
            {
                "source": decision.source,
                "human": decision.intervention,
                "handed_back": decision.handed_back,
                "requested": None if decision.action is None else dict(decision.action),
                "present": before,
                "command": dict(result.action),
                "held": result.held,
            }
        )
        return result

    actor.executor.pacer.apply = traced
    return actor, sent, steps


def _assert_within_clamps(actor: Actor, steps: list[dict]) -> None:
    """Every command is within max_step of the pose it started from and within max_velocity / control_hz
    of the command before it: human or policy, no step jumps."""
    s = actor.cfg.safety
    for prev, step in zip(steps, steps[1:], strict=False):
        for k in KEYS:
            grip = k == "gripper.pos"
            max_step = s.max_step_gripper if grip else s.max_step
            per_step = (s.max_velocity_gripper if grip else s.max_velocity) / s.control_hz
            assert abs(step["command"][k] - step["present"][k]) <= max_step + EPS, (k, step)
            assert abs(step["command"][k] - prev["command"][k]) <= per_step + EPS, (k, prev, step)


def test_leader_arm_takeover_from_the_console_follows_within_the_clamps_and_hands_back_without_a_jump(
    run_config, learner, leader, calib_dir
):
    from app.control.protocol import Command

    actor, sent, steps = _actor(
        run_config,
        learner,
        *_leader_args(calib_dir),
        "--actor.control.port=0",  # the console channel: takeover arrives as the console's `t` command
        "--actor.episodes=1",
        "--episode.time_limit_s=3.0",
    )
    assert actor.teleop is not None and not actor.teleop.is_connected  # built from the config, not opened
    assert actor.human.label == "leader arm"  # what the console names it (not "so100_leader")
    # The console's commands, sent when the episode reaches these control steps (between chunks, where
    # the actor polls its console): `t` (take over) at step 10, `t` again (hand back) at step 45.
    script = {10: Command.TAKEOVER_ON, 45: Command.TAKEOVER_OFF}
    polled = []

    def poll_commands(original=actor.control.poll_commands):
        due = [c for at, c in script.items() if actor.env_steps >= at and c not in polled]
        polled.extend(due)
        return original() + due

    actor.control.poll_commands = poll_commands
    assert actor.run() == 0
    assert polled == [Command.TAKEOVER_ON, Command.TAKEOVER_OFF]
    assert not actor.teleop.is_connected  # let go on exit
    assert actor.guard.closed

    human = [i for i, s in enumerate(steps) if s["human"]]
    assert human == list(range(10, 45)), human
    leader_reading = steps[human[0]]["requested"]
    for k in KEYS:  # the human's action is the leader's pose, read over the bus
        assert leader_reading[k] == pytest.approx(LEADER_POSE[k.removesuffix(".pos")], abs=0.1), k
    # Far away at the start: the first human command is clamped, not the leader's pose.
    first = steps[human[0]]
    assert abs(first["command"]["wrist_roll.pos"] - leader_reading["wrist_roll.pos"]) > 30
    # ... and at the end of the takeover the follower is commanded to the leader's pose and is there.
    last = steps[human[-1]]
    for k in KEYS:
        assert last["command"][k] == pytest.approx(leader_reading[k], abs=1e-3), k
    present = steps[human[-1] + 1]["present"]
    assert abs(present["shoulder_pan.pos"] - LEADER_POSE["shoulder_pan"]) < 5.0

    # Hand-back: that step holds (the chunk planned before the takeover is dropped), then the policy
    # drives again from where the arm is, within the clamps.
    back = steps[45]
    assert back["handed_back"] and back["source"] == "policy" and back["requested"] is None and back["held"]
    assert all(s["source"] == "policy" for s in steps[45:])
    _assert_within_clamps(actor, steps)

    (rollout,) = sent
    b = rollout.batch
    flagged = torch.nonzero(b["intervention"]).flatten().tolist()
    assert flagged == list(range(2, 9))  # chunks 2..8 (steps 10..44) were the human's
    assert int(b["takeover_start"].sum()) == 1 and bool(b["takeover_start"][2])
    executed = torch.tensor([[s["command"][k] for k in KEYS] for s in steps[10:45]])
    human_rows = b["human_action"][2:9, : actor.exec_h].reshape(-1, len(KEYS))
    assert torch.allclose(human_rows, executed, atol=1e-4)  # what the arm was told, for BC / the critic
    # The chunk after hand-back was sampled from the observation at hand-back, not from the old plan.
    state = b["obs.observation.state"][10, : len(KEYS)]
    at_handback = torch.tensor([steps[46]["present"][k] for k in KEYS])
    assert torch.allclose(state, at_handback, atol=1e-3)
    record = actor.episodes.records[-1]
    assert record.interventions == 1 and record.intervention_rate == pytest.approx(35 / record.steps)


class FakePad:
    """Stands in for LeRobot's pygame GamepadController behind its real GamepadTeleop: the intervention
    button is held during control steps [press, release), the stick pushes +x, the gripper stays."""

    instances: list[FakePad] = []

    def __init__(self, press: int = 8, release: int = 38):
        self.press, self.release = press, release
        self.polls = 0  # should_intervene() calls: one per control step (get_teleop_events)
        self.running = False
        FakePad.instances.append(self)

    def start(self):
        self.running = True

    def stop(self):
        self.running = False

    def update(self):
        pass

    def should_intervene(self):
        held = self.press <= self.polls < self.release
        self.polls += 1
        return held

    def get_episode_end_status(self):
        return None

    def get_deltas(self):
        return 1.0, 0.0, 0.0

    def gripper_command(self):
        return "stay"


def test_gamepad_intervention_button_toggles_takeover(run_config, learner, monkeypatch):
    from lerobot.teleoperators.gamepad import gamepad_utils

    from hardware.kinematics import SO101Kinematics

    FakePad.instances.clear()
    monkeypatch.setattr(gamepad_utils, "GamepadController", FakePad)
    actor, sent, steps = _actor(
        run_config, learner, "--teleop.type=gamepad", "--actor.episodes=1", "--episode.time_limit_s=2.0"
    )
    assert type(actor.teleop).__name__ == "GamepadTeleop"
    assert actor.human.label == "gamepad"
    assert actor.run() == 0
    (pad,) = FakePad.instances
    assert not pad.running and not actor.teleop.is_connected  # stopped on exit

    human = [i for i, s in enumerate(steps) if s["human"]]
    assert human == list(range(8, 38)), human  # exactly while the button was held
    assert steps[38]["handed_back"] and all(s["source"] == "policy" for s in steps[38:])
    _assert_within_clamps(actor, steps)
    # +x on the stick moved the gripper forward (IK from the present pose, through the guard).
    fk = SO101Kinematics().fk
    start = fk({m: steps[8]["present"][f"{m}.pos"] for m in MOTORS})
    end = fk({m: steps[38]["present"][f"{m}.pos"] for m in MOTORS})
    assert end[0] - start[0] > 0.05, (start, end)  # 30 steps of 5 mm asked for 15 cm
    assert abs(end[2] - start[2]) < 0.03

    (rollout,) = sent
    b = rollout.batch
    assert bool(b["intervention"].any()) and int(b["takeover_start"].sum()) == 1
    assert actor.episodes.records[-1].interventions == 1


def test_sim_expert_as_the_configured_teleop(run_config, learner):
    actor, sent, steps = _actor(
        run_config,
        learner,
        "--teleop.type=sim_expert",
        "--actor.expert=false",  # the built-in expert is off: the teleop section alone provides it
        "--actor.expert_takeover_prob=1.0",
        "--actor.episodes=1",
    )
    assert actor.human.label == "sim expert"
    assert actor.run() == 0
    assert any(s["human"] for s in steps)
    (rollout,) = sent
    assert bool(rollout.batch["intervention"].any())
    assert not actor.teleop.is_connected


def test_teleop_config_errors_are_clear(run_config, learner, sim_ports, calib_dir):
    from hardware.factory import CalibrationMissingError, DeviceOpenError

    # no port in the config at all
    with pytest.raises(ValueError, match=r"teleop needs a serial port: set teleop.port.*lerobot-find-port"):
        run_config("--teleop.type=so101_leader", "--teleop.id=lead1")
    # a port but no calibration file: the error says which file and the command that writes it
    with pytest.raises(CalibrationMissingError, match=r"pirl calibrate --teleop.type=so10[01]_leader"):
        Actor(run_config(*_leader_args(calib_dir)), progress=None)
    # calibrated, but nothing on that port: a clear error, and the follower was never switched on
    write_calibration_file(calib_dir / "lead1.json", calibrate_registers(so101_arm(), SO101_RANGES))
    args = [a.replace(LEADER_PORT, "/dev/ttyNOPE3") for a in _leader_args(calib_dir)]
    actor = Actor(run_config(f"--transport.port={learner.port}", *args), progress=None)
    with pytest.raises(DeviceOpenError, match=r"teleop .*'/dev/ttyNOPE3' did not open.*lerobot-find-port"):
        actor.run()
    assert not actor.robot.is_connected


def test_teleop_that_cannot_drive_the_robot_is_refused_before_anything_is_built(tmp_path):
    from lerobot.robots.koch_follower import KochFollowerConfig
    from lerobot.teleoperators.gamepad import GamepadTeleopConfig
    from lerobot.teleoperators.so_leader import SO101LeaderConfig

    from app.run.config import _check_teleop
    from hardware.sim import SimExpertTeleopConfig, SimSO101FollowerConfig

    koch = KochFollowerConfig(port="/dev/ttyACM0", id="k", use_degrees=True)
    sim = SimSO101FollowerConfig(calibration_dir=tmp_path)
    with pytest.raises(ValueError, match="simulated arm only"):
        _check_teleop(SimExpertTeleopConfig(), koch)
    with pytest.raises(ValueError, match="SO-10x kinematics"):
        _check_teleop(GamepadTeleopConfig(), koch)
    with pytest.raises(ValueError, match=r"needs the leader arm's serial port.*--teleop.port=/dev/ttyACM1"):
        _check_teleop(SO101LeaderConfig(port="", id="lead1"), sim)
    with pytest.raises(ValueError, match="needs an id"):
        _check_teleop(SO101LeaderConfig(port="/dev/ttyACM1"), sim)
    with pytest.raises(ValueError, match="same units"):
        _check_teleop(SO101LeaderConfig(port="/dev/ttyACM1", id="lead1", use_degrees=False), sim)
    _check_teleop(SO101LeaderConfig(port="/dev/ttyACM1", id="lead1"), sim)  # a leader may drive the sim arm
    _check_teleop(GamepadTeleopConfig(), sim)


def test_random_takeovers_are_refused_on_a_real_arm(run_config, calib_dir):
    from lerobot.robots.so_follower import SO101FollowerConfig

    cfg = run_config(*_leader_args(calib_dir), "--actor.expert_takeover_prob=0.5")
    cfg.robot = SO101FollowerConfig(port="/dev/ttyACM0", id="arm1", use_degrees=True)
    with pytest.raises(ValueError, match="expert_takeover_prob is for the simulated arm only"):
        cfg.validate("actor")


def test_koch_leader_reads_in_the_followers_degrees(sim_ports, koch_sim, calib_dir):
    """LeRobot's Koch leader only speaks -100..100 range units; the actor reads it in degrees when the
    follower uses degrees, so the same shaft angle on both arms is the same number (else a takeover
    would send range units as degrees)."""
    from lerobot.robots.koch_follower import KochFollower, KochFollowerConfig
    from lerobot.teleoperators.koch_leader import KochLeaderConfig

    from hardware.factory import connect_robot, connect_teleoperator, leader_in_degrees, make_teleoperator
    from tests.mocks.calibration_files import KOCH_RANGES
    from tests.mocks.dynamixel_bus import koch_arm

    lead_arm = koch_arm(leader=True)
    sim_ports.add("/dev/mock_koch_leader", lead_arm.bus)
    write_calibration_file(calib_dir / "kl.json", calibrate_registers(lead_arm, KOCH_RANGES))
    write_calibration_file(calib_dir / "koch.json", calibrate_registers(koch_sim, KOCH_RANGES))
    pose = {"shoulder_pan": 2400, "shoulder_lift": 1500, "elbow_flex": 2600, "wrist_flex": 1900,
            "wrist_roll": 1000, "gripper": 2300}  # fmt: skip
    koch_sim.set_actual(pose)
    lead_arm.script({m: (lambda _i, t=t: t) for m, t in pose.items()})

    follower = connect_robot(
        KochFollower(
            KochFollowerConfig(port=koch_sim.port, id="koch", calibration_dir=calib_dir, use_degrees=True)
        )
    )
    leader = make_teleoperator(
        KochLeaderConfig(port="/dev/mock_koch_leader", id="kl", calibration_dir=calib_dir)
    )
    raw_units = None
    try:
        connect_teleoperator(leader)
        raw_units = leader.get_action()
        leader_in_degrees(leader)
        led, followed = leader.get_action(), follower.get_observation()
    finally:
        leader.disconnect()
        follower.disconnect()
    assert (
        abs(raw_units["shoulder_pan.pos"] - followed["shoulder_pan.pos"]) > 10
    )  # as LeRobot reads it: not degrees
    for k in followed:
        if (
            k == "gripper.pos"
        ):  # 0..100 on both already (the Koch leader's is a sprung trigger, held by torque)
            assert led[k] == raw_units[k]
        else:
            assert led[k] == pytest.approx(followed[k], abs=0.1), k


@pytest.mark.slow  # real time: a reset and a 3 s episode at 30 Hz on the simulated serial buses
def test_leader_takeover_on_the_serial_mocked_follower_in_real_time(run_config, so101_sim, leader, calib_dir):
    """The real-arm path: LeRobot's SO101Follower on a simulated Feetech bus, driven by the guard's real-time
    control thread, taken over by the (simulated-bus) leader. Every Goal_Position on the wire, policy,
    human, hand-back or reset, moves at most the velocity clamp from the one before it; the follower is
    commanded to the leader's pose; the human chunks reach the learner flagged; both arms are let go."""
    from app.control.protocol import Command
    from tests.calibration.test_check import goals_on_wire, wire_poses

    write_calibration_file(calib_dir / "arm1.json", calibrate_registers(so101_sim, SO101_RANGES))
    from lerobot.robots.so_follower import SO101FollowerConfig

    lt = LearnerThread(
        run_config("--policy.native.state_dim=6")
    )  # joints only: a real arm has no target keys
    try:
        cfg = run_config(
            f"--transport.port={lt.port}", "--policy.native.state_dim=6", *_leader_args(calib_dir),
            "--actor.control.port=0", "--actor.episodes=1", "--episode.time_limit_s=3.0",
            "--safety.handle_signals=false", "--episode.auto_start=true",
        )  # fmt: skip
        cfg.robot = SO101FollowerConfig(
            port=so101_sim.port, id="arm1", calibration_dir=calib_dir, use_degrees=True
        )
        cfg.episode.home_pose = {k: 0.0 for k in KEYS} | {"gripper.pos": 10.0}
        actor = Actor(cfg, progress=None)
        sent: list = []
        send = actor.client.send_rollout
        actor.client.send_rollout = lambda r: (sent.append(r), send(r))
        script = {10: Command.TAKEOVER_ON, 60: Command.TAKEOVER_OFF}
        polled: list = []

        def poll_commands(original=actor.control.poll_commands):
            due = [c for at, c in script.items() if actor.env_steps >= at and c not in polled]
            polled.extend(due)
            return original() + due

        actor.control.poll_commands = poll_commands
        assert actor.guard.mode == "realtime" and not actor.guard.is_sim
        so101_sim.bus.writes.clear()
        assert actor.run() == 0
    finally:
        lt.stop()
    assert polled == [Command.TAKEOVER_ON, Command.TAKEOVER_OFF]
    assert not actor.teleop.is_connected and not any(so101_sim[m].torque_enabled for m in MOTORS)

    poses = wire_poses(goals_on_wire(so101_sim, SO101_RANGES))
    assert len(poses) > 60
    s = cfg.safety
    tick = 360 / 4095
    for prev, pose in zip(poses, poses[1:], strict=False):
        for m in MOTORS:
            per_step = (s.max_velocity_gripper if m == "gripper" else s.max_velocity) / s.control_hz
            assert abs(pose[m] - prev[m]) <= per_step + 2 * tick, (m, prev, pose)
    reached = [p for p in poses if all(abs(p[m] - LEADER_POSE[m]) < 0.3 for m in MOTORS)]
    assert reached, "the follower was never commanded to the leader's pose"

    (rollout,) = sent
    b = rollout.batch
    assert bool(b["intervention"][2]) and int(b["takeover_start"].sum()) == 1
    assert not bool(b["intervention"][-1])  # the policy drove again after hand-back
    assert actor.episodes.records[-1].interventions == 1
