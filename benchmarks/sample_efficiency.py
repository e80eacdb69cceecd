"""Benchmark 1: how much does PI-RL improve the few-shot BC start under a fixed wall budget, vs LeRobot's SAC?

For every (method, seed) it runs, on this machine's CPU:

- `flow_noise` / `flow_sde`: the demo's in-process recipe (`app.demo.pipeline.run_inprocess`): scripted
  demos -> few-shot BC of the native flow policy -> deterministic-ODE evaluation ("before") -> PI-RL with
  `default_pirl(method)` until the wall budget is spent -> the same evaluation ("after").
- `sac`: LeRobot's SAC (GaussianActorPolicy + SACAlgorithm + ReplayBuffer) on the same sim task, reward,
  episode length, demos and wall budget, evaluated on the same fixed scenes with its mean action
  (`benchmarks/sac_sim.py` says exactly what is LeRobot's and what is ours).

The budget counts only the learning phase (rollouts + updates); BC and the two evaluations come on top and
are in the `wall` column. PI-RL checks the budget after each update, so it overruns by at most one update,
and its `learn s` (the pipeline's `rl_wall_s`) also includes its final evaluation; SAC's does not.

    .venv/bin/python benchmarks/sample_efficiency.py                         # 3 seeds x 3 methods, 20 min
    .venv/bin/python benchmarks/sample_efficiency.py --budget_s 300 --jobs 2 # what docs/benchmarks.md ran
    .venv/bin/python benchmarks/sample_efficiency.py --methods flow_noise --seeds 0 --budget_s 5 --quick

Prints the docs/benchmarks.md block (command, machine, table, mean +- std per method) and writes the
per-run results as JSON (`--out`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `app` and `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine_line, markdown_table, report  # noqa: E402

METHODS = ("flow_noise", "flow_sde", "sac")
QUICK_DEMOS, QUICK_BC_STEPS = 2, 20  # --quick's BC start for every method (smoke tests only)


@dataclass
class RunSpec:
    """One (method, seed) run and the knobs shared by all runs of a benchmark invocation."""

    method: str
    seed: int
    budget_s: float  # seconds of learning (rollouts + updates) per run
    eval_episodes: int  # deterministic evaluation episodes, same fixed scenes for every method
    quick: bool  # tiny BC and SAC warm-up, for the smoke test only (numbers are meaningless)
    threads: int  # torch intra-op threads per run
    bc_demos: int | None = None  # scripted demos for every method's BC start (None: the demo's default)
    bc_steps: int | None = None  # flow policy BC steps (None: the demo's default; SAC keeps its own 600)


@dataclass
class RunResult:
    method: str
    seed: int
    before: float  # success of the starting policy (BC start; for SAC see `bc_start`)
    after: float  # success after the budget
    episodes: int  # training episodes collected within the budget
    rl_wall_s: float  # learning phase (what the budget limits)
    wall_s: float  # whole run including demos, BC and both evaluations
    bc_start: bool  # whether the run started from a BC-trained policy
    updates: int


def run_one(spec: RunSpec) -> RunResult:
    """Run one (method, seed) in this process; heavy imports happen here so workers pay them once."""
    import torch

    torch.set_num_threads(spec.threads)
    if spec.method == "sac":
        from benchmarks.sac_sim import SACRunConfig, run_sac

        scfg = SACRunConfig(seed=spec.seed, wall_budget_s=spec.budget_s, eval_episodes=spec.eval_episodes)
        if spec.bc_demos is not None:
            scfg = replace(scfg, demos=spec.bc_demos)
        if spec.quick:
            scfg = replace(scfg, bc_steps=QUICK_BC_STEPS, warmup_steps=16, demos=QUICK_DEMOS)
        r = run_sac(scfg, log=lambda m: print(f"[{spec.method} s{spec.seed}] {m}", flush=True))
        return RunResult(
            "sac",
            spec.seed,
            r.success_before,
            r.success_after,
            r.episodes,
            r.rl_wall_s,
            r.wall_s,
            scfg.bc_steps > 0,
            r.updates,
        )

    from app.demo.pipeline import DemoConfig, default_pirl, run_inprocess

    with tempfile.TemporaryDirectory(prefix=f"pirl_b1_{spec.method}_{spec.seed}_") as out:
        cfg = DemoConfig(seed=spec.seed, method=spec.method, output_dir=out)
        cfg.pirl = default_pirl(spec.method)
        # dataclasses.replace, not attribute assignment: a field renamed in the pipeline fails loudly here.
        cfg.run = replace(
            cfg.run,
            wall_budget_s=spec.budget_s,
            updates=1_000_000,  # the wall budget is what stops it
            eval_every=1_000_000,  # evaluate only before and after: evals are not learning time
            eval_episodes=spec.eval_episodes,
        )
        if spec.bc_demos is not None:
            cfg.bc = replace(cfg.bc, demos=spec.bc_demos)
        if spec.bc_steps is not None:
            cfg.bc = replace(cfg.bc, steps=spec.bc_steps)
        if spec.quick:
            cfg.bc = replace(cfg.bc, demos=QUICK_DEMOS, steps=QUICK_BC_STEPS)
            cfg.run = replace(cfg.run, chunks_per_update=40)
        r = run_inprocess(cfg, log=lambda m: print(f"[{spec.method} s{spec.seed}] {m}", flush=True))
    return RunResult(
        spec.method,
        spec.seed,
        r.success_before,
        r.success_after,
        r.episodes,
        r.rl_wall_s,
        r.wall_s,
        True,
        r.updates,
    )


def mean_std(values: list[float]) -> str:
    m = statistics.fmean(values)
    s = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * m:.0f} +- {100 * s:.0f}"


def tables(results: list[RunResult], methods: list[str]) -> tuple[list[str], list[list], list[list]]:
    """Per-run rows (method x seed) and per-method summary rows (mean +- std over seeds)."""
    header = ["method", "seed", "BC start", "before %", "after %", "delta pts", "episodes", "updates"]
    header += ["learn s", "wall s"]
    rows = [
        [
            r.method,
            r.seed,
            "yes" if r.bc_start else "no",
            f"{100 * r.before:.0f}",
            f"{100 * r.after:.0f}",
            f"{100 * (r.after - r.before):+.0f}",
            r.episodes,
            r.updates,
            f"{r.rl_wall_s:.0f}",
            f"{r.wall_s:.0f}",
        ]
        for r in results
    ]
    summary = []
    for m in methods:
        rs = [r for r in results if r.method == m]
        if not rs:
            continue
        summary.append(
            [
                m,
                len(rs),
                mean_std([r.before for r in rs]),
                mean_std([r.after for r in rs]),
                mean_std([r.after - r.before for r in rs]),
                f"{statistics.fmean(r.episodes for r in rs):.0f}",
            ]
        )
    return header, rows, summary


def summary_json(results: list[RunResult], methods: list[str]) -> dict[str, dict[str, float]]:
    """Per method: mean and (sample) std over seeds of before, after and delta, as fractions."""
    out = {}
    for m in methods:
        rs = [r for r in results if r.method == m]
        if not rs:
            continue
        row: dict[str, float] = {"seeds": len(rs)}
        for name, vals in (
            ("before", [r.before for r in rs]),
            ("after", [r.after for r in rs]),
            ("delta", [r.after - r.before for r in rs]),
        ):
            row[f"{name}_mean"] = statistics.fmean(vals)
            row[f"{name}_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        out[m] = row
    return out


def code_version() -> str:
    """HEAD commit plus any uncommitted change to the code these runs execute (the recipe is being tuned)."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "app/demo", "app/rl", "benchmarks"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    changed = [line[3:] for line in dirty if line.strip()]
    return head + (f" + uncommitted {', '.join(changed)}" if changed else "")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget_s", type=float, default=1200.0, help="learning seconds per run (default 20 min)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--eval_episodes", type=int, default=50, help="deterministic eval episodes (fixed scenes)")
    p.add_argument(
        "--bc_demos",
        type=int,
        default=None,
        help="scripted demos for the BC starts (default: the demo's, 12)",
    )
    p.add_argument(
        "--bc_steps", type=int, default=None, help="flow policy BC steps (default: the demo's, 1000)"
    )
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel, one process each")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--out", default="outputs/benchmarks/sample_efficiency.json", help="JSON results file")
    p.add_argument(
        "--quick", action="store_true", help="tiny BC/warm-up for smoke tests (meaningless numbers)"
    )
    args = p.parse_args(argv)
    if args.budget_s <= 0 or args.eval_episodes < 1 or args.jobs < 1 or args.threads < 1:
        p.error("--budget_s must be > 0 and --eval_episodes, --jobs, --threads >= 1")
    if (args.bc_demos is not None and args.bc_demos < 1) or (args.bc_steps is not None and args.bc_steps < 1):
        p.error("--bc_demos and --bc_steps must be >= 1")
    if len(set(args.seeds)) != len(args.seeds):
        p.error(f"--seeds has duplicates: {args.seeds}")
    return args


def bc_line(args: argparse.Namespace) -> str:
    """The BC start the runs used, for the report (the demo's defaults unless overridden)."""
    from app.demo.pipeline import BCConfig
    from benchmarks.sac_sim import SACRunConfig

    if args.quick:
        return f"--quick ({QUICK_DEMOS} demos x {QUICK_BC_STEPS} steps)"
    demos = BCConfig.demos if args.bc_demos is None else args.bc_demos
    steps = BCConfig.steps if args.bc_steps is None else args.bc_steps
    return f"{demos} scripted demos, flow policy {steps} BC steps (SAC: {SACRunConfig.bc_steps})"


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("MUJOCO_GL", "egl")
    # Seed-major order: with --jobs 2 the runs side by side are different methods of one seed, so no method
    # systematically shares the CPU with a heavier neighbour. The table is method-major again.
    specs = [
        RunSpec(
            m, s, args.budget_s, args.eval_episodes, args.quick, args.threads, args.bc_demos, args.bc_steps
        )
        for s in args.seeds
        for m in args.methods
    ]
    machine = machine_line()
    version = code_version()
    t0 = time.monotonic()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # SIGTERM unwinds like Ctrl-C, so the pool below terminates its workers instead of orphaning them.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    results: list[RunResult] = []
    with contextlib.ExitStack() as stack:
        stack.callback(signal.signal, signal.SIGTERM, previous)
        if args.jobs == 1:
            finished = map(run_one, specs)
        else:
            pool = stack.enter_context(mp.get_context("spawn").Pool(args.jobs))
            finished = pool.imap_unordered(run_one, specs, chunksize=1)
        for r in finished:
            results.append(r)
            # Progress, and nothing lost if a later run dies: every finished run is on disk at once.
            print(
                f"[{len(results)}/{len(specs)}] {r.method} seed {r.seed}: {100 * r.before:.0f} -> "
                f"{100 * r.after:.0f} % ({r.updates} updates, {r.episodes} episodes, {r.wall_s:.0f} s)",
                flush=True,
            )
            partial = {"args": vars(args), "partial": True, "results": [asdict(x) for x in results]}
            out.write_text(json.dumps(partial, indent=2))
    results.sort(key=lambda r: (args.methods.index(r.method), args.seeds.index(r.seed)))
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    header, rows, summary = tables(results, args.methods)
    notes = (
        f"Learning budget {args.budget_s:.0f} s per run, {args.jobs} run(s) at a time, {args.threads} torch "
        f"thread(s) each; BC start: {bc_line(args)}; {args.eval_episodes} deterministic evaluation episodes on fixed scenes. "
        f"Load avg {load_end:.1f} at the end; total {time.monotonic() - t0:.0f} s. Code: {version}.\n\n"
        + markdown_table(["method", "seeds", "before %", "after %", "delta pts", "episodes"], summary)
    )
    print(report("Benchmark 1: sample efficiency", header, rows, notes), flush=True)
    payload = {
        "args": vars(args),
        "machine": machine,
        "code": version,
        "load_avg_end": load_end,
        "results": [asdict(r) for r in results],
        "summary": summary_json(results, args.methods),
    }
    out.write_text(json.dumps(payload, indent=2))
    print(f"results: {out}")
    return payload


if __name__ == "__main__":
    main()
