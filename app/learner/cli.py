"""`pirl learner`: the PI-RL learner, or LeRobot's SAC learner with --algorithm.type=sac.

    pirl learner --config configs/sim_pirl_reach.json [--learner.resume=true] [--transport.port=50051]
    pirl learner --algorithm.type=sac --config configs/sac_gym_hil.json      # LeRobot's own SAC learner

Ctrl-C (SIGINT) or SIGTERM stops the loop between updates and writes a final checkpoint; a second
Ctrl-C aborts at once (the newest finished checkpoint stays intact).
"""

from __future__ import annotations

from app.run.process import install_stop_signals, run_role, setup_logging

__all__ = ["install_stop_signals", "main", "setup_logging"]


def _run_sac(argv: list[str]) -> int:
    from app.run.sac import run_learner

    return run_learner(argv)


def _build_pirl(cfg, shutdown):
    from app.learner.loop import Learner

    return Learner(cfg, progress=lambda line: print(line, flush=True), shutdown=shutdown).run


def main(argv: list[str]) -> int:
    return run_role(argv, "learner", __doc__, _run_sac, _build_pirl)
