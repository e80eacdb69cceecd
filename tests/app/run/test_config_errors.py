"""Operator mistakes in a run config end in ONE line on stderr that names the file or option, exit code 2,
and nothing built (app/run/errors.py, app/run/process.py `run_role`).

Each case runs the real front end of `pirl learner` / `pirl actor` in-process with a build function that
fails the test if it is ever called.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from app.run.process import run_role

REPO = Path(__file__).resolve().parents[3]
RECIPE = "configs/sim_pirl_reach.json"
C = ["--config", RECIPE]


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("PIRL_TEST_UNSET_TOKEN", raising=False)
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, h in old.items():
        signal.signal(s, h)


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _recipe(tmp_path: Path, edit) -> str:
    data = json.loads((REPO / RECIPE).read_text())
    edit(data)
    return _write(tmp_path, "run.json", json.dumps(data))


def _never_build(cfg, shutdown):
    raise AssertionError("a bad config must be refused before anything is built")


def _run(role: str, argv: list[str], capsys, build=_never_build) -> tuple[int, list[str]]:
    rc = run_role(argv, role, "test doc", lambda a: pytest.fail("not the SAC route"), build)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err.strip().splitlines()


def _follower(d):
    d["robot"] = {"type": "so101_follower", "id": "arm1"}


# (id, role, argv from tmp_path, what the one line must contain)
CASES = [
    # --- the file itself
    ("malformed_json", "learner", lambda t: ["--config", _write(t, "bad.json", '{"policy": {')],
     ["bad.json", "not valid JSON", "line 1"]),
    ("empty_file", "learner", lambda t: ["--config", _write(t, "empty.json", "")], ["empty.json", "is empty"]),
    ("array_at_top", "learner", lambda t: ["--config", _write(t, "array.json", "[1, 2]")],
     ["array.json", "one JSON object", "array"]),
    ("missing_file", "actor", lambda t: ["--config", str(t / "nope.json")], ["nope.json not found", "configs/"]),
    ("directory", "learner", lambda t: ["--config", str(t)], ["is a directory"]),
    ("config_without_value", "learner", lambda t: ["--config"], ["--config needs a file"]),
    # --- keys in the file
    ("unknown_top_key", "learner", lambda t: ["--config", _recipe(t, lambda d: d.update(bogus=1))],
     ["run.json", "unknown key bogus", "--help-all"]),
    ("misspelt_key", "learner",
     lambda t: ["--config", _recipe(t, lambda d: d["learner"].update(max_update=5))],
     ["run.json", "unknown key learner.max_update", "did you mean learner.max_updates?"]),
    ("misplaced_policy_key", "learner",
     lambda t: ["--config", _recipe(t, lambda d: d["policy"].update(num_steps=-4))],
     ["unknown key policy.num_steps for policy.type=pirl_flow", "did you mean policy.rl.num_steps?"]),
    ("key_of_another_robot_type", "actor", lambda t: [*C, "--robot.type=so101_follower", "--robot.port=/dev/null"],
     ["unknown key robot.task for robot.type=so101_follower", "it is an option of robot.type=sim_so101"]),
    ("wrong_type_in_file", "learner",
     lambda t: ["--config", _recipe(t, lambda d: d["learner"].update(max_updates="many"))],
     ["run.json", "learner.max_updates", "'many'", "int"]),
    ("section_not_an_object", "learner", lambda t: ["--config", _recipe(t, lambda d: d.update(learner=[1, 2]))],
     ["run.json", "learner must be a JSON object", "array"]),
    ("unknown_policy_type_in_file", "learner",
     lambda t: ["--config", _recipe(t, lambda d: d["policy"].update(type="pirl_flw"))],
     ["run.json", "policy.type=pirl_flw is not a known policy type", "did you mean pirl_flow"]),
    ("leader_as_robot_in_file", "actor",
     lambda t: ["--config", _recipe(t, lambda d: d.update(robot={"type": "so101_leader"}))],
     ["run.json", "robot.type=so101_leader is a teleoperator", "teleop.type=so101_leader"]),
    ("robot_without_port", "actor", lambda t: ["--config", _recipe(t, _follower)],
     ["robot needs a serial port", "robot.port"]),
    # --- options on the command line
    ("unknown_option", "learner", lambda t: [*C, "--learner.max_update=5"],
     ["unknown option --learner.max_update", "did you mean --learner.max_updates?"]),
    ("misplaced_section", "learner", lambda t: [*C, "--learner.wandb.enable=true"],
     ["unknown option --learner.wandb.enable", "did you mean --wandb.enable?"]),
    ("misspelt_nested_option", "learner", lambda t: [*C, "--policy.rl.optim.actr_lr=1e-4"],
     ["--policy.rl.optim.actr_lr", "did you mean --policy.rl.optim.actor_lr?"]),
    ("option_in_wrong_section", "learner", lambda t: [*C, "--actor.max_updates=3"],
     ["--actor.max_updates", "did you mean --learner.max_updates?"]),
    ("wrong_type_option", "learner", lambda t: [*C, "--learner.max_updates=many"],
     ["--learner.max_updates", "'many'", "int"]),
    ("bad_bool", "learner", lambda t: [*C, "--learner.resume=maybe"], ["--learner.resume", "'maybe'", "bool"]),
    ("option_without_value", "learner", lambda t: [*C, "--learner.resume"], ["--learner.resume needs a value"]),
    ("stray_word", "learner", lambda t: [*C, "foo"], ["unexpected argument 'foo'"]),
    ("leader_as_robot", "actor", lambda t: [*C, "--robot.type=so101_leader"],
     ["--robot.type=so101_leader is a teleoperator", "use --teleop.type=so101_leader", "--robot.type=so101_follower"]),
    ("unknown_robot_type", "actor", lambda t: [*C, "--robot.type=ur5"],
     ["--robot.type=ur5 is not a known robot type", "so101_follower"]),
    ("unknown_policy_type", "learner", lambda t: [*C, "--policy.type=pirl_flw"],
     ["--policy.type=pirl_flw", "did you mean pirl_flow"]),
    ("bad_literal", "learner", lambda t: [*C, "--policy.rl.method=flow_nois"],
     ["--policy.rl.method=flow_nois", "did you mean --policy.rl.method=flow_noise?"]),
    ("mapping_piecewise", "actor", lambda t: [*C, "--robot.cameras.front.type=opencv"],
     ["--robot.cameras.front.type", "robot.cameras is a mapping"]),
    ("policy_options_without_type", "learner", lambda t: ["--policy.rl.num_steps=3"],
     ["policy.rl.num_steps is given but policy.type is not", "--policy.type"]),
    ("no_arguments", "learner", lambda t: [], ["no run config", "--config", "configs/"]),
    ("unset_token_variable", "actor", lambda t: [*C, "--transport.token_env=PIRL_TEST_UNSET_TOKEN"],
     ["transport.token_env='PIRL_TEST_UNSET_TOKEN'", "export it"]),
    # --- values out of range (validate)
    ("negative_actor_lr", "learner", lambda t: [*C, "--policy.rl.optim.actor_lr=-1"],
     ["policy.rl.optim.actor_lr must be > 0", "-1"]),
    ("nan_actor_lr", "learner", lambda t: [*C, "--policy.rl.optim.actor_lr=nan"],
     ["policy.rl.optim.actor_lr must be a finite number", "nan"]),
    ("zero_value_lr", "learner", lambda t: [*C, "--policy.rl.optim.value_lr=0"], ["policy.rl.optim.value_lr must be > 0"]),
    ("gamma_above_one", "learner", lambda t: [*C, "--policy.rl.gae.gamma=1.5"], ["policy.rl.gae.gamma", "[0, 1]", "1.5"]),
    ("negative_lambda", "learner", lambda t: [*C, "--policy.rl.gae.lam=-0.1"], ["policy.rl.gae.lam", "[0, 1]"]),
    ("zero_epochs", "learner", lambda t: [*C, "--policy.rl.ppo.epochs=0"], ["policy.rl.ppo.epochs", ">= 1", "0"]),
    ("zero_minibatch", "learner", lambda t: [*C, "--policy.rl.ppo.minibatch_size=0"], ["policy.rl.ppo.minibatch_size"]),
    ("clip_coef_zero", "learner", lambda t: [*C, "--policy.rl.ppo.clip_coef=0"], ["policy.rl.ppo.clip_coef", "(0, 1)"]),
    ("negative_entropy", "learner", lambda t: [*C, "--policy.rl.noise.entropy_coef=-1"],
     ["policy.rl.noise.entropy_coef must be >= 0"]),
    ("negative_num_steps", "learner", lambda t: [*C, "--policy.rl.num_steps=-4"], ["policy.rl.num_steps must be >= 1", "-4"]),
    ("negative_fps", "actor", lambda t: [*C, "--robot.fps=-30"], ["robot.fps", "-30"]),
    ("negative_control_hz", "actor", lambda t: [*C, "--safety.control_hz=-30"], ["safety.control_hz"]),
    ("negative_episodes", "actor", lambda t: [*C, "--actor.episodes=-1"], ["actor.episodes must be >= 0"]),
    ("not_a_port", "learner", lambda t: [*C, "--transport.port=70000"], ["transport.port=70000"]),
    ("nan_deadline", "actor", lambda t: [*C, "--transport.send_timeout_s=nan"], ["transport.send_timeout_s", "> 0"]),
]  # fmt: skip


@pytest.mark.parametrize(("role", "make_argv", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_config_is_one_line_exit_2_nothing_built(role, make_argv, expected, tmp_path, capsys):
    rc, lines = _run(role, make_argv(tmp_path), capsys)
    assert rc == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"pirl {role}: ")
    for text in expected:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"


def test_enough_cases():
    assert len(CASES) >= 20


def test_corrupt_calibration_file_while_building_is_one_line(tmp_path, capsys):
    """LeRobot reads a calibration file with draccus when the robot is made: a corrupt one names the file."""
    (tmp_path / "arm1.json").write_text('{"shoulder_pan": {"id": 1,')

    def build(cfg, shutdown):
        from hardware.factory import make_robot

        make_robot(cfg.robot)
        raise AssertionError("a corrupt calibration file must stop the build")

    argv = ["--config", _recipe(tmp_path, _follower), "--robot.port=/dev/null"]
    rc, lines = _run("actor", [*argv, f"--robot.calibration_dir={tmp_path}"], capsys, build)
    assert rc == 2 and len(lines) == 1, lines
    assert str(tmp_path / "arm1.json") in lines[0] and "not valid JSON" in lines[0]
    assert "pirl calibrate" in lines[0]


def test_suggestions_come_from_the_real_option_tree():
    from app.run.config import PIRLRunConfig
    from app.run.options import option_tree, suggest
    from app.run.registry import register_choices

    register_choices()
    tree = option_tree(PIRLRunConfig, {"policy": "pirl_flow", "robot": "sim_so101"})
    assert "policy.rl.optim.actor_lr" in tree and "robot.fps" in tree and "learner.max_updates" in tree
    assert suggest("learner.max_update", tree) == ["learner.max_updates"]
    assert suggest("learner.wandb.enable", tree) == ["wandb.enable"]
    assert suggest("policy.num_steps", tree) == ["policy.rl.num_steps"]
    assert suggest("policy.rl.optim.actorlr", tree)[0] == "policy.rl.optim.actor_lr"
    assert suggest("transport.prot", tree)[0] == "transport.port"
    assert suggest("zzzz.qqqq", tree) == []


def test_a_good_config_still_builds(tmp_path, capsys):
    built = []

    def build(cfg, shutdown):
        built.append(cfg)
        return lambda: 0

    rc, lines = _run(
        "learner", [*C, f"--learner.output_dir={tmp_path}", "--learner.max_updates=5"], capsys, build
    )
    assert rc == 0 and lines == [] and built[0].learner.max_updates == 5


def test_eval_errors_are_one_line_on_stderr(capsys):
    from app.eval import main

    assert main(["--policy", "/nonexistent", "--episodes", "many"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--episodes" in err[0] and "'many'" in err[0]
    assert main(["--policy", "/nonexistent", "--robot.type=so101_leader"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "use --teleop.type=so101_leader" in err[0]
    assert main(["--policy", "/nonexistent", "--episode.time_limt_s=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did you mean --episode.time_limit_s?" in err[0]


def test_eval_help_is_short_and_help_all_long(capsys):
    from app.eval import main

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--help-all" in out and "--policy PATH" in out and len(out.splitlines()) <= 50
    assert main(["--help-all"]) == 0
    assert len(capsys.readouterr().out.splitlines()) > 100


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--robot.type=so101_follower", "--robot.prot=/dev/x", "--robot.id=a"], "did you mean --robot.port"),
        (
            ["--robot.type=so101_leader", "--robot.port=/dev/x", "--robot.id=a"],
            "use --teleop.type=so101_leader",
        ),
        (
            ["envelope", "--robot.type=so101_follower", "--robot.port=/dev/x", "--robot.id=a", "--fps=-30"],
            "--fps",
        ),
        (
            ["envelope", "--robot.type=so101_follower", "--robot.port=/dev/x", "--robot.id=a", "--fps=fast"],
            "--fps",
        ),
        (
            ["check", "--robot.type=so101_follower", "--robot.port=/dev/x", "--robot.id=a", "--inset=0.7"],
            "--inset",
        ),
    ],
)
def test_calibrate_usage_errors_are_one_line(argv, expected, capsys):
    from calibration.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pirl calibrate") and expected in err[0], err


def test_real_process_prints_only_the_one_line():
    """No import-time log lines, warnings or usage around the error in a real `pirl learner` process."""
    proc = subprocess.run(
        [sys.executable, "-m", "app", "learner", *C, "--learner.max_update=5"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "pirl learner: unknown option --learner.max_update; did you mean --learner.max_updates?"
    ]
