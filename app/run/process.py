"""Process plumbing shared by `pirl learner` and `pirl actor`: logging, stop signals, the common front end.

Both commands read the same run config, answer `--help` the same way, hand `--algorithm.type=sac` to
LeRobot's own SAC processes, and stop cleanly on the first Ctrl-C/SIGTERM (abort on the second). Keeping
that here means the two processes can never drift apart in how an operator stops them.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Callable


def install_stop_signals(shutdown: threading.Event, name: str) -> None:
    """First SIGINT/SIGTERM: set `shutdown` (clean stop); second: default behaviour (abort)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, _frame):
        if shutdown.is_set():
            signal.signal(signum, signal.SIG_DFL)
            raise KeyboardInterrupt
        print(
            f"{name}: {signal.Signals(signum).name} received, stopping cleanly (again to abort)", flush=True
        )
        shutdown.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,  # parsing a config may have configured the root logger already (at WARNING)
    )
    for noisy in ("torch", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def set_torch_threads(n: int) -> None:
    """`learner.torch_threads` / `actor.torch_threads`: 0 leaves torch's default."""
    if n > 0:
        import torch

        torch.set_num_threads(n)


# `pirl learner --help` / `pirl actor --help`: one screen. `--help-all` prints draccus's full option tree
# (thousands of lines: every option of every policy, robot and teleoperator type).
SECTIONS = (
    ("policy", "--policy.type=pirl_flow (native) or pirl_vla (SmolVLA/pi0/pi0.5); PI-RL: --policy.rl.*"),
    ("policy_path", "instead of policy: a LeRobot pretrained folder (e.g. from `pirl bc`)"),
    ("algorithm", "--algorithm.type=pirl (default; chunks_per_update, ...) or sac (LeRobot's runtime)"),
    ("robot", "the arm the actor drives: --robot.type=sim_so101, so101_follower, koch_follower, ..."),
    ("teleop", "the operator's takeover device: --teleop.type=so101_leader, gamepad, sim_expert, ..."),
    ("safety", "joint limits, speed limits, workspace box, envelope file, watchdogs"),
    ("episode", "time limit, reset pose, seeds"),
    ("transport", "learner address (host, port), token, TLS, deadlines"),
    ("learner", "output_dir, resume, max_updates, checkpoints, logging"),
    ("actor", "actor_id, episodes, camera/state keys, console control channel"),
    ("wandb", "Weights & Biases (LeRobot's WandBConfig): --wandb.enable=true, project, entity, mode"),
)
COMMON_OPTIONS = {
    "learner": (
        ("--learner.output_dir=DIR", "checkpoints, metrics.jsonl, TensorBoard logs"),
        ("--learner.resume=true", "continue the run in output_dir from its newest checkpoint"),
        ("--learner.max_updates=N", "stop after N updates (0: until Ctrl-C)"),
        ("--transport.host=0.0.0.0 --transport.port=50051", "where to serve actors"),
        ("--transport.token_env=VAR", "require the shared secret held in $VAR"),
        ("--policy_path=DIR", "start from a pretrained policy (e.g. `pirl bc` output)"),
        ("--policy.rl.optim.actor_lr=X", "PI-RL settings: --policy.rl.{ppo,gae,optim,noise,sde}.*"),
        ("--algorithm.chunks_per_update=N", "on-policy batch size"),
        ("--learner.torch_threads=N", "CPU threads (1 beside an actor on a small machine)"),
        ("--wandb.enable=true --wandb.project=P", "also log metrics to Weights & Biases"),
    ),
    "actor": (
        ("--actor.actor_id=NAME", "give each of several actors its own"),
        ("--actor.episodes=N", "stop after N episodes (0: until Ctrl-C)"),
        ("--transport.host=HOST --transport.port=PORT", "the learner to stream to"),
        ("--robot.type=T --robot.port=/dev/ttyACM0 --robot.id=ID", "a real follower (calibrated)"),
        ("--teleop.type=T --teleop.port=... --teleop.id=ID", "the operator's leader arm or gamepad"),
        ("--safety.envelope_path=FILE", "the envelope from `pirl calibrate envelope`"),
        ("--episode.time_limit_s=S", "episode length"),
        ("--actor.torch_threads=N", "CPU threads (1 beside a learner on a small machine)"),
    ),
}


def short_help(name: str, doc: str) -> str:
    """One screen: what the command does, the config's sections, the options most runs touch."""
    lines = [f"usage: pirl {name} --config FILE [--section.option=VALUE ...] [-v]", ""]
    lines += [ln.rstrip() for ln in (doc or "").strip().splitlines()]
    lines += ["", "--config FILE is a run config (JSON); recipes are in configs/ (docs/recipes.md).", ""]
    lines += ["Sections of the run config (any value can be overridden as --section.option=VALUE):"]
    lines += [f"  {sec:<12} {what}" for sec, what in SECTIONS]
    options = COMMON_OPTIONS.get(name, ())
    if options:
        lines += ["", "Most used options:"]
        lines += [
            f"  {opt}\n      {what}" if len(opt) > 40 else f"  {opt:<40} {what}" for opt, what in options
        ]
    lines += [
        "",
        f"Every option (long: all policy, robot and teleoperator types): pirl {name} --help-all",
        "Guides: docs/runtime.md, docs/recipes.md. A bad option or value ends with one line naming it (exit 2).",
    ]
    return "\n".join(lines)


def print_full_help(config_class: type, prog: str, doc: str = "") -> None:
    """draccus's whole option tree (every choice type's options) after `doc`."""
    import draccus

    if doc:
        print(doc.strip() + "\n")
    with contextlib.suppress(SystemExit):  # draccus prints every option, then exits
        draccus.parse(config_class, args=["--help"], prog=prog)


def operator_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "fix the config, the files or the devices", not a bug in pirl."""
    from draccus.utils import DraccusException

    errors: tuple[type[BaseException], ...] = (
        ValueError,
        FileExistsError,
        FileNotFoundError,
        DraccusException,
    )
    try:
        from hardware.factory import DeviceOpenError
    except ImportError:  # pragma: no cover - hardware is part of the package
        return errors
    return (*errors, DeviceOpenError)


def error_line(err: BaseException) -> str:
    """The one line an operator error prints (draccus's file errors name the file)."""
    from app.run.errors import describe_load_error, one_line

    return describe_load_error(err) or one_line(err)


def run_role(
    argv: list[str],
    name: str,
    help_text: str,
    run_sac: Callable[[list[str]], int],
    build_pirl: Callable[[object, threading.Event], Callable[[], int]],
) -> int:
    """Front end of a runtime process: help, the SAC hand-off, then `build_pirl(config, shutdown)()`.

    Everything up to and including `build_pirl` is the operator's to fix when it fails: a config file or
    option draccus cannot read (app/run/errors.py), a value `validate` refuses, a missing file, a device
    that does not open. Each becomes one line on stderr and exit code 2, before anything is built when the
    config is at fault. Errors while running are not caught here: a bug keeps its traceback.
    """
    from app.run.sac import config_path, requested_algorithm

    sac = requested_algorithm(argv) == "sac"
    if "--help-all" in argv and not sac:
        from app.run.config import PIRLRunConfig
        from app.run.registry import register_choices

        register_choices()
        print_full_help(PIRLRunConfig, f"pirl {name}", help_text)
        return 0
    if any(a in ("-h", "--help") for a in argv) and not sac:
        print(short_help(name, help_text))
        return 0
    if sac:
        return run_sac(argv)
    verbose = "-v" in argv
    argv = [a for a in argv if a != "-v"]
    if not argv:
        print(
            f"pirl {name}: no run config: give --config FILE, a recipe in configs/ "
            f"(e.g. pirl {name} --config configs/sim_pirl_reach.json; docs/recipes.md); "
            f"`pirl {name} --help` for the options",
            file=sys.stderr,
        )
        return 2
    from app.run.parse import parse_run_config

    shutdown = threading.Event()
    try:
        # parsed before logging is set up: importing the robot and camera modules logs INFO lines that
        # would bury a one-line config error
        cfg = parse_run_config(argv, command=f"pirl {name}")
        if config_path(argv) is None and cfg.policy is None and cfg.policy_path is None:
            raise ValueError(
                "no run config: give --config FILE, a recipe in configs/ (e.g. --config "
                "configs/sim_pirl_reach.json; docs/recipes.md), or --policy.type / --policy_path"
            )
        cfg.validate(name)
        # the token's environment variable is read here, so an unset one is one line before anything is
        # built, not a traceback at the first connection (validate leaves it: doctor and tests check
        # recipes on machines without the secret)
        cfg.transport.resolved_token()
        setup_logging(verbose)
        set_torch_threads(getattr(cfg, name).torch_threads)
        install_stop_signals(shutdown, name)  # only once there is something to stop
        run = build_pirl(cfg, shutdown)
    except operator_errors() as err:
        print(f"pirl {name}: {error_line(err)}", file=sys.stderr)
        return 2
    return run()
