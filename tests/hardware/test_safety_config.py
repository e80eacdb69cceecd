"""SafetyConfig refuses what would silently weaken the protection: unknown joints in per-joint overrides,
negative, zero, non-finite and absurd values. Each error names the option; valid overrides still apply."""

from __future__ import annotations

import math

import pytest

from hardware import so101_model
from hardware.guard import RobotGuard
from hardware.safety.config import SafetyConfig
from hardware.safety.envelope import SafetyEnvelope
from hardware.safety.layer import SafetyLayer
from tests.hardware.test_guard import FakeArm

MOTORS = list(so101_model.MOTORS)

BAD_VALUES = [
    # (option, value, what the message says)
    ("max_step", 1e9, r"safety\.max_step must be in \(0, 360\] deg"),
    ("max_step", 0.0, r"safety\.max_step must be in \(0, 360\]"),
    ("max_step", -5.0, r"safety\.max_step must be in"),
    ("max_step", math.nan, r"safety\.max_step must be a finite number"),
    ("max_step", math.inf, r"safety\.max_step must be a finite number"),
    ("max_step", "10", r"safety\.max_step must be a number"),
    ("max_step_gripper", 101.0, r"safety\.max_step_gripper must be in \(0, 100\]"),
    ("max_velocity", 1e9, r"safety\.max_velocity must be in \(0, 3600\] deg/s"),
    ("max_velocity", -120.0, r"safety\.max_velocity must be in"),
    ("max_velocity_gripper", 0.0, r"safety\.max_velocity_gripper must be in \(0, 1000\]"),
    ("max_velocity_gripper", math.nan, r"safety\.max_velocity_gripper must be a finite"),
    ("control_hz", 0.0, r"safety\.control_hz must be in \(0, 1000\] Hz"),
    ("control_hz", 1e6, r"safety\.control_hz must be in"),
    ("control_hz", math.inf, r"safety\.control_hz must be a finite"),
    (
        "max_step_per_joint",
        {"wrist_roll": 1e9},
        r"safety\.max_step_per_joint\['wrist_roll'\] must be in \(0, 360\]",
    ),
    ("max_step_per_joint", {"wrist_roll": -1.0}, r"safety\.max_step_per_joint\['wrist_roll'\] must be in"),
    (
        "max_step_per_joint",
        {"gripper": 150.0},
        r"safety\.max_step_per_joint\['gripper'\] must be in \(0, 100\]",
    ),
    (
        "max_step_per_joint",
        {"wrist_roll": math.nan},
        r"safety\.max_step_per_joint\['wrist_roll'\] must be a fin",
    ),
    (
        "max_velocity_per_joint",
        {"elbow_flex": 0.0},
        r"safety\.max_velocity_per_joint\['elbow_flex'\] must be in",
    ),
    ("max_velocity_per_joint", {"elbow_flex": 1e5}, r"safety\.max_velocity_per_joint\['elbow_flex'\] .*3600"),
    ("max_velocity_per_joint", {"gripper": 5000.0}, r"safety\.max_velocity_per_joint\['gripper'\] .*1000"),
    (
        "joint_limits",
        {"gripper": [90.0, 10.0]},
        r"safety\.joint_limits\['gripper'\] must be \[low, high\] with",
    ),
    ("joint_limits", {"gripper": [5.0]}, r"safety\.joint_limits\['gripper'\] must be \[low, high\]"),
    (
        "joint_limits",
        {"gripper": [0.0, 200.0]},
        r"safety\.joint_limits\['gripper'\] must lie within \[0, 100\]",
    ),
    (
        "joint_limits",
        {"elbow_flex": [-1e9, 90.0]},
        r"safety\.joint_limits\['elbow_flex'\] must lie within \[-360",
    ),
    (
        "joint_limits",
        {"elbow_flex": [math.nan, 90.0]},
        r"safety\.joint_limits\['elbow_flex'\] must be a finite",
    ),
    (
        "joint_limits",
        {"elbow_flex": [-90.0, math.inf]},
        r"safety\.joint_limits\['elbow_flex'\] must be a finite",
    ),
    ("model_limit_margin", -1.0, r"safety\.model_limit_margin must be in \[0, 90\]"),
    ("model_limit_margin", 1e9, r"safety\.model_limit_margin must be in"),
    ("workspace_margin", -0.01, r"safety\.workspace_margin must be in \[0, 2\] m"),
    ("workspace_margin", math.nan, r"safety\.workspace_margin must be a finite"),
    ("watchdog_timeout_s", 0.0, r"safety\.watchdog_timeout_s must be in \(0, 10\] s"),
    ("watchdog_timeout_s", 1e9, r"safety\.watchdog_timeout_s must be in"),
    ("watchdog_timeout_s", math.inf, r"safety\.watchdog_timeout_s must be a finite"),
    ("lookahead_steps", -1.0, r"safety\.lookahead_steps must be >= 0"),
    ("lookahead_steps", math.nan, r"safety\.lookahead_steps must be a finite"),
    ("link_timeout_s", 0.0, r"safety\.link_timeout_s must be > 0"),
    ("link_timeout_s", math.nan, r"safety\.link_timeout_s must be a finite"),
    ("estop_signal", "SIGKILL", r"safety\.estop_signal must be a catchable signal"),
    ("estop_signal", "SIGINT", r"safety\.estop_signal must be"),
    ("estop_signal", "SIGUSR9", r"safety\.estop_signal must be"),
]


@pytest.mark.parametrize(
    ("option", "value", "message"), BAD_VALUES, ids=[f"{o}={v!r}" for o, v, _ in BAD_VALUES]
)
def test_bad_values_are_refused_naming_the_option(option, value, message):
    cfg = SafetyConfig(**{option: value})
    with pytest.raises(ValueError, match=message) as err:
        cfg.validate()
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("box_min", "box_max", "message"),
    [
        ([0.0, 0.0, 0.0], [0.3, 0.3, 1e9], r"safety\.workspace_max must be in \[-2, 2\] m"),
        ([-1e9, 0.0, 0.0], [0.3, 0.3, 0.3], r"safety\.workspace_min must be in"),
        ([0.0, 0.0, math.nan], [0.3, 0.3, 0.3], r"safety\.workspace_min must be a finite"),
        ([0.0, 0.4, 0.0], [0.3, 0.3, 0.3], r"safety\.workspace_min must be below safety\.workspace_max"),
        ([0.0, 0.0], [0.3, 0.3, 0.3], r"safety\.workspace_min must be \[x, y, z\]"),
    ],
)
def test_bad_workspace_boxes_are_refused(box_min, box_max, message):
    with pytest.raises(ValueError, match=message):
        SafetyConfig(workspace_min=box_min, workspace_max=box_max).validate()


def test_values_at_the_bounds_are_accepted():
    SafetyConfig(
        max_step=360.0,
        max_step_gripper=100.0,
        max_velocity=3600.0,
        max_velocity_gripper=1000.0,
        control_hz=1000.0,
        joint_limits={"elbow_flex": [-360.0, 360.0], "gripper": [0.0, 100.0]},
        model_limit_margin=0.0,
        watchdog_timeout_s=10.0,
        lookahead_steps=0.0,
        workspace_min=[-2.0, -2.0, -2.0],
        workspace_max=[2.0, 2.0, 2.0],
        estop_signal="",
    ).validate()


UNKNOWN_JOINTS = [
    ("joint_limits", {"wrist_rol": [-90.0, 90.0]}, "wrist_rol", "wrist_roll"),
    ("max_step_per_joint", {"shoulder_pan.pos": 5.0}, "shoulder_pan.pos", "shoulder_pan"),
    ("max_velocity_per_joint", {"elbow": 60.0}, "elbow", "elbow_flex"),
    ("max_velocity_per_joint", {"claw": 60.0}, "claw", None),
]


def _check_unknown_joint_message(msg: str, option: str, joint: str, suggestion: str | None) -> None:
    assert "\n" not in msg
    assert f"safety.{option}" in msg and repr(joint) in msg
    assert ", ".join(MOTORS) in msg  # the valid names
    if suggestion is None:
        assert "did you mean" not in msg
    else:
        assert f"did you mean {suggestion!r}?" in msg


@pytest.mark.parametrize(("option", "value", "joint", "suggestion"), UNKNOWN_JOINTS)
def test_unknown_joints_are_refused_when_the_layer_is_built(option, value, joint, suggestion):
    cfg = SafetyConfig(**{option: value})
    cfg.validate()  # the values are fine; only the robot knows its joints
    with pytest.raises(ValueError, match="unknown joint") as err:
        SafetyLayer.from_config(cfg, "so101_follower", MOTORS)
    _check_unknown_joint_message(str(err.value), option, joint, suggestion)


@pytest.mark.parametrize(("option", "value", "joint", "suggestion"), UNKNOWN_JOINTS)
def test_unknown_joints_are_refused_before_the_guard_touches_the_robot(option, value, joint, suggestion):
    arm = FakeArm()
    with pytest.raises(ValueError, match="unknown joint") as err:
        RobotGuard(
            arm,
            SafetyConfig(mode="lockstep", **{option: value}),
            robot_type="so101_follower",
            install_signal_handlers=False,
        )
    _check_unknown_joint_message(str(err.value), option, joint, suggestion)
    assert not arm.connected and arm.log == []  # never connected, nothing sent


def test_envelope_with_an_unknown_joint_is_refused(tmp_path):
    env = SafetyEnvelope(robot_type="so101_follower", joint_limits={"wrist_rool": (-30.0, 30.0)})
    path = env.save(tmp_path / "env.json")
    with pytest.raises(
        ValueError, match=r"envelope .*unknown joint 'wrist_rool' \(did you mean 'wrist_roll'\?\)"
    ):
        SafetyLayer.from_config(SafetyConfig(envelope_path=str(path)), "so101_follower", MOTORS)


def test_valid_per_joint_overrides_still_apply():
    cfg = SafetyConfig(
        joint_limits={"gripper": [5.0, 95.0], "shoulder_pan": [-45.0, 45.0]},
        max_step_per_joint={"wrist_roll": 20.0, "gripper": 50.0},
        max_velocity_per_joint={"elbow_flex": 60.0, "gripper": 500.0},
    )
    layer = SafetyLayer.from_config(cfg, "so101_follower", MOTORS)
    assert layer.limits["gripper"] == (5.0, 95.0) and layer.limits["shoulder_pan"] == (-45.0, 45.0)
    assert layer.max_step["wrist_roll"] == 20.0 and layer.max_step["gripper"] == 50.0
    assert layer.max_step["elbow_flex"] == cfg.max_step  # joints not named keep the default
    assert layer.max_velocity["elbow_flex"] == 60.0 and layer.max_velocity["gripper"] == 500.0
    g = RobotGuard(FakeArm(), cfg, robot_type="so101_follower", install_signal_handlers=False)
    assert g.limits["gripper"] == (5.0, 95.0) and g.layer.max_step["wrist_roll"] == 20.0
