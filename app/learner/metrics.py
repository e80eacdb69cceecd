"""Where the learner's metrics go: <output_dir>/metrics.jsonl always, TensorBoard and wandb when enabled.

One `write(step, metrics)` per update (cleanrl names: `charts/*`, `losses/*`, `replay/*`, `rl/*`,
`critic_pretrain/*`); non-finite values are written as null in the JSON lines and skipped elsewhere.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

from app.run.config import PIRLRunConfig
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
        if cfg.learner.wandb:
            import wandb  # optional; fails loudly if asked for and missing

            self.wandb = wandb.init(project=cfg.learner.wandb_project, id=run_id, resume="allow")

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
            self.wandb.log(metrics, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


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
