"""configs/sim_twin_pick_cube.json: the pick-and-lift twin with one 80x80 camera (the policy's only view of the
cube), its camera pose, field of view, light and colours randomized. It parses for both processes, the
policy reads exactly the camera and joints the arm gives, and a randomized frame differs from the centre's
while the held-out stand-in's differs from both."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from app.episode.observation import resolve_state_keys
from app.run.parse import parse_run_config
from hardware import so101_model
from hardware.sim import STAND_IN, RandomizationConfig, SimSO101Follower
from tests.app.test_twin_checkpoint import REPO

CONFIG = "configs/sim_twin_pick_cube.json"


@pytest.fixture
def cfg(monkeypatch):
    monkeypatch.chdir(REPO)
    return parse_run_config(["--config", CONFIG])


def test_the_config_parses_and_the_policy_sees_one_camera_and_the_joints(cfg):
    cfg.validate("learner")
    cfg.validate("actor")
    robot = cfg.robot
    assert robot.task == "pick_cube" and robot.randomize.enable and robot.variant == "default"
    assert list(robot.cameras) == ["top"] and 64 <= robot.cameras["top"].width <= 96
    assert robot.cameras["top"].width == robot.cameras["top"].height
    native = cfg.make_policy().config.native
    arm = SimSO101Follower(robot)  # not connected: features only
    keys = resolve_state_keys(arm, cfg.actor.state_keys)
    assert keys == [f"{m}.pos" for m in so101_model.MOTORS]  # no cube pose: a real arm has no such sensor
    assert native.state_dim == len(keys) and list(native.image_keys) == cfg.actor.image_keys == ["top"]
    assert arm.observation_features["top"] == (*native.image_size, 3)
    defaults = RandomizationConfig()
    for name in ("camera_pos_jitter_m", "camera_rot_jitter_deg", "camera_fovy_deg", "light_scale",
                 "light_dir_deg", "object_rgb_delta", "table_rgb_delta"):  # fmt: skip
        lo, hi = getattr(robot.randomize, name)
        assert lo < hi, f"{name} is not randomized"
        assert (lo, hi) == getattr(defaults, name)  # the documented defaults, written out in the config


def frame(robot: SimSO101Follower, params) -> np.ndarray:
    robot.reset(seed=7, params=params)  # the same seed: the same cube, only the twin differs
    return robot.get_observation()["top"].astype(np.int16)


def test_a_randomized_frame_differs_from_the_centre_and_the_stand_in_from_both(cfg):
    robot = SimSO101Follower(cfg.robot)
    robot.connect()
    try:
        centre = frame(robot, cfg.robot.randomize.centre())
        drawn = [frame(robot, cfg.robot.randomize.sample(np.random.default_rng(k))) for k in range(3)]
        stand_in = frame(robot, STAND_IN)
        assert np.array_equal(frame(robot, cfg.robot.randomize.centre()), centre)  # rendering is repeatable
    finally:
        robot.disconnect()
    for image in drawn:
        assert np.abs(image - centre).mean() > 1.0
        assert np.abs(stand_in - image).mean() > 1.0
    assert np.abs(stand_in - centre).mean() > 1.0

    # The stand-in arm as `--robot.variant=stand_in` renders the same frame as STAND_IN pinned above.
    held_out = SimSO101Follower(
        dataclasses.replace(cfg.robot, randomize=RandomizationConfig(), variant="stand_in")
    )
    held_out.connect()
    try:
        assert np.array_equal(frame(held_out, None), stand_in)
    finally:
        held_out.disconnect()
