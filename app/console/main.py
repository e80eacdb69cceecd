"""`pirl console`: start the actor (sim or real) and the operator console next to the robot.

    pirl console --config configs/sim_demo.json            # starts `pirl actor --config ...`, then the TUI
    pirl console --attach=true --control.port=7070         # watch an actor that is already running
    pirl console --config configs/sim_pirl_reach.json --robot.realtime=true --transport.host=gpu-box

Options other than the console's own (`--config`, `--attach`, `--control.*`, `--actor_log`) go to the
actor it starts, exactly as `pirl actor` takes them; they are checked before anything starts.

The actor is a separate process in its own session, so the console freezing, crashing or losing its SSH
connection never reaches the robot loop; the actor's output goes to `actor_log`. Quitting (q, confirmed)
asks the actor to shut down safely and waits for it. An actor that exits on its own (e.g. a missing
calibration file) is shown with the end of its log, and the console then exits with a non-zero code. A
control port where an actor already listens is refused before anything starts. `--attach=true` with a
dead console: start a new console with the same `--control.port` and it picks the running actor up again.
"""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

import draccus

from app.control.protocol import ControlConfig


@dataclass
class ConsoleConfig:
    # The actor's config file (the one `pirl actor --config` takes). The console starts that actor and
    # watches it. Leave it out with attach=true to watch an actor that is already running.
    config: str | None = None
    # Do not start an actor: connect to the one listening on `control` (e.g. after a console restart).
    attach: bool = False
    # Where console and actor meet (loopback only). The started actor is told to listen here; the console
    # reads the run's token from `control.token_file` (default: derived from the address, as the actor does).
    control: ControlConfig = field(default_factory=ControlConfig)
    # File that receives the started actor's stdout/stderr (the terminal belongs to the console).
    actor_log: str = "outputs/console/actor.log"

    def validate(self) -> None:
        self.control.validate()
        if self.attach and self.config:
            raise ValueError("give either --config (start an actor) or --attach=true (watch a running one)")
        if not self.attach and not self.config:
            raise ValueError(
                "no actor config given: start one with `pirl console --config configs/<recipe>.json`, "
                "or `--attach=true` to watch an actor that is already running"
            )
        if self.config and not Path(self.config).is_file():
            raise ValueError(f"actor config {self.config} not found; see configs/ for the recipes")


CONSOLE_OPTIONS = ("--config", "--attach", "--control", "--actor_log", "--help", "-h")


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """(the console's own options, the options for the actor it starts). `--opt value` pairs stay whole."""
    mine, theirs = [], []
    target = mine
    for arg in argv:
        if arg.startswith("-"):
            name = arg.split("=", 1)[0]
            target = mine if any(name == o or name.startswith(o + ".") for o in CONSOLE_OPTIONS) else theirs
        target.append(arg)
    return mine, theirs


def actor_argv(cfg: ConsoleConfig, extra: list[str] | None = None) -> list[str]:
    """The command that starts the actor so that it listens where this console will connect."""
    argv = [sys.executable, "-m", "app", "actor", "--config", str(cfg.config), *(extra or [])]
    if cfg.control.unix_socket:
        argv.append(f"--actor.control.unix_socket={cfg.control.unix_socket}")
    else:
        argv += [f"--actor.control.host={cfg.control.host}", f"--actor.control.port={cfg.control.port}"]
    if cfg.control.token_file:  # else both derive the same default path from the address
        argv.append(f"--actor.control.token_file={cfg.control.token_file}")
    return argv


def main(argv: list[str]) -> int:
    own, extra = split_argv(list(argv))
    cfg = draccus.parse(config_class=ConsoleConfig, args=own)
    try:
        cfg.validate()
        if extra and cfg.attach:
            raise ValueError(f"{extra[0]} is an actor option; with --attach=true no actor is started")
        if extra:
            _check_actor_options(cfg, extra)
        if not cfg.attach and (where := _listening(cfg.control)):
            raise ValueError(
                f"an actor already listens on {where} (started earlier, maybe by another console); watch "
                f"it with `pirl console --attach=true{_port_option(cfg.control)}`, or stop it first, or "
                "start this one on another --control.port"
            )
    except (ValueError, FileNotFoundError) as exc:
        print(f"pirl console: {exc}", file=sys.stderr)
        return 2
    # Imported here so `pirl console --help` stays fast and works without a terminal.
    from app.console.app import ConsoleApp
    from app.console.launcher import ActorProcess

    actor = None
    if not cfg.attach:
        actor = ActorProcess(actor_argv(cfg, extra), cfg.actor_log).start()
        print(f"pirl console: actor started (pid {actor.proc.pid}), log: {cfg.actor_log}", file=sys.stderr)
    app = ConsoleApp(cfg.control, actor=actor)
    try:
        app.run()
        if app.actor_exit is not None:
            # The screen is gone: the reason the actor exited stays in the terminal as well.
            print(
                f"pirl console: the actor exited (rc={app.actor_exit}); the end of {cfg.actor_log}:",
                file=sys.stderr,
            )
            for line in app.actor_tail:
                print(f"  {line}", file=sys.stderr)
    finally:
        if actor is not None and actor.poll() is None and not app.quit_requested:
            # The console ended without a confirmed quit (crash, closed terminal): the actor keeps the
            # robot safe on its own and keeps running; say how to get back to it.
            print(
                f"pirl console: the actor (pid {actor.proc.pid}) is still running and holds the robot "
                f"safe on its own; reattach with `pirl console --attach=true --control.port="
                f"{cfg.control.port}`",
                file=sys.stderr,
            )
    return int(app.return_code or 0)


def _listening(control: ControlConfig) -> str:
    """Where something already accepts connections on the control address ("" when nothing does): a
    started actor could not listen there, and the console would watch that other actor instead."""
    try:
        if control.unix_socket:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(1.0)
                s.connect(control.unix_socket)
            return control.unix_socket
        with socket.create_connection((control.host, control.port), timeout=1.0):
            return f"{control.host}:{control.port}"
    except OSError:
        return ""


def _port_option(control: ControlConfig) -> str:
    if control.unix_socket:
        return f" --control.unix_socket={control.unix_socket}"
    return f" --control.port={control.port}"


def _check_actor_options(cfg: ConsoleConfig, extra: list[str]) -> None:
    """Parse the actor's options here, so a typo is one line now, not a dead actor in a log file."""
    from app.run.parse import parse_run_config

    parse_run_config(["--config", str(cfg.config), *extra], command="pirl actor").validate("actor")
