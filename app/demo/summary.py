"""The end of `pirl demo`: summary.json, the summary it prints and the two PNGs of the run.

Its one job is turning a finished run (the evaluations, the learner's metrics.jsonl and robot_time.json) into
what the user reads; cli.py runs the demo and calls it. Kept apart so the summary can be built and tested
from a run folder alone, without the demo's processes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from app.run.sections import ROBOT_TIME_FILE

if TYPE_CHECKING:
    from app.demo.cli import DemoCLIConfig


def pct(x: float) -> str:
    """A success rate as the summary and the demo's progress lines print it ("55 %")."""
    return f"{100 * x:.0f} %"


PLOTS = {"success": "success_vs_robot_minutes.png", "learning": "learning_curve.png"}


def write_plots(out: Path, summary: dict) -> dict[str, str]:
    """The two pictures of the run in `out` (PLOTS): deterministic success against robot minutes (the BC
    start at 0, every mark, the final checkpoint; 95 % Wilson bands over the evaluation episodes) and the
    learner's learning curve from its metrics.jsonl. Returns the ones written; a failure is one warning
    line (app/report/plots.py `safely`), never a failed demo."""
    from app.eval.stats import wilson_interval
    from app.report.plots import learning_curve, safely, success_vs_robot_minutes

    n = int(summary["eval_episodes"])

    def point(minutes: float, rate: float) -> tuple[float, float, float, float]:
        ci = wilson_interval(round(rate * n), n)
        return (float(minutes), rate, ci.low, ci.high)

    def warn(msg: str) -> None:
        print(f"demo: warning: {msg}", flush=True)  # the demo's own line prefix (cli.say)

    marks = [point(0.0, summary["success_before"])]
    marks += [point(c["robot_minutes"], c["success"]) for c in summary.get("curve") or []]
    curves = {"policy at robot-minute marks": marks}
    if summary.get("success_after") is not None:
        curves["final checkpoint"] = [point(summary["robot_minutes"], summary["success_after"])]
    recipe = "on-policy baseline" if summary.get("recipe") == "baseline" else "robot-minute method"
    what = f"pirl demo ({summary['method']}, {recipe}, seed {summary['seed']})"
    written = {
        "success": safely(
            "success vs robot minutes plot", success_vs_robot_minutes, out / PLOTS["success"], curves,
            title=f"{what}: deterministic success", band=f"95 % Wilson CI, {n} episodes", warn=warn,
        ),
        "learning": safely(
            "learning curve plot", learning_curve, out / PLOTS["learning"], summary["metrics"],
            title=f"{what}: learner metrics", warn=warn,
        ),
    }  # fmt: skip
    return {k: str(v) for k, v in written.items() if v is not None}


def make_summary(
    cfg: DemoCLIConfig,
    before: float,
    after: float | None,
    run_dir: Path,
    bc_dir: Path,
    ckpt: Path,
    wall_s: float,
    rl_wall_s: float,
) -> dict:
    """summary.json: both success rates, how much PI-RL ran (robot and human minutes, updates, episodes)
    and how fast, and where everything is."""
    from app.run.launch import read_metrics

    metrics = read_metrics(run_dir)
    last = metrics[-1] if metrics else {}
    update_s = [float(m["rl/update_seconds"]) for m in metrics if "rl/update_seconds" in m]
    span = float(metrics[-1]["time"]) - float(metrics[0]["time"]) if len(metrics) > 1 else 0.0
    robot = _robot_time(run_dir, last)
    return {
        "method": cfg.method,
        "recipe": cfg.recipe,
        "operator": bool(cfg.operator),
        "seed": cfg.seed,
        "success_before": before,
        "success_after": after,
        "eval_episodes": cfg.eval_episodes,
        "demos": cfg.demos,
        "robot_minutes": robot["robot_minutes"],
        "human_minutes": robot["human_minutes"],
        "updates": len(metrics),
        "episodes": int(last.get("charts/episodes", 0)),
        "env_steps": int(last.get("charts/env_steps", 0)),
        # the learner's count of actor env steps over its own running time (charts/SPS)
        "env_steps_per_s": float(last.get("charts/SPS", 0.0)),
        # updates per second of PI-RL wall time between the first and the last update
        "updates_per_s": (len(metrics) - 1) / span if span > 0 else 0.0,
        "update_compute_s_mean": sum(update_s) / len(update_s) if update_s else 0.0,
        "train_success_last": last.get("charts/success_rate"),
        "wall_s": wall_s,
        "rl_wall_s": rl_wall_s,
        "checkpoint": str(ckpt),
        "bc_policy": str(bc_dir),
        "metrics": str(run_dir / "metrics.jsonl"),
        "logs": str(run_dir / "logs"),
        "tensorboard": str(run_dir / "tb") if (run_dir / "tb").is_dir() else None,
    }


def _robot_time(run_dir: Path, last: dict) -> dict[str, float]:
    """Robot and human minutes of the run: the learner's robot_time.json (written at exit), else the last
    update's metrics."""
    path = run_dir / ROBOT_TIME_FILE
    if path.is_file():
        data = json.loads(path.read_text())
        return {"robot_minutes": float(data["robot_minutes"]), "human_minutes": float(data["human_minutes"])}
    return {
        "robot_minutes": float(last.get("charts/robot_minutes", 0.0)),
        "human_minutes": float(last.get("charts/human_minutes", 0.0)),
    }


def format_summary(s: dict) -> str:
    before, after = s["success_before"], s["success_after"]
    if after is None:
        after_line = "not measured (interrupted)"
    else:
        after_line = (
            f"{pct(after)}  ({'+' if after >= before else ''}{100 * (after - before):.0f} points, "
            f"deterministic ODE, {s['eval_episodes']} fixed scenes)"
        )
    recipe = "on-policy baseline" if s.get("recipe") == "baseline" else "robot-minute method"
    lines = [
        "",
        f"== pirl demo summary ({s['method']}, {recipe}{', simulated operator' if s.get('operator') else ''}, "
        f"seed {s['seed']})" + ("  [interrupted]" if s.get("interrupted") else ""),
        f"   success before PI-RL (BC on {s['demos']} demos): {pct(before)}",
        f"   success after PI-RL:  {after_line}",
        f"   robot time: {s.get('robot_minutes', 0.0):.1f} robot minutes (episodes and drives home at 30 Hz), "
        f"{s.get('human_minutes', 0.0):.1f} of them driven by the operator",
    ]
    curve = s.get("curve") or []
    if curve:
        points = ", ".join(f"{c['robot_minutes']:g} min {pct(c['success'])}" for c in curve)
        lines.append(f"   success at robot minutes: {points}")
    lines += [
        f"   PI-RL: {s['updates']} updates, {s['episodes']} episodes, {s['env_steps']} env steps in "
        f"{s['rl_wall_s']:.0f} s (actor {s['env_steps_per_s']:.0f} steps/s, learner "
        f"{s['updates_per_s']:.2f} updates/s); whole demo {s['wall_s']:.0f} s",
        f"   checkpoint: {s['checkpoint']}",
        f"   metrics:    {s['metrics']}",
        f"   logs:       {s['logs']}",
    ]
    if s.get("tensorboard"):
        lines.append(f"   tensorboard: tensorboard --logdir {s['tensorboard']}")
    for path in (s.get("plots") or {}).values():
        lines.append(f"   plot:       {path}")
    lines.append(f"   evaluate again: pirl eval --policy {s['checkpoint']} --episodes 100")
    return "\n".join(lines)
