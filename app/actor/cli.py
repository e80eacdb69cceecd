"""`pirl actor`: the PI-RL actor on a robot (sim or real), or LeRobot's SAC actor with --algorithm.type=sac.

    pirl actor --config configs/sim_pirl_reach.json [--actor.actor_id=a1] [--actor.episodes=100]
    pirl actor --config C --actor.record.root=outputs/run/episodes    # also record every episode (LeRobot)
    pirl actor --algorithm.type=sac --config configs/sac_gym_hil.json        # LeRobot's own SAC actor

Ctrl-C or SIGTERM ends the episode, holds the arm, delivers what is queued (up to 5 s) and disconnects.
"""

from __future__ import annotations

import sys

from app.run.process import run_role


def _run_sac(argv: list[str]) -> int:
    from app.run.sac import run_actor

    return run_actor(argv)


def _build_pirl(cfg, shutdown):
    from app.actor.loop import Actor, ActorError
    from app.episode.recorder import RecordError

    actor = Actor(cfg, progress=lambda line: print(line, flush=True), shutdown=shutdown)

    def run() -> int:
        try:
            return actor.run()
        except (ActorError, RecordError) as err:  # weights that do not fit, a dataset folder it may not use
            print(f"pirl actor: {err}", file=sys.stderr)
            return 2

    return run


def main(argv: list[str]) -> int:
    return run_role(argv, "actor", __doc__, _run_sac, _build_pirl)
