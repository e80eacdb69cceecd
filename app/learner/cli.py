"""`pirl learner`: the PI-RL learner, or LeRobot's SAC learner with --algorithm.type=sac.

    pirl learner --config configs/sim_pirl_reach.json [--learner.resume=true] [--transport.port=50051]
    pirl learner --algorithm.type=sac --config configs/sac_gym_hil.json      # LeRobot's own SAC learner

Ctrl-C (SIGINT) or SIGTERM stops the loop between updates and writes a final checkpoint; a second
Ctrl-C aborts at once (the newest finished checkpoint stays intact).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

from app.learner.sac import requested_algorithm

_HELP = __doc__


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


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv) and requested_algorithm(argv) != "sac":
        print(_HELP)
        from app.learner.config import PIRLRunConfig, register_choices

        register_choices()
        import draccus

        draccus.parse(PIRLRunConfig, args=["--help"])
        return 0
    if requested_algorithm(argv) == "sac":
        from app.learner.sac import run_learner

        return run_learner(argv)
    setup_logging("-v" in argv)
    argv = [a for a in argv if a != "-v"]
    from app.learner.config import parse_run_config
    from app.learner.loop import Learner

    cfg = parse_run_config(argv)
    shutdown = threading.Event()
    install_stop_signals(shutdown, "learner")
    try:
        learner = Learner(cfg, progress=lambda line: print(line, flush=True), shutdown=shutdown)
    except (ValueError, FileExistsError, FileNotFoundError) as err:
        print(f"pirl learner: {err}", file=sys.stderr)
        return 2
    return learner.run()
