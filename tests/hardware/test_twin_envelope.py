"""The twin centred on the user's safety envelope (`randomize.envelope_from`, hardware/sim/centring.py): reach
targets and cube start poses are drawn inside its workspace box, reach targets only where the arm reaches them
within its joint limits; the same region with or without the twin draws, and on the stand-in."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hardware import so101_model
from hardware.safety.envelope import SafetyEnvelope
from hardware.sim import SimSO101Follower, SimSO101FollowerConfig
from hardware.sim.ik import ArmIK
from hardware.sim.randomization import RandomizationConfig, envelope_region

BOX_LOW, BOX_HIGH = (0.17, -0.06, 0.05), (0.25, 0.06, 0.12)


def write_envelope(tmp_path, box=True, pan=(-110.0, 110.0)) -> str:
    limits = dict(so101_model.motor_limits())
    limits["shoulder_pan"] = pan
    env = SafetyEnvelope(
        robot_type="so101_follower",
        joint_limits=limits,
        workspace_min=BOX_LOW if box else None,
        workspace_max=BOX_HIGH if box else None,
    )
    return str(env.save(tmp_path / f"envelope_{box}_{pan[0]}.json"))


@pytest.fixture
def robots(tmp_path):
    made = []

    def factory(**kw) -> SimSO101Follower:
        made.append(SimSO101Follower(SimSO101FollowerConfig(calibration_dir=tmp_path, **kw)))
        made[-1].connect()
        return made[-1]

    yield factory
    for r in made:
        r.disconnect()


def starts(robot: SimSO101Follower, keys: tuple[str, ...], n: int = 25) -> np.ndarray:
    out = []
    for seed in range(n):
        robot.reset(seed=seed)
        obs = robot.get_observation()
        out.append([obs[k] for k in keys])
    return np.array(out)


def inside(points: np.ndarray, axes: int = 3) -> np.ndarray:
    lo, hi = np.array(BOX_LOW[:axes]), np.array(BOX_HIGH[:axes])
    return np.all((points[:, :axes] >= lo) & (points[:, :axes] <= hi), axis=1)


@pytest.mark.parametrize("how", [{"enable": True}, {"enable": False}, {"variant": "stand_in"}])
def test_reach_targets_are_drawn_inside_the_envelope_box(robots, tmp_path, how):
    path = write_envelope(tmp_path)
    variant = how.get("variant", "default")
    randomize = RandomizationConfig(enable=how.get("enable", False), envelope_from=path)
    targets = starts(
        robots(task="reach", variant=variant, randomize=randomize), ("target.x", "target.y", "target.z")
    )
    assert inside(targets).all()
    free = starts(robots(task="reach", variant=variant), ("target.x", "target.y", "target.z"))
    assert not inside(free).all()  # without the envelope the task's own, wider ranges


def test_cube_starts_inside_the_box_and_the_twin_still_draws(robots, tmp_path):
    path = write_envelope(tmp_path)
    robot = robots(task="pick_cube", randomize=RandomizationConfig(enable=True, envelope_from=path))
    cubes = starts(robot, ("cube.x", "cube.y"))
    # the task draws inside the box; the twin's own pose jitter (+-1 cm) then moves it, as it does any cube
    jitter = 0.0101
    assert np.all(cubes >= np.array(BOX_LOW[:2]) - jitter) and np.all(
        cubes <= np.array(BOX_HIGH[:2]) + jitter
    )
    assert robot.sim_params is not None
    free = starts(robots(task="pick_cube"), ("cube.x", "cube.y"))
    assert not inside(free, axes=2).all()


def test_reach_targets_respect_the_envelope_joint_limits(robots, tmp_path):
    path = write_envelope(tmp_path, box=False, pan=(-12.0, 12.0))
    targets = starts(
        robots(task="reach", randomize=RandomizationConfig(envelope_from=path)),
        ("target.x", "target.y", "target.z"),
    )
    ik = ArmIK()
    for target in targets:
        joints, err = ik.solve(target, so101_model.HOME_POSITION)
        assert err < 0.003 and -12.0 <= joints["shoulder_pan"] <= 12.0
    azimuth = np.degrees(np.arctan2(targets[:, 1], targets[:, 0]))
    assert np.abs(azimuth).max() < 20.0  # the pan limit narrows the task's +-50 degrees
    free = starts(robots(task="reach"), ("target.x", "target.y", "target.z"))
    assert np.abs(np.degrees(np.arctan2(free[:, 1], free[:, 0]))).max() > 20.0


def test_a_bad_envelope_fails_at_config_time_with_one_line(tmp_path):
    with pytest.raises(ValueError, match=r"^randomize.envelope_from: safety envelope .* not found"):
        RandomizationConfig(envelope_from=str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"robot_type": "so101_follower", "joint_limits": {"shoulder_pan": [10, -10]}}')
    with pytest.raises(ValueError, match="randomize.envelope_from: joint limit for 'shoulder_pan'"):
        RandomizationConfig(envelope_from=str(bad))
    region = envelope_region(write_envelope(tmp_path))
    assert tuple(region.low) == BOX_LOW and tuple(region.high) == BOX_HIGH
    assert set(region.joint_limits) == set(so101_model.MOTORS) and math.isclose(
        region.joint_limits["shoulder_pan"][1], 110
    )
