"""`pirl demo`: the simulated SO-101 PI-RL demo (see app/demo/cli.py) and its in-process pipeline."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    from app.demo.cli import main as cli_main

    return cli_main(argv)
