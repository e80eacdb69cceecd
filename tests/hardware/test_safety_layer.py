"""SafetyLayer against the real SO-101 kinematics: no action stream may leave the limits or the box."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hardware import so101_model
from hardware.kinematics import SO101Kinematics
from hardware.safety.config import SafetyConfig
from hardware.safety.envelope import SafetyEnvelope
from hardware.safety.layer import SafetyLayer
from hardware.safety.limits import resolve_limits

MOTORS = list(so101_model.MOTORS)
KEYS = [f"{m}.pos" for m in MOTORS]
FK = SO101Kinematics()
# A tight box (a table top region) so that many random actions hit it.
BOX = ((0.05, -0.25, 0.03), (0.40, 0.25, 0.35))
HOME = {
    "shoulder_pan.pos": 0.0,
    "shoulder_lift.pos": -40.0,
    "elbow_flex.pos": 40.0,
    "wrist_flex.pos": 60.0,
    "wrist_roll.pos": 0.0,
    "gripper.pos": 20.0,
}
EPS = 1e-6


def make_layer(**overrides) -> SafetyLayer:
    cfg = SafetyConfig(workspace_min=list(BOX[0]), workspace_max=list(BOX[1]), **overrides)
    return SafetyLayer.from_config(cfg, "sim_so101", MOTORS)


def in_box(positions) -> bool:
    xyz = FK.fk({m: positions[f"{m}.pos"] for m in MOTORS})
    return all(BOX[0][i] - EPS <= xyz[i] <= BOX[1][i] + EPS for i in range(3))


def in_limits(layer: SafetyLayer, positions) -> bool:
    return all(layer.limits[m][0] - EPS <= positions[f"{m}.pos"] <= layer.limits[m][1] + EPS for m in MOTORS)


def test_home_is_inside_box_and_limits():
    layer = make_layer()
    assert in_box(HOME) and in_limits(layer, HOME)


wild_float = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.floats(min_value=-400, max_value=400),
    st.sampled_from([0.0, 1e9, -1e9, math.nan, math.inf, -math.inf]),
)
good_action = st.fixed_dictionaries({k: st.floats(min_value=-400, max_value=400) for k in KEYS})
bad_action = st.one_of(
    st.fixed_dictionaries({k: wild_float for k in KEYS}),
    st.dictionaries(st.sampled_from([*KEYS, "x.pos", "gripper"]), wild_float, max_size=8),
    st.fixed_dictionaries(
        {k: st.one_of(st.text(max_size=3), st.none(), st.lists(st.floats(), max_size=2)) for k in KEYS}
    ),
    st.sampled_from([None, [], 3.0, "home"]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=st.lists(st.one_of(good_action, good_action, bad_action), min_size=1, max_size=40))
def test_adversarial_streams_never_leave_limits_or_box(stream):
    """A perfectly tracking arm following the filtered stream stays in limits and box at every step."""
    layer = make_layer()
    present = dict(HOME)
    dv = {m: layer.max_velocity[m] / layer.control_hz for m in MOTORS}
    for action in stream:
        before = dict(present)
        prev = layer.last_command
        res = layer.filter(action, present)
        out = res.action
        assert set(out) == set(KEYS)
        assert all(math.isfinite(v) for v in out.values())
        assert in_limits(layer, out), out
        assert in_box(out), out
        for m in MOTORS:
            assert abs(out[f"{m}.pos"] - before[f"{m}.pos"]) <= layer.max_step[m] + EPS
            if prev is not None and "workspace" not in res.events:
                assert abs(out[f"{m}.pos"] - prev[m]) <= dv[m] + EPS
        if res.rejected:
            assert out == before  # hold position
        present = out
    report = layer.report.report()
    assert report["steps"] == len(stream)


@settings(max_examples=40, deadline=None)
@given(
    present=st.fixed_dictionaries({k: st.floats(min_value=-200, max_value=200) for k in KEYS}),
    action=good_action,
)
def test_joint_outside_limits_only_moves_back(present, action):
    """Switched on outside its limits, a joint is never pushed further out."""
    layer = make_layer(workspace_check=False)
    out = layer.filter(action, present).action
    for m in MOTORS:
        lo, hi = layer.limits[m]
        p, v = present[f"{m}.pos"], out[f"{m}.pos"]
        assert min(lo, p) - EPS <= v <= max(hi, p) + EPS


def test_nan_and_wrong_shape_are_rejected_and_counted():
    layer = make_layer()
    bad = dict(HOME, **{"elbow_flex.pos": math.nan})
    r = layer.filter(bad, HOME)
    assert r.rejected and r.action == HOME and r.events == ["rejected:nan"]
    r = layer.filter({k: HOME[k] for k in KEYS[:-1]}, HOME)
    assert r.rejected and r.events == ["rejected:shape"]
    r = layer.filter(dict(HOME, **{"gripper.pos": "open"}), HOME)
    assert r.rejected and r.events == ["rejected:type"]
    r = layer.filter(dict(HOME, **{"gripper.pos": np.float32(30.0)}), HOME)
    assert not r.rejected
    rep = layer.report.report()
    assert rep["rejected"] == 3 and rep["by_kind"]["rejected"] == 3 and rep["steps"] == 4
    layer.report.reset_episode()
    assert layer.report.report()["steps"] == 0
    assert layer.report.total_events["rejected:nan"] == 1


def test_present_with_nan_is_a_hard_error():
    layer = make_layer()
    with pytest.raises(ValueError, match="present position"):
        layer.filter(HOME, dict(HOME, **{"gripper.pos": math.nan}))


def test_per_step_and_velocity_clamps_are_named():
    layer = make_layer(max_step=3.0, max_velocity=60.0)  # 2 deg per step at 30 Hz
    target = dict(HOME, **{"shoulder_pan.pos": 30.0})
    r = layer.filter(target, HOME)
    assert r.action["shoulder_pan.pos"] == pytest.approx(2.0)
    assert "velocity:shoulder_pan" in r.events and not r.rejected
    # the arm lags: the command may keep moving but never more than max_step from the present
    layer.reset_reference(dict(HOME, **{"shoulder_pan.pos": 10.0}))
    r = layer.filter(target, HOME)
    assert r.action["shoulder_pan.pos"] == pytest.approx(3.0)
    assert "max_step:shoulder_pan" in r.events


def test_workspace_pulls_target_back_to_box_edge():
    layer = make_layer(max_step=90.0, max_velocity=3600.0)  # 120 deg/step: only max_step binds
    target = dict(HOME, **{"shoulder_lift.pos": 60.0, "elbow_flex.pos": -40.0})  # reaches far forward/down
    assert not in_box(target)
    r = layer.filter(target, HOME)
    assert "workspace" in r.events and in_box(r.action)
    # it moved part of the way rather than freezing
    assert r.action["shoulder_lift.pos"] > HOME["shoulder_lift.pos"] + 1.0


def test_soft_protections_can_be_disabled_but_limits_cannot():
    layer = make_layer(enabled=False)
    r = layer.filter(dict(HOME, **{"shoulder_pan.pos": 500.0}), HOME)
    assert r.action["shoulder_pan.pos"] == pytest.approx(layer.limits["shoulder_pan"][1])
    assert r.events == ["joint_limit:shoulder_pan"]
    assert layer.filter(dict(HOME, **{"shoulder_pan.pos": math.inf}), HOME).rejected


def test_envelope_and_config_limits_take_precedence(tmp_path):
    env = SafetyEnvelope(
        robot_type="so101_follower",
        joint_limits={"shoulder_pan": (-30.0, 30.0), "gripper": (10.0, 90.0)},
        workspace_min=(0.0, -0.2, 0.0),
        workspace_max=(0.3, 0.2, 0.3),
    )
    path = env.save(tmp_path / "env.json")
    cfg = SafetyConfig(envelope_path=str(path), joint_limits={"gripper": [20.0, 80.0]})
    layer = SafetyLayer.from_config(cfg, "so101_follower", MOTORS)
    assert layer.limits["shoulder_pan"] == (-30.0, 30.0)
    assert layer.limits["gripper"] == (20.0, 80.0)
    assert layer.limits["elbow_flex"][1] == pytest.approx(so101_model.motor_limits()["elbow_flex"][1] - 2.0)
    assert layer.workspace == ((0.0, -0.2, 0.0), (0.3, 0.2, 0.3))
    # calibrated ranges narrow the limits further
    limits = resolve_limits(cfg, "so101_follower", MOTORS, env, calibrated={"shoulder_pan": (-20.0, 50.0)})
    assert limits["shoulder_pan"] == (-20.0, 30.0)


def test_unknown_robot_without_envelope_says_what_to_do():
    with pytest.raises(ValueError, match="pirl calibrate envelope"):
        SafetyLayer.from_config(SafetyConfig(), "koch_follower", MOTORS)
    # koch with calibrated ranges works, and has no box (no kinematic model)
    cal = {m: (-90.0, 90.0) for m in MOTORS}
    layer = SafetyLayer.from_config(SafetyConfig(), "koch_follower", MOTORS, calibrated=cal)
    assert layer.workspace is None and layer.limits["elbow_flex"] == (-90.0, 90.0)


def test_bad_config_values_are_explained():
    with pytest.raises(ValueError, match="max_step"):
        SafetyConfig(max_step=0).validate()
    with pytest.raises(ValueError, match="both"):
        SafetyConfig(workspace_min=[0, 0, 0]).validate()
    with pytest.raises(ValueError, match="mode"):
        SafetyConfig(mode="fast").validate()


def corners_in_box(layer: SafetyLayer, a, b, top: float) -> bool:
    """Every mix of "this joint at a, that one at b" keeps the gripper under `top` (brute force)."""
    varying = [m for m in MOTORS if a[f"{m}.pos"] != b[f"{m}.pos"]]
    for mask in range(1 << len(varying)):
        pose = {m: a[f"{m}.pos"] for m in MOTORS}
        for j, m in enumerate(varying):
            if mask >> j & 1:
                pose[m] = b[f"{m}.pos"]
        if FK.fk(pose)[2] > top + EPS:
            return False
    return True


def test_workspace_checks_every_pose_the_joints_can_sweep_through():
    """Both ends inside the box is not enough: shoulder and elbow move in opposite directions, and the
    servo that gets there first lifts the gripper through the ceiling on the way."""
    top = 0.25
    cfg = SafetyConfig(
        workspace_min=[0.05, -0.25, 0.03], workspace_max=[0.40, 0.25, top], max_step=90.0, max_velocity=3600.0
    )
    layer = SafetyLayer.from_config(cfg, "sim_so101", MOTORS)
    present = dict(HOME, **{"shoulder_lift.pos": -30.0, "elbow_flex.pos": 10.0, "wrist_flex.pos": 50.0})
    target = dict(present, **{"shoulder_lift.pos": -10.0, "elbow_flex.pos": -10.0})
    assert FK.fk({m: target[f"{m}.pos"] for m in MOTORS})[2] < top  # the end pose alone is fine
    assert not corners_in_box(layer, present, target, top)  # ... but elbow-first passes z = 0.28
    r = layer.filter(target, present)
    assert "workspace" in r.events
    assert corners_in_box(layer, present, r.action, top)
    assert r.action["shoulder_lift.pos"] > present["shoulder_lift.pos"] + 1.0  # slowed, not frozen


def test_workspace_pullback_never_commands_a_joint_outside_its_limits():
    """The gripper overshot its closed limit a little (servo overshoot); a target the box pulls back must
    not be pulled back to where the gripper is, below its limit."""
    layer = make_layer(max_step=90.0, max_velocity=3600.0)
    present = dict(HOME, **{"gripper.pos": -0.02})
    target = dict(HOME, **{"shoulder_lift.pos": 60.0, "elbow_flex.pos": -40.0, "gripper.pos": 0.0})
    r = layer.filter(target, present)
    assert "workspace" in r.events
    assert in_limits(layer, r.action), r.action
    assert layer.limits["gripper"][0] <= r.action["gripper.pos"]


def test_pullback_keeps_the_previous_goal_instead_of_following_a_sagging_arm():
    """The arm sagged past the face while holding the previous command. Pulling an outward target back to
    the *measured* pose would move the goal out with the arm, step after step; the goal must stay inside."""
    layer = make_layer()
    goal = dict(HOME, **{"shoulder_lift.pos": -20.0, "elbow_flex.pos": -30.0, "wrist_flex.pos": 50.0})
    assert in_box(goal)  # z = 0.331
    sagged = dict(goal, **{"shoulder_lift.pos": -23.0, "elbow_flex.pos": -33.0})
    assert not in_box(sagged)  # z = 0.355
    layer.reset_reference(goal)
    further = dict(goal, **{"shoulder_lift.pos": -24.0, "elbow_flex.pos": -34.0})
    for _ in range(5):  # the arm stays sagged; the source insists
        r = layer.filter(further, sagged)
        assert "workspace" in r.events and in_box(r.action)  # the goal moves at most up to the face
        assert r.action != pytest.approx(sagged, abs=0.1)  # not out to where the arm sagged


def test_braking_lookahead_slows_a_fast_approach_before_the_face():
    """Driving at full speed at the ceiling, the command decelerates before it (the servo overshoots a goal
    that stops abruptly by about one commanded step); without the look-ahead it arrives at full speed."""
    top = BOX[1][2]
    start = dict(HOME, **{"shoulder_lift.pos": -20.0, "elbow_flex.pos": 6.0, "wrist_flex.pos": 50.0})
    arrival_step = {}
    for lookahead in (1.0, 0.0):
        layer = make_layer(lookahead_steps=lookahead)
        full_speed = layer.max_velocity["elbow_flex"] / layer.control_hz
        present = dict(start)
        layer.reset_reference(present)
        for _ in range(30):  # a perfectly tracking arm, elbow driven up at the velocity limit
            out = layer.filter(dict(present, **{"elbow_flex.pos": -60.0}), present).action
            step = abs(out["elbow_flex.pos"] - present["elbow_flex.pos"])
            present = out
            if FK.fk({m: present[f"{m}.pos"] for m in MOTORS})[2] > top - 0.005:
                arrival_step.setdefault(lookahead, step)  # speed when first within 5 mm of the face
        assert FK.fk({m: present[f"{m}.pos"] for m in MOTORS})[2] == pytest.approx(top, abs=1e-4)
    assert arrival_step[0.0] == pytest.approx(full_speed)
    assert arrival_step[1.0] < 0.5 * full_speed


def test_joints_brake_before_their_limits_but_still_reach_them():
    """At full speed into a limit the last commanded steps shrink (the servo overshoots a goal that stops
    abruptly); without the look-ahead the joint arrives at full speed. Either way it ends on the limit."""
    arrival_step = {}
    for lookahead in (1.0, 0.0):
        layer = make_layer(workspace_check=False, lookahead_steps=lookahead)
        hi = layer.limits["wrist_flex"][1]
        full_speed = layer.max_velocity["wrist_flex"] / layer.control_hz
        present = dict(HOME)
        layer.reset_reference(present)
        for _ in range(40):  # a perfectly tracking arm, wrist driven far past its limit
            res = layer.filter(dict(present, **{"wrist_flex.pos": 500.0}), present)
            step = res.action["wrist_flex.pos"] - present["wrist_flex.pos"]
            present = res.action
            assert present["wrist_flex.pos"] <= hi
            if present["wrist_flex.pos"] > hi - 2.0:
                arrival_step.setdefault(lookahead, step)  # speed when first within 2 deg of the limit
        assert present["wrist_flex.pos"] == pytest.approx(hi, abs=1e-6)
        assert "joint_limit:wrist_flex" in layer.report.report()["events"]
    assert arrival_step[0.0] == pytest.approx(full_speed)
    assert arrival_step[1.0] < 0.5 * full_speed


def test_workspace_decisions_do_not_hang_on_the_last_bit_of_the_kinematics():
    """The target's sweep and the safe start's are often dominated by the same far corner: equal in exact
    arithmetic, one ulp apart in floating point. Perturbing the FK by ~1e-15 m must not change any action
    (comparing exactly pulled back targets by up to 12 deg on such coin flips)."""
    rng = np.random.default_rng(7)
    exact = make_layer(max_step=20.0, max_velocity=600.0)
    noisy = make_layer(max_step=20.0, max_velocity=600.0)
    fk_many = noisy._fk_many
    noisy._fk_many = lambda flat: fk_many(flat) * (1.0 + rng.uniform(-4e-16, 4e-16, size=(1, 3)))
    limits = {m: exact.limits[m] for m in MOTORS}
    pulled = 0
    for _ in range(1500):
        present = {f"{m}.pos": float(rng.uniform(*limits[m])) for m in MOTORS}
        previous = {k: v + float(rng.normal(0, 4)) for k, v in present.items()}
        action = {k: v + float(rng.normal(0, 15)) for k, v in previous.items()}
        for layer in (exact, noisy):
            layer.reset_reference(previous)
        a, b = exact.filter(action, present), noisy.filter(action, present)
        pulled += "workspace" in a.events
        assert a.events == b.events
        assert all(abs(a.action[k] - b.action[k]) < 1e-9 for k in KEYS)
    assert pulled > 100  # the box really was in play


def test_a_joint_off_the_kinematic_chain_does_not_multiply_the_corner_poses():
    """The SO-101's gripper jaw does not move the gripper frame: a move of the gripper and one arm joint
    costs 2 corner poses, not 4, and the result is the same as checking all of them."""
    assert FK.joints == ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll")
    layer = make_layer()
    assert [MOTORS[j] for j in layer._fk_cols] == list(FK.joints)
    sizes = []
    fk_many = layer._fk_many
    layer._fk_many = lambda flat: sizes.append(len(flat["gripper"])) or fk_many(flat)
    target = dict(HOME, **{"gripper.pos": 60.0, "shoulder_pan.pos": 10.0})
    got = layer._swept_distance([HOME, target])
    assert sizes == [2]
    brute = max(
        layer._box_distance(dict(HOME, **{"gripper.pos": g, "shoulder_pan.pos": p}))
        for g in (20.0, 60.0)
        for p in (0.0, 10.0)
    )
    assert got == pytest.approx(brute, abs=1e-12)
    with pytest.raises(ValueError, match="not motors"):
        SafetyLayer(layer.limits, layer.max_step, layer.max_velocity, 30.0, BOX, FK.fk, fk_joints=["elbow"])
