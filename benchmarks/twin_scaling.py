"""Benchmark: how many simulated arms one machine steps at once, for training in the randomized twin.

`pirl actor --robot.seed=K` runs one simulated SO-101 per process (docs/simulation.md, "Randomized twin").
This measures what N such processes get out of this machine, without a policy or a learner in the way:
each arm is its own process (multiprocessing, spawn, as `pirl actor` processes are), builds the
randomized sim (`randomize.enable=true`, lockstep), and steps it with a fixed, policy-free action stream
(a seeded random walk inside the joint limits, `action_stream`), one `send_action` + `get_observation` per
control period and a `reset` (a new twin) every `--episode_steps`. All arms start together (a barrier,
after every process has imported, built and warmed up its model) and each steps for `--seconds` of wall
time. Reported per N: total env steps/s (the sum over arms), per-arm steps/s (mean, min-max), the
speed-up over one arm, each arm's CPU share (process CPU time / wall time: below 100 % the arms wait for a
core), the cores the arms got in all and their steps per CPU-second, the cores every other process on the
machine kept busy over the same window (/proc/stat), and the load average before and after. On a shared
machine the last two say how much of it the arms could have had.

    .venv/bin/python benchmarks/twin_scaling.py --out benchmarks/results/twin.json
    .venv/bin/python benchmarks/twin_scaling.py --smoke --out /tmp/twin.json   # N = 1, 2 for 1 s (the test)

The same per-arm worker, run for a fixed number of steps with `record=True`, returns a digest of every
observation: `parallel_traces` (arms in parallel processes) and `serial_traces` (the same seeds one after
another in this process) must agree exactly, which is the check that parallel arms are the same twins
as one arm stepped N times (tests/benchmarks/test_twin_scaling.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import queue
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `hardware` and `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks.common import command_line, machine_line, markdown_table  # noqa: E402

ARMS = (1, 2, 4, 8, 16)
SMOKE = {"arms": [1, 2], "seconds": 1.0}
WALK_STEP_DEG = 3.0  # std of the random walk's step per control period, per joint (gripper: 0..100 units)
WALK_PULL = 0.05  # share of the distance to home the walk gives back each step (keeps it near the workspace)


@dataclass(frozen=True)
class ArmSpec:
    """One simulated arm: what `pirl actor --config configs/sim_twin_reach.json --robot.seed=K` builds."""

    seed: int  # the robot's seed (`--robot.seed`): its twins and tasks; also seeds the action stream
    task: str = "reach"
    randomize: bool = True  # `--robot.randomize.enable`
    episode_steps: int = 150  # control periods between resets (a new twin at each)
    fps: int = 30


@dataclass
class ArmResult:
    seed: int
    steps: int
    wall_s: float
    cpu_s: float  # this process's CPU time over the same interval
    digests: list[str] = field(default_factory=list)  # per step (record=True only)

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.wall_s if self.wall_s > 0 else 0.0


def action_stream(spec: ArmSpec) -> Iterator[dict[str, float] | None]:
    """The arm's fixed actions: a seeded random walk inside the joint limits, back at home after each reset.

    Yields None where the arm resets instead of acting (every `episode_steps`). Seeded from the arm's own
    seed on a stream apart from the robot's RNG, so it is the same sequence wherever the arm runs."""
    from hardware import so101_model

    rng = np.random.default_rng([spec.seed, 1])
    motors = so101_model.MOTORS
    limits = so101_model.motor_limits()
    lo = np.array([limits[m][0] for m in motors])
    hi = np.array([limits[m][1] for m in motors])
    home = np.array([so101_model.HOME_POSITION[m] for m in motors])
    pos = home.copy()
    step = 0
    while True:
        if step > 0 and step % spec.episode_steps == 0:
            pos = home.copy()
            yield None
        pos = np.clip(pos + WALK_PULL * (home - pos) + rng.normal(0.0, WALK_STEP_DEG, len(motors)), lo, hi)
        yield {f"{m}.pos": float(v) for m, v in zip(motors, pos, strict=True)}
        step += 1


def observation_digest(obs: dict) -> str:
    """sha256 of the observation's values in key order (state only: every value is a number)."""
    values = np.asarray([obs[k] for k in sorted(obs)], dtype=np.float64)
    return hashlib.sha256(values.tobytes() + "|".join(sorted(obs)).encode()).hexdigest()


def _make_robot(spec: ArmSpec):
    import tempfile

    from hardware.sim import RandomizationConfig, SimSO101Follower, SimSO101FollowerConfig

    cfg = SimSO101FollowerConfig(
        task=spec.task,
        fps=spec.fps,
        seed=spec.seed,
        randomize=RandomizationConfig(enable=spec.randomize),
        id=f"twin{spec.seed}",
        calibration_dir=Path(tempfile.gettempdir()) / "pirl-twin-no-calibration",
    )
    return SimSO101Follower(cfg)


def run_arm(
    spec: ArmSpec, seconds: float | None = None, steps: int | None = None, record: bool = False, ready=None
) -> ArmResult:
    """Step one arm for `seconds` of wall time or exactly `steps` control periods.

    `ready()` is called once the model is built and warmed up (the barrier in `run_arms`); timing starts
    when it returns. With `record`, every observation's digest is kept (the first is the one at connect).
    A warm-up never steps the timed robot: it runs on a throwaway robot, so what is recorded is exactly
    the arm's own sequence from its seed."""
    if (seconds is None) == (steps is None):
        raise ValueError("run_arm needs exactly one of seconds or steps")
    warm = _make_robot(spec)  # first build and mj_step pay one-off costs (imports, allocation)
    warm.connect()
    for action in _take(action_stream(spec), 10):
        if action is not None:
            warm.send_action(action)
            warm.get_observation()
    warm.disconnect()
    robot = _make_robot(spec)
    robot.connect()
    digests: list[str] = []
    try:
        if record:
            digests.append(observation_digest(robot.get_observation()))
        if ready is not None:
            ready()
        n = 0
        t0, c0 = time.perf_counter(), time.process_time()
        end = None if seconds is None else t0 + seconds
        for action in action_stream(spec):
            if action is None:
                robot.reset()
            else:
                robot.send_action(action)
            obs = robot.get_observation()
            n += 1
            if record:
                digests.append(observation_digest(obs))
            if (steps is not None and n >= steps) or (end is not None and time.perf_counter() >= end):
                break
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        robot.disconnect()
    return ArmResult(spec.seed, n, wall, cpu, digests)


def _take(it: Iterator, n: int) -> list:
    return [next(it) for _ in range(n)]


def _arm_process(spec: ArmSpec, seconds, steps, record, barrier, results) -> None:
    """Child process body (top level, so spawn can find it): build, meet the others, step, report."""
    try:
        result = run_arm(spec, seconds, steps, record, ready=lambda: barrier.wait(timeout=600))
        results.put(("ok", asdict(result)))
    except BaseException:  # noqa: BLE001 (reported to the parent, which raises)
        barrier.abort()
        results.put(("error", f"arm {spec.seed}:\n{traceback.format_exc()}"))


def _cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) jiffies of the whole machine from /proc/stat; None where there is none."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)


def _busy_cores(start: tuple[int, int] | None, end: tuple[int, int] | None) -> float | None:
    if start is None or end is None or end[1] <= start[1]:
        return None
    return (end[0] - start[0]) / (end[1] - start[1]) * (os.cpu_count() or 1)


def run_arms(
    specs: Sequence[ArmSpec],
    seconds: float | None = None,
    steps: int | None = None,
    record: bool = False,
    timeout_s: float = 900.0,
) -> list[ArmResult]:
    """Run every arm in its own spawned process, all released together; results in the order of `specs`."""
    return _run_arms(specs, seconds, steps, record, timeout_s)[0]


def _run_arms(
    specs: Sequence[ArmSpec], seconds: float | None, steps: int | None, record: bool, timeout_s: float
) -> tuple[list[ArmResult], float | None]:
    """`run_arms`, and how many cores the whole machine kept busy while the arms stepped (`seconds` mode:
    this process meets the arms at the barrier, then samples /proc/stat over their window)."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(len(specs) + 1)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_arm_process, args=(s, seconds, steps, record, barrier, results), daemon=True)
        for s in specs
    ]
    for p in procs:
        p.start()
    got: list[tuple[str, object]] = []
    deadline = time.monotonic() + timeout_s
    busy = None
    try:
        try:
            barrier.wait(timeout=timeout_s)
            if seconds is not None:
                start = _cpu_ticks()
                time.sleep(seconds)
                busy = _busy_cores(start, _cpu_ticks())
        except threading.BrokenBarrierError:  # an arm failed before it was ready: its error follows
            pass
        while len(got) < len(specs):
            try:
                got.append(results.get(timeout=1.0))
            except queue.Empty:  # check the children are still there
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{len(specs) - len(got)} arm(s) did not report in {timeout_s} s"
                    ) from None
                if not any(p.is_alive() for p in procs) and results.empty():
                    codes = [p.exitcode for p in procs]
                    raise RuntimeError(
                        f"arm processes exited without a result (exit codes {codes})"
                    ) from None
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
                p.join(5)
    errors = [msg for kind, msg in got if kind == "error"]
    if errors:
        raise RuntimeError("\n".join(str(e) for e in errors))
    by_seed = {r["seed"]: ArmResult(**r) for _, r in got}
    return [by_seed[s.seed] for s in specs], busy


def parallel_traces(specs: Sequence[ArmSpec], steps: int) -> list[list[str]]:
    """Per arm, the digest of every observation, the arms stepped in parallel processes."""
    return [r.digests for r in run_arms(specs, steps=steps, record=True)]


def serial_traces(specs: Sequence[ArmSpec], steps: int) -> list[list[str]]:
    """The same arms one after another in this process: what one arm stepped N times sees."""
    return [run_arm(s, steps=steps, record=True).digests for s in specs]


# ------------------------------------------------------------------------------------- the benchmark


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def measure_point(n: int, seconds: float, task: str, randomize: bool, episode_steps: int) -> dict:
    """N arms (seeds 0..N-1) stepping together for `seconds`: totals, per-arm spread, CPU share, load."""
    load_start = _load()
    specs = [ArmSpec(seed=k, task=task, randomize=randomize, episode_steps=episode_steps) for k in range(n)]
    arms, busy = _run_arms(specs, seconds, None, False, timeout_s=900.0)
    load_end = _load()
    rates = [a.steps_per_s for a in arms]
    cpu = [a.cpu_s / a.wall_s for a in arms if a.wall_s > 0]
    arm_cores = sum(cpu)
    return {
        "arms": n,
        "total_steps_per_s": sum(rates),
        "per_arm_steps_per_s": {"mean": sum(rates) / n, "min": min(rates), "max": max(rates)},
        "cpu_share_per_arm": {"mean": sum(cpu) / len(cpu), "min": min(cpu), "max": max(cpu)},
        "arm_cores": arm_cores,  # cores the arms got: the sum of their CPU shares
        "steps_per_cpu_s": sum(a.steps for a in arms) / sum(a.cpu_s for a in arms),
        # every process on the machine over the same window (/proc/stat); minus arm_cores: other jobs
        "machine_busy_cores": busy,
        "other_cores": None if busy is None else max(0.0, busy - arm_cores),
        "steps": [a.steps for a in arms],
        "wall_s": [round(a.wall_s, 3) for a in arms],
        "load_avg_start": load_start,
        "load_avg_end": load_end,
    }


def table(points: Sequence[dict], fps: int = 30) -> str:
    """The markdown table docs/simulation.md pastes."""
    base = points[0]["total_steps_per_s"] / points[0]["arms"] if points else 0.0
    rows = []
    for p in points:
        per, cpu = p["per_arm_steps_per_s"], p["cpu_share_per_arm"]
        rows.append(
            [
                p["arms"],
                f"{p['total_steps_per_s']:.0f}",
                f"{p['total_steps_per_s'] / fps:.0f}x",
                f"{per['mean']:.0f} ({per['min']:.0f}-{per['max']:.0f})",
                f"{p['total_steps_per_s'] / base:.2f}x" if base else "-",
                f"{100 * cpu['mean']:.0f} %",
                f"{p['arm_cores']:.2f}",
                f"{p['steps_per_cpu_s']:.0f}",
                "-" if p["other_cores"] is None else f"{p['other_cores']:.2f}",
                f"{p['load_avg_start'][0]:.1f} / {p['load_avg_end'][0]:.1f}",
            ]
        )
    header = [
        "arms",
        "total steps/s",
        "x real time",
        "per arm steps/s (min-max)",
        "vs 1 arm",
        "CPU per arm",
        "cores used by arms",
        "steps per CPU-s",
        "cores used by other jobs",
        "load 1 min, start / end",
    ]
    return markdown_table(header, rows)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arms", type=int, nargs="+", default=list(ARMS), help="numbers of parallel arms to time")
    p.add_argument("--seconds", type=float, default=10.0, help="wall time each point steps for")
    p.add_argument("--task", default="reach", help="reach, pick_cube or none")
    p.add_argument("--episode_steps", type=int, default=150, help="control periods between resets (new twin)")
    p.add_argument("--nominal", action="store_true", help="randomization off (the nominal sim)")
    p.add_argument("--smoke", action="store_true", help=f"the test's tiny run: {SMOKE}")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    p.add_argument(
        "--md", type=Path, default=None, help="write the markdown block (command, machine, table) here"
    )
    args = p.parse_args(argv)
    if args.smoke:
        args.arms, args.seconds = list(SMOKE["arms"]), SMOKE["seconds"]
    if args.seconds <= 0 or args.episode_steps <= 0 or any(n <= 0 for n in args.arms):
        p.error("--seconds, --episode_steps and --arms must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_start, machine = _load(), machine_line()  # machine_line names the load now: before the arms
    points = []
    for n in args.arms:
        point = measure_point(n, args.seconds, args.task, not args.nominal, args.episode_steps)
        points.append(point)
        print(
            f"{n:3d} arm(s): {point['total_steps_per_s']:8.0f} steps/s total, "
            f"{point['per_arm_steps_per_s']['mean']:7.0f} per arm, "
            f"CPU {100 * point['cpu_share_per_arm']['mean']:.0f} % per arm, load {point['load_avg_end'][0]:.1f}",
            flush=True,
        )
    result = {
        "command": command_line(sys.argv if argv is None else ["benchmarks/twin_scaling.py", *argv]),
        "machine": machine,
        "cores": os.cpu_count(),
        "date": started,
        "load_avg_start": load_start,
        "load_avg_end": _load(),
        "task": args.task,
        "randomize": not args.nominal,
        "observation": "state only",
        "seconds_per_point": args.seconds,
        "episode_steps": args.episode_steps,
        "points": points,
    }
    md = "\n".join(
        [
            f"Command: `{result['command']}`  ",
            f"Machine: {result['machine']}  ",
            f"Date: {started}, load average (1, 5, 15 min) {load_start} at start, {result['load_avg_end']} at end",
            "",
            table(points),
        ]
    )
    print(md)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    if args.md is not None:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(md + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
