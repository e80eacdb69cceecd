"""`pirl actor`: the PI-RL actor on a robot (sim or real), or LeRobot's SAC actor with --algorithm.type=sac.

    pirl actor --config configs/sim_pirl_reach.json [--actor.actor_id=a1] [--actor.episodes=100]
    pirl actor --algorithm.type=sac --config configs/sac_gym_hil.json        # LeRobot's own SAC actor

Ctrl-C or SIGTERM ends the episode, holds the arm, delivers what is queued (up to 5 s) and disconnects.
"""

from __future__ import annotations

import sys
import threading

from app.learner.cli import install_stop_signals, setup_logging
from app.learner.sac import requested_algorithm

_HELP = __doc__


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv) and requested_algorithm(argv) != "sac":
        print(_HELP)
        from app.learner.config import PIRLRunConfig, register_choices

        register_choices()
        import draccus

        draccus.parse(PIRLRunConfig, args=["--help"])
        return 0
    if requested_algorithm(argv) == "sac":
        from app.learner.sac import run_actor

        return run_actor(argv)
    setup_logging("-v" in argv)
    argv = [a for a in argv if a != "-v"]
    from app.actor.loop import Actor, ActorError
    from app.learner.config import parse_run_config

    cfg = parse_run_config(argv)
    shutdown = threading.Event()
    install_stop_signals(shutdown, "actor")
    try:
        actor = Actor(cfg, progress=lambda line: print(line, flush=True), shutdown=shutdown)
    except ValueError as err:
        print(f"pirl actor: {err}", file=sys.stderr)
        return 2
    try:
        return actor.run()
    except ActorError as err:
        print(f"pirl actor: {err}", file=sys.stderr)
        return 2
