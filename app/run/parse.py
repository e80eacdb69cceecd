"""Command line + JSON file -> a validated-type `PIRLRunConfig` (draccus), with errors a user can act on."""

from __future__ import annotations

from pathlib import Path

import draccus

from app.run.config import PIRLRunConfig
from app.run.registry import register_choices
from app.run.sac import config_path


def parse_run_config(argv: list[str]) -> PIRLRunConfig:
    """`--config X` (alias of --config_path) and dotted overrides -> PIRLRunConfig."""
    register_choices()
    path = config_path(argv)
    if path is not None and not Path(path).is_file():
        raise FileNotFoundError(
            f"config file {path} not found (recipes live in configs/, see docs/recipes.md)"
        )
    args = [a for a in _drop_config_args(argv)]
    try:
        with draccus.config_type("json"):
            return draccus.parse(PIRLRunConfig, config_path=path, args=args)
    except draccus.utils.DecodingError as exc:
        device = next((d for d in ("teleop", "robot") if f"`{d}`" in str(exc)), None)
        if device is None or "`port`" not in str(exc):
            raise
        # draccus only says "could not decode": name the option and where to find its value
        raise ValueError(
            f"{device} needs a serial port: set {device}.port in the config or --{device}.port=/dev/ttyACM0 "
            f"(find it with `lerobot-find-port`). Parser: {' '.join(str(exc).split())}"
        ) from None


def _drop_config_args(argv: list[str]) -> list[str]:
    out, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg in ("--config", "--config_path") and i + 1 < len(argv):
            skip = True
            continue
        if arg.startswith(("--config=", "--config_path=")):
            continue
        out.append(arg)
    return out
