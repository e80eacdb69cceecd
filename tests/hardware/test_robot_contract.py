"""One interface contract, three followers: the simulated SO-101 and LeRobot's real so101_follower and
koch_follower (over the packet-level serial mocks), all built and connected through `hardware.factory`.

The actor only ever sees this contract, so whatever passes here can stand in for the real arm: connect
without prompting, calibrated, the same observation/action keys and types, `send_action` returning what
was sent after LeRobot's `max_relative_target` clamp, and a clean disconnect.
"""

from __future__ import annotations

import numpy as np
import pytest
from lerobot.robots.koch_follower import KochFollowerConfig
from lerobot.robots.so_follower import SO101FollowerConfig
from lerobot.utils.errors import DeviceAlreadyConnectedError, DeviceNotConnectedError

from hardware import factory
from hardware.sim import SimSO101FollowerConfig
from tests.mocks.calibration_files import (
    KOCH_RANGES,
    SO101_RANGES,
    calibrate_registers,
    write_calibration_file,
)

pytest_plugins = ["tests.mocks.fixtures"]

CAP = 5.0  # max_relative_target: the most a goal may move from the present position in one action
# SO-101 and Koch name their six motors alike in LeRobot
MOTORS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")


def sim_follower(request, calib_dir):
    return SimSO101FollowerConfig(id="sim", calibration_dir=calib_dir, max_relative_target=CAP), MOTORS


def so101_follower(request, calib_dir):
    arm = request.getfixturevalue("so101_sim")
    write_calibration_file(calib_dir / "arm1.json", calibrate_registers(arm, SO101_RANGES))
    cfg = SO101FollowerConfig(port=arm.port, id="arm1", calibration_dir=calib_dir, max_relative_target=CAP)
    return cfg, MOTORS


def koch_follower(request, calib_dir):
    arm = request.getfixturevalue("koch_sim")
    write_calibration_file(calib_dir / "koch.json", calibrate_registers(arm, KOCH_RANGES))
    cfg = KochFollowerConfig(
        port=arm.port, id="koch", calibration_dir=calib_dir, max_relative_target=CAP, use_degrees=True
    )
    return cfg, MOTORS


@pytest.mark.parametrize("build", [sim_follower, so101_follower, koch_follower], ids=lambda f: f.__name__)
def test_follower_contract(build, request, calib_dir, monkeypatch):
    cfg, motors = build(request, calib_dir)
    robot = factory.make_robot(cfg)
    keys = {f"{m}.pos" for m in motors}

    # before connect: nothing works, nothing is claimed
    assert not robot.is_connected
    with pytest.raises(DeviceNotConnectedError):
        robot.get_observation()

    # connect through the factory, from the calibration file, never asking the operator anything
    monkeypatch.setattr("builtins.input", lambda *a: pytest.fail(f"{cfg.type} prompted: {a}"))
    factory.connect_robot(robot)
    try:
        assert robot.is_connected and robot.is_calibrated
        with pytest.raises(DeviceAlreadyConnectedError):
            robot.connect()

        # features and one observation: the keys, types and shapes the actor builds its batch from
        assert set(robot.action_features) == keys
        assert all(ft is float for ft in robot.action_features.values())
        assert keys <= set(robot.observation_features)
        obs = robot.get_observation()
        assert set(obs) == set(robot.observation_features)
        for key, ft in robot.observation_features.items():
            if ft is float:
                assert isinstance(obs[key], float) and np.isfinite(obs[key]), key
            else:  # a camera: (h, w, c) uint8
                assert (
                    isinstance(obs[key], np.ndarray) and obs[key].shape == ft and obs[key].dtype == np.uint8
                )

        # send_action returns what was sent: unchanged within the cap, clamped to it beyond
        present = {k: obs[k] for k in keys}
        small = {k: v + (1.0 if v < 40.0 else -1.0) for k, v in present.items()}
        assert robot.send_action(small) == pytest.approx(small, abs=1e-9)
        obs = robot.get_observation()
        present = {k: obs[k] for k in keys}
        far = dict(present, **{"elbow_flex.pos": present["elbow_flex.pos"] + 40.0})
        sent = robot.send_action(far)
        assert set(sent) == keys
        assert sent["elbow_flex.pos"] == pytest.approx(present["elbow_flex.pos"] + CAP, abs=1e-6)
        for k in keys - {"elbow_flex.pos"}:
            assert sent[k] == pytest.approx(present[k], abs=1e-6)
    finally:
        robot.disconnect()

    assert not robot.is_connected
    with pytest.raises(DeviceNotConnectedError):
        robot.send_action(small)
