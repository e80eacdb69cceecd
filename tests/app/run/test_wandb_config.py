"""The run config's `--wandb.*` section is LeRobot's WandBConfig, parsed by pirl's real run-config parser;
the old `--learner.wandb` spelling and a missing wandb install end in one line naming the fix."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from lerobot.configs.default import WandBConfig

from app.run.parse import parse_run_config
from app.run.process import run_role

REPO = Path(__file__).resolve().parents[3]
C = ["--config", "configs/sim_pirl_reach.json"]


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(REPO)


def _never_build(cfg, shutdown):
    raise AssertionError("a bad config must be refused before anything is built")


def _one_line(argv: list[str], capsys) -> str:
    rc = run_role(argv, "learner", "test doc", lambda a: pytest.fail("not the SAC route"), _never_build)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("pirl learner: ")
    return err[0]


def test_wandb_section_is_lerobots_config():
    cfg = parse_run_config(
        [*C, "--wandb.enable=true", "--wandb.project=x", "--wandb.entity=team", "--wandb.mode=offline"]
    )
    assert type(cfg.wandb) is WandBConfig
    assert (cfg.wandb.enable, cfg.wandb.project, cfg.wandb.entity, cfg.wandb.mode) == (
        True,
        "x",
        "team",
        "offline",
    )
    cfg.validate("learner")
    default = parse_run_config(C).wandb
    assert default == WandBConfig()  # LeRobot's defaults: off, project "lerobot"


def test_wandb_section_in_a_config_file(tmp_path):
    data = json.loads((REPO / C[1]).read_text())
    data["wandb"] = {"enable": True, "project": "from-file", "notes": "n"}
    (tmp_path / "run.json").write_text(json.dumps(data))
    cfg = parse_run_config(["--config", str(tmp_path / "run.json")])
    assert cfg.wandb.enable and cfg.wandb.project == "from-file" and cfg.wandb.notes == "n"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--learner.wandb=true"], "option --learner.wandb was renamed: use --wandb.enable=true"),
        (["--learner.wandb_project=p"], "option --learner.wandb_project was renamed: use --wandb.project=p"),
        (
            ["--wandb.enable=true", "--wandb.mode=ofline"],
            "wandb.mode must be one of online, offline, disabled",
        ),
        (["--wandb.enabel=true"], "did you mean --wandb.enable?"),
        (
            ["--learner.wandb.enable=true"],
            "unknown option --learner.wandb.enable; did you mean --wandb.enable?",
        ),
    ],
    ids=["old_enable", "old_project", "bad_mode", "misspelt", "under_learner"],
)
def test_wandb_option_mistakes_are_one_line(argv, expected, capsys):
    assert expected in _one_line([*C, *argv], capsys)


def test_old_wandb_key_in_a_file_is_one_line(tmp_path, capsys):
    data = json.loads((REPO / C[1]).read_text())
    data["learner"]["wandb"] = True
    (tmp_path / "old.json").write_text(json.dumps(data))
    line = _one_line(["--config", str(tmp_path / "old.json")], capsys)
    assert "old.json" in line and "learner.wandb was renamed to wandb.enable" in line


def test_missing_wandb_is_refused_before_the_learner_starts(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if wandb were not installed
    line = _one_line([*C, "--wandb.enable=true"], capsys)
    assert "--wandb.enable=true needs the wandb package" in line and "pip install wandb" in line
    parse_run_config(C).validate("learner")  # wandb off: no wandb needed
