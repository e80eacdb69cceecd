"""`pirl eval` options: `--config <run config>` supplies robot, teleop, safety and episode (explicit options
override them), leader arms may take over, and `--policy` may be a Hugging Face hub id (a fake, offline hub
cache: see tests/app/rl/test_hub.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from app.eval import main, parse_config
from app.eval.config import DEFAULT_EVAL_SEED
from app.eval.policy import load_policy
from tests.app.eval.conftest import save_policy
from tests.app.rl.test_hub import REPO_ID, cache_repo

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _at_repo_root(monkeypatch):
    monkeypatch.chdir(REPO)


def test_config_of_a_sim_recipe_supplies_robot_safety_and_episode(reach_policy):
    cfg = parse_config(["--policy", reach_policy, "--config", "configs/sim_pirl_reach.json"])
    assert cfg.config == "configs/sim_pirl_reach.json"
    assert (cfg.robot.type, cfg.robot.task, cfg.robot.fps) == ("sim_so101", "reach", 30)
    assert cfg.safety.control_hz == 30.0
    assert cfg.episode.time_limit_s == 4.0  # the recipe's, not eval's 1.5 s default
    assert cfg.episode.seed == DEFAULT_EVAL_SEED  # the recipe's seed 0 is training's: eval scenes stay apart
    assert cfg.teleop is None
    cfg.validate()


def test_explicit_options_override_the_run_config(reach_policy):
    cfg = parse_config(
        [
            "--policy", reach_policy, "--config=configs/sim_pirl_reach.json",
            "--episode.time_limit_s", "2", "--robot.fps=15", "--safety.max_step=5", "--episode.seed=7",
        ]
    )  # fmt: skip
    assert (cfg.robot.type, cfg.robot.task, cfg.robot.fps) == ("sim_so101", "reach", 15)
    assert (cfg.episode.time_limit_s, cfg.episode.seed, cfg.safety.max_step) == (2.0, 7, 5.0)


def test_config_of_a_real_arm_brings_port_cameras_envelope_and_leader(reach_policy):
    args = ["--policy", reach_policy, "--config", "configs/so101_two_machines.json"]
    cfg = parse_config([*args, "--robot.port=/dev/ttyUSB7"])
    # (LeRobot names the SO-101 follower's and leader's config types so100_*)
    assert (cfg.robot.type, cfg.robot.port, cfg.robot.id) == ("so100_follower", "/dev/ttyUSB7", "arm1")
    assert sorted(cfg.robot.cameras) == ["front", "wrist"] and cfg.image_keys == ["front", "wrist"]
    assert cfg.safety.envelope_path == "envelopes/arm1.json"
    assert (cfg.teleop.type, cfg.teleop.port, cfg.teleop.id) == ("so100_leader", "/dev/ttyACM1", "leader1")
    cfg.validate()  # a leader arm may take over in eval, as in training
    assert parse_config([*args, "--teleop.type=gamepad"]).teleop.type == "gamepad"  # a new type: its defaults


def test_a_sim_run_configs_teleop_is_not_taken(reach_policy, tmp_path):
    run = json.loads((REPO / "configs/sim_pirl_reach.json").read_text())
    run["teleop"] = {"type": "sim_operator"}
    (tmp_path / "run.json").write_text(json.dumps(run))
    cfg = parse_config(["--policy", reach_policy, "--config", str(tmp_path / "run.json")])
    assert cfg.teleop is None and cfg.robot.type == "sim_so101"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--teleop.id="], "needs an id (teleop.id)"),
        (["--teleop.use_degrees=false"], "leader and follower must report the same units"),
        (
            ["--robot.type=koch_follower", "--robot.port=/dev/x", "--teleop.type=gamepad"],
            "a Koch follower has none",
        ),
    ],
)
def test_leader_and_teleop_checks(extra, message, reach_policy, capsys):
    args = ["--policy", reach_policy, "--config", "configs/so101_two_machines.json", *extra]
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_a_bad_run_config_is_one_line_naming_it(reach_policy, capsys):
    assert main(["--policy", reach_policy, "--config", "configs/nope.json"]) == 2
    assert "configs/nope.json" in capsys.readouterr().err


# ---- --policy <hub id> ----------------------------------------------------------------------------------


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "hf_cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_eval_runs_a_policy_named_by_hub_id_from_the_cache(hub_cache, tmp_path, capsys):
    snapshot = cache_repo(hub_cache, REPO_ID, lambda d: save_policy(d))
    policy = load_policy(REPO_ID)[0]
    local = load_policy(snapshot)[0]
    assert all(torch.equal(v, local.state_dict()[k]) for k, v in policy.state_dict().items())
    out = tmp_path / "r.json"
    args = ["--policy", REPO_ID, "--episodes", "2", "--episode.time_limit_s=0.3", f"--output={out}"]
    assert main(args) == 0
    assert "eval: success 0.0% (0/2)" in capsys.readouterr().out
    assert json.loads(out.read_text())["config"]["policy"] == REPO_ID  # the id, as given


def test_eval_of_an_uncached_hub_id_is_one_line(hub_cache, capsys):
    assert main(["--policy", "pirl-test/missing", "--episodes", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "pirl eval: --policy pirl-test/missing is not in the Hugging Face cache and the hub is unreachable "
        "(offline): download it once with `huggingface-cli download pirl-test/missing` on a machine with "
        "network, or pass a local folder"
    )
    assert main(["--policy", "/nonexistent/p"]) == 2
    assert "--policy /nonexistent/p: no such folder" in capsys.readouterr().err
