"""Where the learner's metrics go: <output_dir>/metrics.jsonl always, TensorBoard and wandb when enabled.

One `write(step, metrics)` per update (cleanrl names: `charts/*`, `losses/*`, `replay/*`, `rl/*`,
`critic_pretrain/*`); non-finite values are written as null in the JSON lines and skipped elsewhere.
Weights & Biases goes through LeRobot's own `WandBLogger` and `--wandb.*` section (`WandBConfig`), so a
pirl run and a LeRobot training run are configured, tagged and resumed the same way.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from app.run.config import WANDB_MISSING, PIRLRunConfig
from app.run.sections import METRICS_FILE

log = logging.getLogger("pirl.learner")


class MetricsSink:
    """metrics.jsonl always; TensorBoard and wandb when enabled. One `write(step, metrics)` per update."""

    def __init__(self, cfg: PIRLRunConfig, out: Path, run_id: str):
        self.path = out / METRICS_FILE
        self.tb = None
        self.wandb = None
        if cfg.learner.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(log_dir=str(out / "tb"))
            except ImportError:  # tensorboard is a declared dependency; degrade rather than die
                log.warning("tensorboard is not installed; TensorBoard logging is off")
        if cfg.wandb.enable:
            self.wandb = WandbSink(cfg, out, run_id)

    def write(self, step: int, metrics: dict[str, float]) -> None:
        clean = {
            k: (v if isinstance(v, (int, str)) or math.isfinite(v) else None) for k, v in metrics.items()
        }
        with open(self.path, "a") as f:
            f.write(json.dumps({"update": step, "time": time.time(), **clean}) + "\n")
        if self.tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(k, v, step)
            self.tb.flush()
        if self.wandb is not None:
            self.wandb.write(step, metrics)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.close()


class WandbSink:
    """The learner's metrics in a Weights & Biases run, through LeRobot's `WandBLogger`.

    The run is `<output_dir>/wandb/` (offline: `offline-run-*`, upload later with `wandb sync`), named after
    the output folder, tagged like a LeRobot run (`policy:<type>`, `seed:<n>`, `env:<robot type>`), with
    the whole run config as its wandb config. Metrics go at the learner's update step as `train/<name>`
    (LeRobot's `log_dict`), the robot-time counters (`charts/robot_minutes`, ...) with them, so either
    can be the x-axis. Its id is `--wandb.run_id`, else pirl's run id, which the checkpoints keep, so a
    `--learner.resume=true` run continues the same wandb run.
    """

    def __init__(self, cfg: PIRLRunConfig, out: Path, run_id: str):
        try:
            import wandb
            from lerobot.common.wandb_utils import WandBLogger
        except ImportError:
            raise ImportError(WANDB_MISSING) from None
        self.logger = WandBLogger(_TrainConfigShim(cfg, out, run_id))
        self.run = wandb.run
        self.run_id = self.run.id

    def write(self, step: int, metrics: dict[str, Any]) -> None:
        finite = {
            k: v
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        }
        if finite:
            self.logger.log_dict(finite, step=step, mode="train")

    def close(self) -> None:
        self.run.finish()


class _TrainConfigShim:
    """The attributes of LeRobot's `TrainPipelineConfig` that `WandBLogger` reads, filled from a pirl run.

    Why a shim and not a real TrainPipelineConfig: building one needs a dataset or env and runs LeRobot's
    training validation (policy checkpoints, optimiser presets), none of which a pirl learner has. The
    logger only reads what is below (`wandb`, `output_dir`, `job_name`, `env`, `resume`, `to_dict()`, and
    for its tags `policy.type`, `seed`, `dataset`, `is_reward_model_training`), so these are given as pirl
    means them:

    - `wandb`: a copy of the run's `--wandb.*` section (the logger writes the run id back into it), with
      `run_id` defaulting to pirl's run id (kept by checkpoints, so resume finds the same wandb run without
      LeRobot's search of `wandb/latest-run`), and `mode` defaulting to $WANDB_MODE: LeRobot turns an unset
      mode into an explicit "online", which would override the environment variable.
    - `resume`: `--learner.resume=true` AND this output folder already holds an online wandb run with
      that id (`run-*-<id>/`); LeRobot then asks wandb for `resume="must"`, which fails for a run the
      server never saw (the first run had wandb off or was offline and not synced, a fresh
      `--wandb.run_id`). Offline, wandb ignores `resume`; the same id still joins the runs at `wandb sync`.
    - `env`: the robot the actors drive stands in for LeRobot's env (its type is a tag); None on a learner
      config without a robot section.
    """

    def __init__(self, cfg: PIRLRunConfig, out: Path, run_id: str):
        wid = cfg.wandb.run_id or run_id
        self.wandb = dataclasses.replace(
            cfg.wandb, run_id=wid, mode=cfg.wandb.mode or os.environ.get("WANDB_MODE")
        )
        self.output_dir = out
        self.job_name = out.name
        self.resume = cfg.learner.resume and any((out / "wandb").glob(f"run-*-{wid}/run-{wid}.wandb"))
        self.seed = cfg.seed
        self.dataset = None
        self.is_reward_model_training = False
        self.policy = SimpleNamespace(type=_policy_type(cfg))
        robot = cfg.robot
        self.env = None if robot is None else SimpleNamespace(type=robot.type, fps=cfg.safety.control_hz)
        self._cfg = cfg

    def to_dict(self) -> dict[str, Any]:
        """The run config as JSON-able data (draccus, what `TrainPipelineConfig.to_dict` does)."""
        import draccus

        return draccus.encode(self._cfg)


def _policy_type(cfg: PIRLRunConfig) -> str:
    """`policy.type`, else the `type` in `policy_path`'s config.json, else "pretrained" (a hub id)."""
    if cfg.policy is not None:
        return cfg.policy.type
    try:
        return str(json.loads((Path(cfg.policy_path) / "config.json").read_text())["type"])
    except (OSError, TypeError, KeyError, ValueError):
        return "pretrained"


def window_charts(window: list[dict]) -> dict[str, float]:
    """Means over the recent episodes' stats: success rate, intervention rate, return, length."""
    if not window:
        return {}
    n = len(window)
    return {
        "charts/success_rate": sum(bool(m.get("success")) for m in window) / n,
        "charts/intervention_rate": sum(float(m.get("intervention_rate", 0.0)) for m in window) / n,
        "charts/episodic_return": sum(float(m.get("return", 0.0)) for m in window) / n,
        "charts/episodic_length": sum(float(m.get("steps", 0)) for m in window) / n,
    }


def data_charts(batch, version: int, grad_steps: float, max_age: int = 4) -> dict[str, float]:
    """What the update's NEW data looked like, for every method (with replay the trainer adds the same
    over its whole buffer as `replay/*`): gradient steps per new chunk (the update-to-data ratio), the
    share of human-driven chunks, and how many versions behind the trained weights the chunks were
    (`charts/data_staleness_hist_<k>`, k = 0..max_age, the last bin holding older ones)."""
    n = max(len(batch), 1)
    age = (int(version) - batch.policy_version.long()).clamp(0, max_age)
    out = {
        "charts/update_to_data": float(grad_steps) / n,
        "charts/new_chunks": float(len(batch)),
        "charts/new_human_chunk_frac": float(batch.intervention.float().sum()) / n,
        "charts/data_staleness_mean": float(age.float().mean()) if len(batch) else 0.0,
    }
    counts = age.bincount(minlength=max_age + 1).float() / n
    out.update({f"charts/data_staleness_hist_{k}": float(counts[k]) for k in range(max_age + 1)})
    return out


def progress_line(updates: int, version: int, episodes: int, m: dict[str, float]) -> str:
    """The learner's one stdout line per update."""

    def f(key: str, fmt: str = ".3f") -> str:
        v = m.get(key)
        return "-" if v is None else format(v, fmt)

    line = (
        f"learner: update {updates} v{version} chunks {int(m.get('rl/chunks', 0))} episodes {episodes} "
        f"success {f('charts/success_rate', '.2f')} return {f('charts/episodic_return', '.2f')} "
        f"interv {f('charts/intervention_rate', '.2f')} SPS {f('charts/SPS', '.0f')} "
        f"kl {f('losses/approx_kl', '.4f')} clipfrac {f('losses/clipfrac', '.3f')} "
        f"vloss {f('losses/value_loss', '.4f')} ev {f('losses/explained_variance', '.2f')} "
        f"robot_min {f('charts/robot_minutes', '.2f')} human_min {f('charts/human_minutes', '.2f')} "
        f"utd {f('charts/update_to_data', '.2f')} stale {f('charts/data_staleness_mean', '.2f')} "
        f"human_chunks {f('charts/new_human_chunk_frac', '.2f')}"
    )
    if "losses/masked_by_weight_frac" in m:
        line += f" masked {f('losses/masked_by_weight_frac', '.2f')}"
    if "replay/size_chunks" in m:
        line += f" replay {int(m['replay/size_chunks'])}"
    return line
