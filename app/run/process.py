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
    )
    for noisy in ("torch", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def set_torch_threads(n: int) -> None:
    """`learner.torch_threads` / `actor.torch_threads`: 0 leaves torch's default."""
    if n > 0:
        import torch

        torch.set_num_threads(n)


def run_role(
    argv: list[str],
    name: str,
    help_text: str,
    run_sac: Callable[[list[str]], int],
    build_pirl: Callable[[object, threading.Event], Callable[[], int]],
) -> int:
    """Front end of a runtime process: help, the SAC hand-off, then `build_pirl(config, shutdown)()`.

    `build_pirl` raises ValueError (or FileExistsError/FileNotFoundError) for a config the operator must
    fix; those become one line on stderr and exit code 2 instead of a traceback. Errors while running are
    not caught here: a bug keeps its traceback.
    """
    from app.run.sac import requested_algorithm

    if any(a in ("-h", "--help") for a in argv) and requested_algorithm(argv) != "sac":
        print(help_text)
        import draccus

        from app.run.config import PIRLRunConfig
        from app.run.registry import register_choices

        register_choices()
        with contextlib.suppress(SystemExit):  # draccus prints every option, then exits
            draccus.parse(PIRLRunConfig, args=["--help"])
        return 0
    if requested_algorithm(argv) == "sac":
        return run_sac(argv)
    setup_logging("-v" in argv)
    argv = [a for a in argv if a != "-v"]
    from app.run.parse import parse_run_config

    shutdown = threading.Event()
    try:
        cfg = parse_run_config(argv)
        set_torch_threads(getattr(cfg, name).torch_threads)
        install_stop_signals(shutdown, name)  # only once there is something to stop
        run = build_pirl(cfg, shutdown)
    except (ValueError, FileExistsError, FileNotFoundError) as err:
        print(f"pirl {name}: {err}", file=sys.stderr)
        return 2
    return run()
