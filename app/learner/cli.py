"""`pirl learner`: the PI-RL learner, or LeRobot's SAC learner with --algorithm.type=sac.

    pirl learner --config configs/sim_pirl_reach.json [--learner.resume=true] [--transport.port=50051]
    pirl learner --algorithm.type=sac --config configs/sac_gym_hil.json      # LeRobot's own SAC learner

Ctrl-C (SIGINT) or SIGTERM stops the loop between updates and writes a final checkpoint; a second
Ctrl-C aborts at once (the newest finished checkpoint stays intact).

Several GPUs, one learner (rank 0 serves the actors; docs/runtime.md "Several GPUs"):
    torchrun --nproc_per_node 8 --no-python pirl learner --config C
"""

from __future__ import annotations

from app.run.process import install_stop_signals, run_role, setup_logging

__all__ = ["install_stop_signals", "main", "setup_logging"]


def _run_sac(argv: list[str]) -> int:
    from app.run.sac import run_learner

    return run_learner(argv)


def _build_pirl(cfg, shutdown):
    from app.learner.distributed import Follower, init_from_env
    from app.learner.loop import Learner

    progress = lambda line: print(line, flush=True)  # noqa: E731
    dist = init_from_env(cfg)  # None without torchrun (WORLD_SIZE unset or 1): no process group
    if dist is not None and dist.rank != 0:
        return Follower(cfg, dist, progress=progress).run
    return Learner(cfg, progress=progress, shutdown=shutdown, dist=dist).run


def main(argv: list[str]) -> int:
    return run_role(argv, "learner", __doc__, _run_sac, _build_pirl)
