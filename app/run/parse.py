"""Command line + JSON file -> a validated-type `PIRLRunConfig` (draccus), with errors a user can act on.

Every mistake in the file or the options is a one-line `ConfigError` (a ValueError) or, for a missing
file, a FileNotFoundError: see app/run/errors.py.
"""

from __future__ import annotations

from app.run.config import PIRLRunConfig
from app.run.errors import ConfigError, parse_config, read_config_file
from app.run.registry import register_choices
from app.run.sac import config_path

__all__ = ["ConfigError", "parse_run_config"]

RECIPES_HINT = " (recipes live in configs/, see docs/recipes.md)"


def parse_run_config(argv: list[str], command: str = "pirl learner") -> PIRLRunConfig:
    """`--config X` (alias of --config_path) and dotted overrides -> PIRLRunConfig."""
    path = config_path(argv)
    args = _drop_config_args(argv)
    if path is not None:
        read_config_file(path, RECIPES_HINT)  # a bad file fails before the (slow) imports of every robot type
    register_choices()
    return parse_config(PIRLRunConfig, args, path, command=command, file_hint=RECIPES_HINT)


def _drop_config_args(argv: list[str]) -> list[str]:
    out, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg in ("--config", "--config_path"):
            if i + 1 >= len(argv):
                raise ConfigError(f"{arg} needs a file: {arg} configs/sim_pirl_reach.json{RECIPES_HINT}")
            skip = True
            continue
        if arg.startswith(("--config=", "--config_path=")):
            continue
        out.append(arg)
    return out
