"""A task of your own runs through `pirl eval` with no change to the runtime: the toy tasks registered in
tests/hardware/test_twin_tasks.py are named on the command line (`--robot.task_module` imports the module
that registers them), and eval's result is what their success function says."""

from __future__ import annotations

import pytest

from app.eval import parse_config, run_eval
from tests.app.eval.conftest import save_policy

TASK_MODULE = "tests.hardware.test_twin_tasks"


@pytest.fixture(scope="module")
def ball_policy(tmp_path_factory) -> str:
    """An untrained policy for the ball task: 6 joints + ball x/y/z in, 6 joint goals out."""
    return save_policy(tmp_path_factory.mktemp("policy") / "ball", state_dim=9)


def evaluate(policy: str, task: str, *extra: str):
    cfg = parse_config(
        [
            f"--policy={policy}",
            "--episodes=3",
            "--robot.type=sim_so101",
            f"--robot.task={task}",
            f"--robot.task_module={TASK_MODULE}",
            "--episode.time_limit_s=0.5",
            "--progress=false",
            *extra,
        ]
    )
    return run_eval(cfg, progress=None)


@pytest.mark.parametrize("variant", ["default", "stand_in"])
def test_pirl_eval_runs_a_registered_task_and_reports_its_success(ball_policy, variant):
    far = evaluate(ball_policy, "touch_ball", f"--robot.variant={variant}")
    assert far.success.episodes == 3 and far.success.successes == 0  # untrained: the ball is not touched
    assert all(e["termination"] == "time_limit" and e["steps"] == 15 for e in far.episodes)
    anywhere = evaluate(ball_policy, "touch_ball_anywhere", f"--robot.variant={variant}")
    assert anywhere.success.successes == 3  # its success function holds at once: eval ends each on success
    assert all(e["termination"] == "success" and e["steps"] < 15 for e in anywhere.episodes)
