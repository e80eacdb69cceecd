"""The `pirl` entry point: every listed sub-command resolves to a module with `main`, help and errors."""

from __future__ import annotations

import importlib

import pytest

from app.cli import COMMANDS, main


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_imports_and_has_main(name):
    module = importlib.import_module(COMMANDS[name][0])
    assert callable(module.main), f"{COMMANDS[name][0]} has no main()"


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert f"  {name} " in out


def test_unknown_command_is_a_usage_error(capsys):
    assert main(["calibrat"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'calibrat'" in err and "calibrate" in err


def test_unknown_command_suggests_the_closest(capsys):
    assert main(["lerner"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did you mean `pirl learner`?" in err[0]


def test_config_error_from_any_command_is_one_line(monkeypatch, capsys):
    """A command without its own handler still ends a ConfigError with one line and exit 2."""
    import sys
    import types

    from app.run.errors import ConfigError

    def failing_main(argv):
        raise ConfigError("unknown option --x.y;\n did you mean --x.z?")

    monkeypatch.setitem(sys.modules, "tests_fake_command", types.SimpleNamespace(main=failing_main))
    monkeypatch.setitem(COMMANDS, "fake", ("tests_fake_command", "a fake command"))
    assert main(["fake"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "pirl fake: unknown option --x.y; did you mean --x.z?"
    ]


def test_help_mentions_help_all(capsys):
    assert main(["--help"]) == 0
    assert "--help-all" in capsys.readouterr().out
