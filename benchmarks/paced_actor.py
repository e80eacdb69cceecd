"""`pirl actor` with the simulated arm paced at a fixed multiple of real time, for robot-time benchmarks.

    python -m benchmarks.paced_actor 4 --config run_config.json --transport.port=...   # 4x real time

In lockstep mode (the sim's default) the simulated SO-101 advances one control period per `send_action`
and the actor steps it as fast as the CPU allows, so a learner beside it gets less compute per robot minute
the faster the machine is. A real arm runs at 1x: the learner has one robot minute of wall time per robot
minute. Here every `send_action` of the simulated arm (episode steps and the drive home alike) is held back
until `simulated seconds / speedup` of wall time have passed since the first one: the arm runs at most
`speedup` x real time, the learner gets 1/`speedup` of a real run's wall time per robot minute (a
conservative stand-in for a real arm). When the actor falls behind by more than `MAX_DEBT_S` (inference or
a busy CPU), the schedule restarts instead of bursting to catch up, as the runtime's own realtime pacer does.

At exit it prints `paced actor: achieved <x> real time (<sim> s simulated in <wall> s, behind <n> times)`,
which the benchmark reads from the actor's log. Nothing else of the actor changes: this module patches
`SimSO101Follower.send_action` and then runs `app.actor.cli.main` with the remaining arguments.

The proper home of this is a sim option (`robot.speedup`, lockstep with a cap on simulated seconds per
wall second, in hardware/sim/so101_follower.py); until it exists the benchmark runs the actor through here.
"""

from __future__ import annotations

import atexit
import sys
import time

MAX_DEBT_S = 0.25  # the most wall time the pacer lets the arm be behind its schedule before restarting it


class Pace:
    """Keeps `sim_s / speedup` <= wall time since the schedule started."""

    def __init__(self, speedup: float, clock=time.monotonic, sleep=time.sleep) -> None:
        if not speedup > 0:
            raise ValueError(f"speedup must be > 0, got {speedup}")
        self.speedup = float(speedup)
        self.clock, self.sleep = clock, sleep
        self.t0: float | None = None
        self.sim_s = 0.0  # simulated time since the schedule started
        self.total_sim_s = 0.0
        self.first: float | None = None
        self.behind = 0  # schedule restarts

    def step(self, period_s: float) -> None:
        now = self.clock()
        if self.t0 is None:
            self.t0 = self.first = now
        self.sim_s += period_s
        self.total_sim_s += period_s
        ahead = self.sim_s / self.speedup - (now - self.t0)
        if ahead > 0:
            self.sleep(ahead)
        elif -ahead > MAX_DEBT_S:
            self.behind += 1
            self.t0, self.sim_s = now, 0.0

    def achieved(self) -> tuple[float, float]:
        """(simulated seconds per wall second since the first step, wall seconds)."""
        wall = self.clock() - self.first if self.first is not None else 0.0
        return (self.total_sim_s / wall if wall > 0 else 0.0), wall


def install(speedup: float) -> Pace:
    """Pace every lockstep `send_action` of the simulated SO-101 in this process."""
    from hardware.sim.so101_follower import SimSO101Follower

    pace = Pace(speedup)
    original = SimSO101Follower.send_action

    def send_action(self, action):
        out = original(self, action)
        if not self.config.realtime:
            pace.step(self.control_period_s)
        return out

    SimSO101Follower.send_action = send_action

    def report() -> None:
        x, wall = pace.achieved()
        print(
            f"paced actor: achieved {x:.2f}x real time ({pace.total_sim_s:.1f} s simulated in {wall:.1f} s, "
            f"target {speedup:g}x, behind {pace.behind} times)",
            flush=True,
        )

    atexit.register(report)
    return pace


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    install(float(argv[0]))
    from app.actor.cli import main as actor_main

    return actor_main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
