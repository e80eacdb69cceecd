"""`pirl demo` (what `make demo` runs): PI-RL really fine-tuning a flow policy, on a laptop CPU, in minutes.

    pirl demo                          # Flow-Noise; console if this is a terminal, else headless lines
    pirl demo --method=flow_sde --headless=true
    pirl demo --quick=true             # the shortened CI-sized run

Steps, all seeded:
1. a handful of scripted-expert demos in the simulated SO-101 reach task, few-shot BC of the native flow
   policy (it starts mediocre on purpose), saved as a LeRobot policy folder (`bc_policy/`);
2. "before": deterministic (ODE) success rate of that policy on fixed evaluation scenes;
3. PI-RL through the real runtime: `pirl learner` and `pirl actor` as two processes on loopback gRPC
   (exactly the two-machine set-up, on one), the actor stepping the sim through the safety guard;
4. "after": the same evaluation on the learner's final checkpoint; a summary with both numbers,
   episodes, wall time and where the checkpoint and logs are.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import draccus

from app.demo.pipeline import DemoConfig, build_policy, default_pirl, evaluate, pretrain, train_seed
from app.demo.sim_envs import SimEnvConfig, SimEnvs


@dataclass
class DemoCLIConfig:
    # PI-RL flavour: "flow_noise" (learned per-step noise) or "flow_sde" (reverse SDE, one stochastic step).
    method: str = "flow_noise"
    # True: progress lines only. False: the operator console. None: console when stdout is a terminal.
    headless: bool | None = None
    seed: int = 0  # seeds demos, BC, policy init, episode resets and chain noise
    output_dir: str = "outputs/demo"  # bc_policy/, run/ (learner checkpoints, metrics, logs), summary.json
    demos: int = 8  # scripted expert demos for BC (few on purpose: the BC start should be mediocre)
    bc_steps: int = 600  # BC gradient steps
    updates: int = 40  # PI-RL updates the learner runs before stopping
    chunks_per_update: int = 320  # on-policy chunks per update (about 64 reach episodes)
    wall_budget_s: float = 0.0  # also stop PI-RL after this many seconds (0: only `updates`)
    eval_episodes: int = 100  # deterministic evaluation episodes before and after (same scenes)
    # A CI-sized run (fewer updates and evaluation episodes); explicit options still win.
    quick: bool = False
    sim: SimEnvConfig = field(default_factory=SimEnvConfig)

    def validate(self) -> None:
        if self.method not in ("flow_noise", "flow_sde"):
            raise ValueError(f"--method must be flow_noise or flow_sde, got {self.method!r}")
        if self.updates < 1 or self.chunks_per_update < 1 or self.eval_episodes < 1 or self.demos < 1:
            raise ValueError("--updates, --chunks_per_update, --eval_episodes and --demos must be >= 1")


QUICK = {"updates": 12, "eval_episodes": 40}


def run_config(cfg: DemoCLIConfig, policy_dir: Path, run_dir: Path, port: int) -> dict:
    """The run config both processes read (same schema as configs/sim_pirl_reach.json)."""
    return {
        "seed": cfg.seed,
        "policy_path": str(policy_dir),
        "algorithm": {"type": "pirl", "chunks_per_update": cfg.chunks_per_update, "seed": cfg.seed},
        "robot": {"type": "sim_so101", "task": cfg.sim.task, "fps": cfg.sim.fps, "seed": cfg.seed},
        "safety": {"control_hz": cfg.sim.fps},
        "episode": {"time_limit_s": cfg.sim.max_steps / cfg.sim.fps, "seed": train_seed(cfg.seed)},
        "transport": {"host": "127.0.0.1", "port": port},
        "learner": {
            "output_dir": str(run_dir),
            "max_updates": cfg.updates,
            "save_every": 10,
            "keep_checkpoints": 2,
            "tensorboard": False,
        },
        "actor": {
            "actor_id": "sim0",
            "sample_seed": cfg.seed,
            "wait_for_weights_s": 120,
            "progress_every": 0,
        },
    }


def demo_config(cfg: DemoCLIConfig, out: Path) -> DemoConfig:
    """The in-process pipeline's config for these options (same seeds, BC, batch size and PI-RL settings)."""
    dcfg = DemoConfig(seed=cfg.seed, method=cfg.method, env=cfg.sim, output_dir=str(out))
    dcfg.bc.demos, dcfg.bc.steps = cfg.demos, cfg.bc_steps
    dcfg.run.updates, dcfg.run.chunks_per_update = cfg.updates, cfg.chunks_per_update
    dcfg.run.eval_episodes, dcfg.run.wall_budget_s = cfg.eval_episodes, cfg.wall_budget_s
    dcfg.run.eval_every = max(1, cfg.updates // 4)
    dcfg.pirl = default_pirl(cfg.method)
    return dcfg


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def main(argv: list[str] | None = None) -> int:
    argv = list(argv or [])
    with draccus.config_type("json"):
        cfg = draccus.parse(DemoCLIConfig, args=argv)
    if cfg.quick:
        for key, value in QUICK.items():
            if not any(a.startswith(f"--{key}") for a in argv):
                setattr(cfg, key, value)
    try:
        cfg.validate()
    except ValueError as exc:
        print(f"pirl demo: {exc}", file=sys.stderr)
        return 2
    headless = (not sys.stdout.isatty()) if cfg.headless is None else cfg.headless
    return run(cfg, headless)


def run(cfg: DemoCLIConfig, headless: bool = True) -> int:
    import torch

    from app.learner.launch import RunProcesses, free_port, read_metrics

    torch.set_num_threads(1)
    t0 = time.monotonic()
    out = Path(cfg.output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    say = lambda msg: print(f"demo: {msg}", flush=True)  # noqa: E731
    dcfg = demo_config(cfg, out)

    # 1-2. demos, BC, "before"
    envs = SimEnvs(8, cfg.sim)
    try:
        policy = build_policy(dcfg, envs)
        stats = pretrain(dcfg, envs, policy.model)
        say(f"{len(stats)} scripted demos, {cfg.bc_steps} BC steps ({time.monotonic() - t0:.0f} s)")
        before = evaluate(policy.model, envs, cfg.eval_episodes, cfg.seed)
        say(f"BC policy: {_pct(before)} success over {cfg.eval_episodes} evaluation episodes")
    finally:
        envs.close()
    bc_dir = out / "bc_policy"
    policy.save_pretrained(bc_dir)

    # 3. PI-RL through the runtime
    run_dir = out / "run"
    if run_dir.exists():  # the learner refuses to overwrite a run; the demo's own previous run goes
        shutil.rmtree(run_dir)
    port = free_port()
    config_path = out / "run_config.json"
    config_path.write_text(json.dumps(run_config(cfg, bc_dir, run_dir, port), indent=2))
    say(f"PI-RL ({cfg.method}): learner + actor on 127.0.0.1:{port}, {cfg.updates} updates")
    t_rl = time.monotonic()
    run = RunProcesses.start(config_path, run_dir, actors=0 if not headless else 1, port=port)
    interrupted = False
    try:
        if headless:
            interrupted = _follow(run, cfg, t_rl, say)
        else:
            interrupted = _console(run, config_path, say)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        run.stop()
    rl_wall = time.monotonic() - t_rl
    metrics = read_metrics(run_dir)

    # 4. "after" on the final checkpoint
    ckpt = _final_pretrained(run_dir)
    if ckpt is None:
        say(f"no checkpoint was written; see the logs in {run_dir / 'logs'}")
        return 1
    from app.eval import load_policy

    final = load_policy(ckpt)
    envs = SimEnvs(8, cfg.sim)
    try:
        after = evaluate(final.model, envs, cfg.eval_episodes, cfg.seed)
    finally:
        envs.close()
    episodes = int(metrics[-1].get("rl/episodes_total", 0)) if metrics else 0
    episodes = episodes or _episodes_from_log(run_dir)
    summary = {
        "method": cfg.method,
        "success_before": before,
        "success_after": after,
        "eval_episodes": cfg.eval_episodes,
        "updates": len(metrics),
        "episodes": episodes,
        "wall_s": time.monotonic() - t0,
        "rl_wall_s": rl_wall,
        "checkpoint": str(ckpt),
        "bc_policy": str(bc_dir),
        "metrics": str(run_dir / "metrics.jsonl"),
        "logs": str(run_dir / "logs"),
        "interrupted": interrupted,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(
        "\n".join(
            [
                "",
                f"== pirl demo summary ({cfg.method})",
                f"   success before PI-RL (BC, {cfg.demos} demos): {_pct(before)}",
                f"   success after PI-RL:                  {_pct(after)}  "
                f"({'+' if after >= before else ''}{100 * (after - before):.0f} points, "
                f"deterministic ODE, {cfg.eval_episodes} fixed scenes)",
                f"   PI-RL: {len(metrics)} updates, {episodes} episodes, {rl_wall:.0f} s; total {summary['wall_s']:.0f} s",
                f"   checkpoint: {ckpt}",
                f"   metrics:    {run_dir / 'metrics.jsonl'}   logs: {run_dir / 'logs'}",
                f"   evaluate again: pirl eval --policy {ckpt} --episodes 100",
            ]
        ),
        flush=True,
    )
    return 130 if interrupted else 0


def _follow(run, cfg: DemoCLIConfig, t_rl: float, say) -> bool:
    """Headless: one line per update with the rolling training success rate."""
    while not run.finished:
        # A bounded wait: once the learner has stopped the actor only holds (silently), so an unbounded
        # wait for the next line would never return.
        for name, line in run.lines(timeout=1.0):
            _show(run, name, line, t_rl, say)
        if cfg.wall_budget_s and time.monotonic() - t_rl > cfg.wall_budget_s:
            say(f"wall budget of {cfg.wall_budget_s:.0f} s reached")
            return False
        if not run.learner.alive or not any(a.alive for a in run.actors):
            break
    for name, line in run.lines(timeout=0.5):  # what the learner printed last
        _show(run, name, line, t_rl, say)
    return False


def _show(run, name: str, line: str, t_rl: float, say) -> None:
    if name == "learner" and line.startswith("learner: update"):
        m = run.metrics()
        last = m[-1] if m else {}
        say(
            f"update {int(last.get('rl/policy_version', len(m))):3d}  "
            f"episodes {_episodes(last):5d}  "
            f"success (last {20} episodes) {_pct(float(last.get('charts/success_rate', 0.0))):>5}  "
            f"[{time.monotonic() - t_rl:.0f} s]"
        )
    elif "error" in line.lower() or "Traceback" in line:
        say(f"{name}: {line}")


def _console(run, config_path: Path, say) -> bool:
    """Interactive: the operator console starts the actor and shows the run; quit it to finish."""
    from app.console.main import main as console_main

    say("starting the operator console (press q to finish the demo and see the summary)")
    console_main(["--config", str(config_path), "--actor_log", str(run.output_dir / "logs" / "actor0.log")])
    return False


def _episodes(m: dict) -> int:
    for key in ("rl/episodes_total", "charts/episodes", "episodes"):
        if key in m:
            return int(m[key])
    return 0


def _episodes_from_log(run_dir: Path) -> int:
    log = run_dir / "logs" / "learner.log"
    if not log.is_file():
        return 0
    n = 0
    for line in log.read_text().splitlines():
        if line.startswith("learner: update") and " episodes " in line:
            n = int(line.split(" episodes ")[1].split()[0])
    return n


def _final_pretrained(run_dir: Path) -> Path | None:
    from app.learner.checkpoint import LAST_FILE, PRETRAINED_DIR

    root = run_dir / "checkpoints"
    last = root / LAST_FILE
    if last.is_file():
        path = root / last.read_text().strip() / PRETRAINED_DIR
        if (path / "config.json").is_file():
            return path
    found = sorted(root.glob(f"*/{PRETRAINED_DIR}/config.json")) if root.is_dir() else []
    return found[-1].parent if found else None
