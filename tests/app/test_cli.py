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
