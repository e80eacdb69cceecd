"""Benchmark: success against ROBOT time (not wall time, not updates), each method through the real runtime.

For every (task, method, seed):

1. the demo's BC start (`pirl demo`'s steps 1-2: scripted demos recorded as a LeRobotDataset, few-shot BC of
   the native flow policy, `app/demo/pipeline.py`) and its deterministic success on the fixed evaluation
   scenes ("0 min");
2. PI-RL methods: `pirl learner` + `pirl actor` as two processes on loopback (app/run/launch.py), the run
   config `pirl demo` writes (`app.demo.cli.run_config`), the learner asynchronous (the actor never waits for
   an update), the simulated arm paced at `--speedup` x real time (benchmarks/paced_actor.py), until
   `--robot_minutes` of robot time (episode steps + drives home, at 30 Hz) with the policy saved at every
   `--marks` robot minute (`learner.save_at_robot_minutes`);
   `sac`: LeRobot's SAC in the HIL-SERL form (the demos in an offline buffer, half of every batch) in one
   process, lockstep (benchmarks/sac_sim.py), the same robot-time budget and marks, a drive home charged per
   episode (`--sac_reset_steps`, the PI-RL runs' mean by default);
3. the success of every mark's policy on the same fixed held-out scenes (`--eval_episodes`, deterministic:
   the ODE for the flow policy, tanh(mean) for SAC, no human; `app.demo.pipeline.evaluate`, the executor
   `pirl eval` runs, 8 arms batched).

Methods: `baseline` (today's on-policy PI-RL, Flow-Noise, 320 chunks per update, unchanged), `rm_flow_noise`
and `rm_flow_sde` (the robot-minute preset, `learner.preset=robot_minute`, with the demos), `sac`. The
simulated operator (`--operator`) takes over for the robot-minute methods by default, as in `pirl demo`;
human minutes and takeovers come from the actors' episode stats.

    .venv/bin/python benchmarks/robot_time.py --methods baseline rm_flow_noise --seeds 0 --robot_minutes 15
    .venv/bin/python benchmarks/robot_time.py --quick          # the smoke test's tiny budget

Writes the per-run results and the summary as JSON (`--out`), the markdown block docs/benchmarks.md pastes
(`--md`): command, machine, date, load, the table (mean +- std over seeds), and beside the JSON a picture of
it (`--out` with `.png`): success against robot minutes, one curve per method (`write_plot`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `app` and `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import command_line, machine_line, markdown_table  # noqa: E402

METHODS = ("baseline", "rm_flow_noise", "rm_flow_sde", "sac")
TASKS = ("reach", "pick_cube")
MARKS = (5.0, 10.0, 15.0, 30.0, 60.0)
TARGETS = (0.8, 0.9)
QUICK = {"robot_minutes": 0.3, "marks": [0.1, 0.2, 0.3], "eval_episodes": 4, "demos": 2, "bc_steps": 20}


@dataclass
class RunSpec:
    task: str
    method: str
    seed: int
    robot_minutes: float
    marks: list[float]
    speedup: float
    eval_episodes: int
    operator: bool  # the simulated operator takes over (robot-minute methods)
    demos: int
    bc_steps: int
    wall_limit_s: float
    workdir: str
    sac_reset_steps: int = 21


@dataclass
class RunResult:
    task: str
    method: str
    seed: int
    before: float
    curve: list[tuple[float, float]]  # (robot minutes, deterministic success) at every mark reached
    robot_minutes: float
    human_minutes: float = 0.0
    takeovers: int = 0
    key_presses: int = 0  # failure/success terminations that came from the operator (sim: its keys)
    episodes: int = 0
    updates: int = 0
    wall_s: float = 0.0  # learning phase (runtime start to stop), evaluations excluded
    achieved_speedup: float = 0.0  # simulated seconds per wall second of the paced actor
    load_start: float = 0.0
    load_end: float = 0.0
    in_process: bool = False
    notes: list[str] = field(default_factory=list)

    def minutes_to(self, target: float) -> float | None:
        for minutes, success in self.curve:
            if success >= target:
                return minutes
        return None


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


# ------------------------------------------------------------------------------------------- PI-RL


def _demo_cli_config(spec: RunSpec):
    from app.demo.cli import DemoCLIConfig
    from app.demo.sim_envs import SimEnvConfig

    cfg = DemoCLIConfig(
        method="flow_sde" if spec.method == "rm_flow_sde" else "flow_noise",
        baseline=spec.method == "baseline",
        operator=spec.operator and spec.method != "baseline",
        seed=spec.seed,
        demos=spec.demos,
        bc_steps=spec.bc_steps,
        robot_minutes=spec.robot_minutes,
        updates=0,  # robot time is the stop
        eval_episodes=spec.eval_episodes,
        sim=SimEnvConfig(task=spec.task),
    )
    return cfg.resolve()


def bc_start(spec: RunSpec, out: Path):
    """The demo's BC start in `out` (bc_policy/, demos/); returns (config, its deterministic success)."""
    from app.demo.cli import demo_config
    from app.demo.pipeline import build_policy, demo_episodes, evaluate, pretrain, record_demos
    from app.demo.sim_envs import SimEnvs

    cfg = _demo_cli_config(spec)
    cfg.validate()
    dcfg = demo_config(cfg, out)
    envs = SimEnvs(8, cfg.sim)
    try:
        policy = build_policy(dcfg, envs)
        demos = demo_episodes(dcfg, envs)
        pretrain(dcfg, envs, policy.model, demos)
        record_demos(demos[0], envs, out / "demos", f"sim {spec.task}")
        before = evaluate(policy.model, envs, spec.eval_episodes, spec.seed)
    finally:
        envs.close()
    policy.save_pretrained(out / "bc_policy")
    return cfg, before


def _spawn_paced_actor(run, speedup: float, args: list[str]):
    """`python -m benchmarks.paced_actor <speedup> --config ...` as the run's actor0 (followed like
    RunProcesses' own children: log file + progress lines)."""
    from app.run.launch import Proc

    log_dir = run.output_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    cmd = [sys.executable, "-m", "benchmarks.paced_actor", f"{speedup:g}", "--config", str(run.config)]
    cmd += [f"--transport.port={run.port}", "--actor.actor_id=actor0", *args]
    popen = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=root,
        start_new_session=True,
    )  # fmt: skip
    proc = Proc("actor0", popen, log_dir / "actor0.log", run.queue)
    proc._thread = threading.Thread(target=proc._pump, args=(popen.stdout,), daemon=True)
    proc._thread.start()
    run.actors.append(proc)
    return proc


def run_pirl(spec: RunSpec, log=print) -> RunResult:
    from app.demo.cli import run_config
    from app.demo.pipeline import evaluate, load_checkpoint
    from app.demo.sim_envs import SimEnvs
    from app.run.launch import RunProcesses, free_port, read_metrics

    out = Path(spec.workdir) / f"{spec.task}_{spec.method}_s{spec.seed}"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    cfg, before = bc_start(spec, out)
    log(f"[{spec.method} s{spec.seed}] BC start {before:.0%}")
    run_dir = out / "run"
    port = free_port()
    rc = run_config(cfg, out / "bc_policy", run_dir, port, None if cfg.baseline else out / "demos")
    rc["learner"]["save_at_robot_minutes"] = [m for m in spec.marks if m <= spec.robot_minutes]
    rc["learner"]["max_robot_minutes"] = spec.robot_minutes
    rc["learner"]["max_updates"] = 0
    config_path = out / "run_config.json"
    config_path.write_text(json.dumps(rc, indent=2))
    load_start = _load()
    t0 = time.monotonic()
    run = RunProcesses(config_path, run_dir, port)
    notes: list[str] = []
    try:
        run.start_learner()
        _spawn_paced_actor(run, spec.speedup, [])
        while not run.finished:
            for _name, line in run.lines(timeout=5.0):
                if "robot-minute mark" in line or "reached" in line:
                    log(f"[{spec.method} s{spec.seed}] {line}")
            if time.monotonic() - t0 > spec.wall_limit_s:
                notes.append(f"stopped at the wall limit of {spec.wall_limit_s:.0f} s")
                break
            if not any(a.alive for a in run.actors):
                notes.append("the actor exited early")
                break
    finally:
        run.stop()
    wall = time.monotonic() - t0
    load_end = _load()
    actor_log = (
        (run_dir / "logs" / "actor0.log").read_text() if (run_dir / "logs" / "actor0.log").is_file() else ""
    )
    achieved = _achieved_speedup(actor_log)
    robot = (
        json.loads((run_dir / "robot_time.json").read_text())
        if (run_dir / "robot_time.json").is_file()
        else {}
    )
    metrics = read_metrics(run_dir)
    last = metrics[-1] if metrics else {}
    curve = [(0.0, before)]
    from app.demo.cli import saved_marks

    envs = SimEnvs(8, cfg.sim)
    try:
        for mark, path, _meta in saved_marks(run_dir):
            curve.append((mark, evaluate(load_checkpoint(path).model, envs, spec.eval_episodes, spec.seed)))
            log(f"[{spec.method} s{spec.seed}] {mark:g} robot min: {curve[-1][1]:.0%}")
    finally:
        envs.close()
    terminations = _terminations(run_dir)
    return RunResult(
        spec.task, spec.method, spec.seed, before, curve,
        robot_minutes=float(robot.get("robot_minutes", 0.0)),
        human_minutes=float(robot.get("human_minutes", 0.0)),
        takeovers=int(robot.get("takeovers", 0)),
        key_presses=int(terminations.get("failure", 0)) if cfg.operator else 0,
        episodes=int(robot.get("episodes", 0)),
        updates=len(metrics),
        wall_s=wall,
        achieved_speedup=achieved,
        load_start=load_start,
        load_end=load_end,
        notes=notes + ([f"last update's SPS {last.get('charts/SPS', 0):.0f}"] if last else []),
    )  # fmt: skip


def _achieved_speedup(actor_log: str) -> float:
    for line in reversed(actor_log.splitlines()):
        if line.startswith("paced actor: achieved "):
            return float(line.split()[3].rstrip("x"))
    return 0.0


def _terminations(run_dir: Path) -> dict[str, int]:
    path = run_dir / "robot_time.json"
    if not path.is_file():
        return {}
    return {str(k): int(v) for k, v in json.loads(path.read_text()).get("terminations", {}).items()}


# --------------------------------------------------------------------------------------------- SAC


def run_sac_spec(spec: RunSpec, log=print) -> RunResult:
    import torch

    from benchmarks.sac_sim import SACRunConfig, run_sac

    torch.set_num_threads(1)
    cfg = SACRunConfig(
        seed=spec.seed,
        demos=spec.demos,
        wall_budget_s=spec.wall_limit_s,
        eval_episodes=spec.eval_episodes,
        reset_steps_per_episode=spec.sac_reset_steps,
        max_robot_minutes=spec.robot_minutes,
        eval_at_robot_minutes=tuple(m for m in spec.marks if m <= spec.robot_minutes),
    )
    cfg.env.task = spec.task
    if spec.bc_steps < 100:  # --quick
        cfg.bc_steps, cfg.warmup_steps = spec.bc_steps, 16
    load_start = _load()
    r = run_sac(cfg, log=lambda m: log(f"[sac s{spec.seed}] {m}"))
    return RunResult(
        spec.task, "sac", spec.seed, r.success_before, [(0.0, r.success_before), *r.curve],
        robot_minutes=r.robot_minutes, episodes=r.episodes, updates=r.updates, wall_s=r.rl_wall_s,
        achieved_speedup=r.robot_minutes * 60 / r.rl_wall_s if r.rl_wall_s > 0 else 0.0,
        load_start=load_start, load_end=_load(), in_process=True,
        notes=[f"in-process lockstep, {cfg.reset_steps_per_episode} drive-home steps charged per episode"],
    )  # fmt: skip


# ------------------------------------------------------------------------------------------ report


def _fmt(values: list[float], pct: bool = True) -> str:
    if not values:
        return "-"
    scale = 100 if pct else 1
    m = statistics.fmean(values) * scale
    s = (statistics.stdev(values) * scale) if len(values) > 1 else 0.0
    return f"{m:.0f} +- {s:.0f}" if pct else f"{m:.1f} +- {s:.1f}"


def table(results: list[RunResult], marks: list[float]) -> tuple[list[str], list[list[str]]]:
    header = ["task", "method", "seeds", "0 min"] + [f"{m:g} min" for m in marks]
    header += [f"min to {int(100 * t)} %" for t in TARGETS]
    header += ["human min", "takeovers", "episodes", "wall s", "speedup", "load"]
    rows = []
    for task, method in dict.fromkeys((r.task, r.method) for r in results):
        rs = [r for r in results if (r.task, r.method) == (task, method)]
        row = [task, method + (" (in-process)" if rs[0].in_process else ""), str(len(rs))]
        row.append(_fmt([r.before for r in rs]))
        for m in marks:
            row.append(_fmt([dict(r.curve)[m] for r in rs if m in dict(r.curve)]))
        for t in TARGETS:
            reached = [r.minutes_to(t) for r in rs]
            got = [x for x in reached if x is not None]
            row.append(
                f"{statistics.fmean(got):g} ({len(got)}/{len(rs)})"
                if got
                else f"> {max(r.robot_minutes for r in rs):.0f}"
            )
        row.append(_fmt([r.human_minutes for r in rs], pct=False))
        row.append(f"{statistics.fmean(r.takeovers for r in rs):.0f}")
        row.append(f"{statistics.fmean(r.episodes for r in rs):.0f}")
        row.append(f"{statistics.fmean(r.wall_s for r in rs):.0f}")
        row.append(f"{statistics.fmean(r.achieved_speedup for r in rs):.1f}x")
        row.append(
            f"{statistics.fmean(r.load_start for r in rs):.1f}-{statistics.fmean(r.load_end for r in rs):.1f}"
        )
        rows.append(row)
    return header, rows


def report(
    args: argparse.Namespace, results: list[RunResult], machine: str, started: str, total_s: float
) -> str:
    header, rows = table(results, args.marks)
    lines = [
        "### Robot time: success against robot minutes",
        "",
        f"Command: `{command_line()}`  ",
        f"Machine: {machine}  ",
        f"Date: {started} (total {total_s:.0f} s)  ",
        f"Target speedup {args.speedup:g}x real time; {args.eval_episodes} fixed evaluation scenes, "
        "deterministic; success in % (mean +- std over seeds); `min to X %`: first mark at or above X "
        "(mean over the seeds that got there, how many did).",
        "",
        markdown_table(header, rows),
    ]
    notes = sorted({n for r in results for n in r.notes if not n.startswith("last update")})
    if notes:
        lines += ["", "Notes: " + "; ".join(notes) + "."]
    return "\n".join(lines)


def plot_curves(payload: dict) -> dict[str, list[tuple[float, float, float, float]]]:
    """label -> points (robot minutes, success, low, high) for `write_plot`: per task and method, the mean
    success over the seeds at each robot minute any of them reached, and the 95 % Wilson interval of the
    pooled evaluation episodes there (seeds x eval_episodes; it does not include the spread between seeds,
    which the table's +- std shows)."""
    from app.eval.stats import wilson_interval

    n = int(payload["args"]["eval_episodes"])
    results = payload["results"]
    tasks = {r["task"] for r in results}
    out: dict[str, list[tuple[float, float, float, float]]] = {}
    for task, method in dict.fromkeys((r["task"], r["method"]) for r in results):
        runs = [r for r in results if (r["task"], r["method"]) == (task, method)]
        at: dict[float, list[float]] = {}
        for r in runs:
            for minutes, success in r["curve"]:
                at.setdefault(float(minutes), []).append(float(success))
        points = []
        for minutes in sorted(at):
            rates = at[minutes]
            ci = wilson_interval(sum(round(x * n) for x in rates), n * len(rates))
            points.append((minutes, statistics.fmean(rates), ci.low, ci.high))
        label = (
            f"{method}{f' {task}' if len(tasks) > 1 else ''} ({len(runs)} seed{'s' if len(runs) > 1 else ''})"
        )
        out[label] = points
    return out


def write_plot(payload: dict, path: str | Path) -> Path | None:
    """The results (`payload` as written to `--out`) as a PNG at `path`: success against robot minutes, one
    curve per method (`plot_curves`). A plot that fails is one warning line, never a failed benchmark."""
    from app.report.plots import safely, success_vs_robot_minutes

    def draw() -> Path:
        n = int(payload["args"]["eval_episodes"])
        return success_vs_robot_minutes(
            path,
            plot_curves(payload),
            title=f"Robot time: deterministic success on {n} held-out scenes",
            band="95 % Wilson CI, pooled seeds",
        )

    return safely("robot-time plot", draw, warn=lambda msg: print(f"warning: {msg}", flush=True))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--tasks", nargs="+", default=["reach"], choices=TASKS)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--robot_minutes", type=float, default=60.0, help="robot-time budget per run")
    p.add_argument("--marks", type=float, nargs="+", default=list(MARKS), help="robot minutes to evaluate at")
    p.add_argument("--speedup", type=float, default=4.0, help="sim arm at most this x real time")
    p.add_argument("--eval_episodes", type=int, default=100)
    p.add_argument(
        "--operator", choices=("on", "off"), default="on", help="sim operator (robot-minute methods)"
    )
    p.add_argument("--demos", type=int, default=12)
    p.add_argument("--bc_steps", type=int, default=1000)
    p.add_argument("--sac_reset_steps", type=int, default=21, help="drive-home steps charged per SAC episode")
    p.add_argument("--wall_limit_s", type=float, default=0.0, help="per run (0: 3x the paced budget + 120 s)")
    p.add_argument("--workdir", default="", help="run folders (default: a temporary folder, removed)")
    p.add_argument("--out", default="benchmarks/results/robot_time.json")
    p.add_argument("--md", default="benchmarks/results/robot_time.md")
    p.add_argument(
        "--quick", action="store_true", help="tiny budget for the smoke test (meaningless numbers)"
    )
    args = p.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    if "pick_cube" in args.tasks:
        p.error(
            "--tasks pick_cube is not implemented yet: it needs camera observations in the demo's batched "
            "sim (app/demo/sim_envs.py) and a BC start that solves some of it; see docs/benchmarks.md"
        )
    if args.robot_minutes <= 0 or args.speedup <= 0 or args.eval_episodes < 1:
        p.error("--robot_minutes and --speedup must be > 0, --eval_episodes >= 1")
    args.marks = sorted(m for m in args.marks if 0 < m <= args.robot_minutes) or [args.robot_minutes]
    if not args.wall_limit_s:
        args.wall_limit_s = 3 * args.robot_minutes * 60 / args.speedup + 120
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("MUJOCO_GL", "egl")
    machine = machine_line()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    t0 = time.monotonic()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="pirl_robot_time_"))
    results: list[RunResult] = []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        for task in args.tasks:
            for seed in args.seeds:
                for method in args.methods:
                    spec = RunSpec(
                        task, method, seed, args.robot_minutes, args.marks, args.speedup, args.eval_episodes,
                        args.operator == "on", args.demos, args.bc_steps, args.wall_limit_s, str(workdir),
                        args.sac_reset_steps,
                    )  # fmt: skip
                    r = run_sac_spec(spec) if method == "sac" else run_pirl(spec)
                    results.append(r)
                    print(
                        f"[{task} {method} s{seed}] curve {r.curve} ({r.wall_s:.0f} s, {r.achieved_speedup:.1f}x)",
                        flush=True,
                    )
                    out.write_text(
                        json.dumps(
                            {"args": vars(args), "partial": True, "results": [asdict(x) for x in results]},
                            indent=1,
                        )
                    )
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    md = report(args, results, machine, started, time.monotonic() - t0)
    print(md, flush=True)
    payload = {
        "args": vars(args),
        "machine": machine,
        "date": started,
        "results": [asdict(r) for r in results],
    }
    out.write_text(json.dumps(payload, indent=1))
    png = write_plot(payload, out.with_suffix(".png"))
    if png is not None:
        print(f"plot: {png}", flush=True)
    if args.md:
        Path(args.md).parent.mkdir(parents=True, exist_ok=True)
        Path(args.md).write_text(md + "\n")
    return payload


if __name__ == "__main__":
    main()
