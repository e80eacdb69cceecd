"""The SAC / HIL-SERL route: `pirl learner/actor --algorithm.type=sac` run LeRobot's own SAC learner and
actor (gym_hil PandaPickCube, two 128x128 cameras) with `"dataset": null`, over real gRPC on loopback."""

from __future__ import annotations

import queue
import signal
import time
from pathlib import Path

import pytest

from app.run.launch import free_port, spawn
from app.run.sac import install_dataset_null_workaround, normalise_argv, requested_algorithm

REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / "configs" / "sac_gym_hil.json"


def test_algorithm_choice_comes_from_flag_or_config_file(tmp_path):
    assert requested_algorithm(["--config", str(CONFIG)]) == "sac"
    assert requested_algorithm(["--config", str(CONFIG), "--algorithm.type=pirl"]) == "pirl"
    assert requested_algorithm(["--algorithm.type", "sac"]) == "sac"
    assert requested_algorithm(["--config", str(REPO / "configs" / "sim_pirl_reach.json")]) == "pirl"
    assert normalise_argv(["--config", "a.json", "--x=1"]) == ["--config_path=a.json", "--x=1"]


def test_dataset_null_validates_after_the_workaround(tmp_path):
    """LeRobot issue #1546: TrainPipelineConfig.validate dereferences dataset.repo_id."""
    import draccus
    from lerobot.rl.train_rl import TrainRLServerPipelineConfig

    import app.run.sac as sac

    with draccus.config_type("json"):
        cfg = draccus.parse(
            TrainRLServerPipelineConfig, config_path=str(CONFIG), args=[f"--output_dir={tmp_path / 'o'}"]
        )
    assert cfg.dataset is None
    original = getattr(
        TrainRLServerPipelineConfig.validate, "__wrapped__", TrainRLServerPipelineConfig.validate
    )
    with pytest.raises(AttributeError, match="repo_id"):
        original(cfg)  # LeRobot as shipped
    install_dataset_null_workaround()
    cfg.validate()
    assert cfg.dataset is None and cfg.algorithm.type == "sac"
    assert sac  # the module holds the fix; nothing else is patched


def _wait_in(proc, needle: str, timeout: float, after: int = 0) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for i, line in enumerate(proc.history[after:], start=after):
            if needle in line:
                return i
        if not proc.alive:
            break
        time.sleep(0.2)
    raise AssertionError(
        f"{proc.name}: no {needle!r} in {timeout} s; tail:\n" + "\n".join(proc.history[-25:])
    )


@pytest.mark.slow
def test_sac_route_runs_lerobots_learner_and_actor_one_update_and_one_push(tmp_path):
    port = free_port()
    env = {"MUJOCO_GL": "egl", "TORCHDYNAMO_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    common = [
        f"--policy.actor_learner_config.learner_port={port}",
        "--policy.actor_learner_config.policy_parameters_push_frequency=1",
        "--env.processor.reset.control_time_s=1.0",  # 10-step episodes (also exercises the reset-pose fix)
    ]
    lines: queue.Queue = queue.Queue()
    learner = spawn(
        "sac_learner", "learner", CONFIG,
        [*common, f"--output_dir={tmp_path / 'learner'}", "--policy.online_step_before_learning=5", "--batch_size=4"],
        tmp_path / "logs", lines, env,
    )  # fmt: skip
    actor = None
    try:
        _wait_in(learner, "gRPC server started", 120)
        actor = spawn(
            "sac_actor",
            "actor",
            CONFIG,
            [*common, f"--output_dir={tmp_path / 'actor'}"],
            tmp_path / "logs",
            lines,
            env,
        )
        first_update = _wait_in(learner, "Number of optimization step: 1", 180)
        _wait_in(learner, "Parameters sent", 60, after=first_update)  # a push after the update
        assert actor.alive
    finally:
        for p in (actor, learner):
            p.signal(signal.SIGINT)
        for p in (actor, learner):
            if p.wait(20) is None:
                p.popen.kill()
