"""The `pirl` command: one entry point, one sub-command per job.

Sub-commands are imported lazily so `pirl doctor` works even when a heavy dependency is broken, and so
start-up stays fast. Each sub-command module exposes `main(argv: list[str]) -> int` and parses its own
typed (draccus) config.
"""

from __future__ import annotations

import difflib
import importlib
import sys

# name -> (module, one-line help). Order is the order shown in `pirl --help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "doctor": (
        "app.doctor",
        "check this machine: Python/torch/LeRobot, headless MuJoCo, ports, cameras, CUDA",
    ),
    "demo": ("app.demo", "sim SO-101: scripted demos -> BC -> PI-RL via learner + actor on loopback"),
    "calibrate": (
        "calibration.cli",
        "calibrate arms (LeRobot's flow), validate calibrations, record and check the safety envelope",
    ),
    "bc": ("app.bc", "behaviour-clone the native flow policy from a LeRobot dataset (demos, takeovers)"),
    "learner": (
        "app.learner.cli",
        "serve LearnerService and train (PI-RL; --algorithm.type=sac: LeRobot's SAC)",
    ),
    "actor": ("app.actor.cli", "run episodes on a robot or the sim and stream them to the learner"),
    "console": (
        "app.console.main",
        "start the actor and the operator console next to the robot (Textual TUI)",
    ),
    "eval": ("app.eval", "success rate of a checkpoint with a confidence interval; optional LeRobot dataset"),
}


def _usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = ["usage: pirl <command> [options]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += [
        "",
        "Run `pirl <command> --help` for a command's main options (`--help-all`: every option).",
        "A bad option, value or config file ends with one line on stderr that names it, and exit code 2.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from app import __version__

        print(f"pirl {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, list(COMMANDS), n=1, cutoff=0.6)
        hint = f"did you mean `pirl {close[0]}`? " if close else ""
        print(f"pirl: unknown command {name!r}; {hint}commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    from app.run.errors import ConfigError

    try:
        return int(module.main(rest) or 0)
    except ConfigError as exc:  # a command that parses a config without its own handler: still one line
        print(f"pirl {name}: {exc}", file=sys.stderr)
        return 2
