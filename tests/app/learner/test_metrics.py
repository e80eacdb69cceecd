"""The learner's metrics sink with `--wandb.enable=true`: a real offline wandb run, written through
LeRobot's WandBLogger, read back with wandb's own record reader.

Offline only (`WANDB_MODE=offline`, every wandb folder under tmp_path): nothing leaves the machine.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import pytest

from app.learner.metrics import MetricsSink, _TrainConfigShim
from app.run.config import WANDB_MISSING

RUN_ID = "0123456789ab"


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    """wandb offline, its folders and settings in tmp_path, no console wrapping; restored afterwards (the
    logger sets WANDB_SILENT in os.environ, which monkeypatch puts back)."""
    for var, value in {
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(tmp_path / "wandb_dir"),
        "WANDB_CONFIG_DIR": str(tmp_path / "wandb_config"),
        "WANDB_CACHE_DIR": str(tmp_path / "wandb_cache"),
        "WANDB_DATA_DIR": str(tmp_path / "wandb_data"),
        "WANDB_CONSOLE": "off",
        "WANDB_SILENT": "true",
    }.items():
        monkeypatch.setenv(var, value)


def _records(path: Path) -> list:
    """The records of a `.wandb` file, read with wandb's own reader."""
    from wandb.proto import wandb_internal_pb2 as pb
    from wandb.sdk.internal import datastore

    ds = datastore.DataStore()
    ds.open_for_scan(str(path))
    out = []
    while (data := ds.scan_data()) is not None:
        record = pb.Record()
        record.ParseFromString(data)
        out.append(record)
    return out


def read_wandb_runs(out: Path, timeout_s: float = 20.0) -> list[dict]:
    """Every offline run folder under <out>/wandb, oldest first: its run record and history rows. wandb's
    writer is a separate process that may still be flushing after `finish()` returns in offline mode, so
    each file is read again until its exit record is in."""
    runs = []
    for path in sorted((out / "wandb").glob("offline-run-*/run-*.wandb")):
        deadline = time.monotonic() + timeout_s
        while not (records := _records(path)) or records[-1].WhichOneof("record_type") != "exit":
            assert time.monotonic() < deadline, f"{path} has no exit record after {timeout_s} s"
            time.sleep(0.1)
        by_kind = [(r.WhichOneof("record_type"), r) for r in records]
        runs.append(
            {
                "run": next(r.run for kind, r in by_kind if kind == "run"),
                "rows": [
                    {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
                    for kind, r in by_kind
                    if kind == "history"
                ],
            }
        )
    return runs


def _metrics(step: int) -> dict[str, float]:
    return {
        "losses/value_loss": 0.5 / step,
        "charts/success_rate": 0.25 * step,
        "charts/robot_minutes": 1.5 * step,  # the robot-time counters ride along with the update's metrics
        "charts/human_minutes": 0.1 * step,
        "losses/approx_kl": math.nan,  # non-finite: skipped by wandb (and TensorBoard), null in metrics.jsonl
        "losses/clipfrac": math.inf,
    }


def test_wandb_offline_run_holds_the_metrics_and_resume_keeps_its_id(run_config, offline_wandb, tmp_path):
    cfg = run_config("--wandb.enable=true", "--wandb.project=pirl-test", "--wandb.notes=from the test")
    out = cfg.learner.output_dir
    out.mkdir(parents=True)
    sink = MetricsSink(cfg, out, RUN_ID)
    assert sink.wandb is not None and sink.tb is None  # --learner.tensorboard=false in the tiny config
    for step in (1, 2):
        sink.write(step, _metrics(step))
    sink.close()

    (first,) = read_wandb_runs(out)
    assert first["run"].run_id == RUN_ID and first["run"].project == "pirl-test"
    assert first["run"].notes == "from the test"
    assert {"policy:pirl_flow", "seed:0", "env:sim_so101"} <= set(first["run"].tags)  # LeRobot's tags
    rows = [r for r in first["rows"] if any(k.startswith("train/") for k in r)]
    assert [r["_step"] for r in rows] == [1, 2]  # at the learner's update step
    for step, row in zip((1, 2), rows, strict=True):
        logged = {k.removeprefix("train/"): v for k, v in row.items() if k.startswith("train/")}
        assert logged == pytest.approx({k: v for k, v in _metrics(step).items() if math.isfinite(v)})
    lines = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert [ln["update"] for ln in lines] == [1, 2] and lines[0]["losses/approx_kl"] is None

    # a resumed learner (same pirl run id from its checkpoint) continues the same wandb run. LeRobot's
    # resume="must" is asked for only where this folder holds an online run of that id (the server knows
    # it); offline runs of one id are joined by `wandb sync`.
    cfg.learner.resume = True
    assert not _TrainConfigShim(cfg, out, RUN_ID).resume
    online = out / "wandb" / f"run-20260101_000000-{RUN_ID}"
    online.mkdir()
    (online / f"run-{RUN_ID}.wandb").touch()
    assert _TrainConfigShim(cfg, out, RUN_ID).resume and not _TrainConfigShim(cfg, out, "another0id").resume
    (online / f"run-{RUN_ID}.wandb").unlink()
    online.rmdir()
    sink = MetricsSink(cfg, out, RUN_ID)
    sink.write(3, _metrics(3))
    sink.close()
    runs = read_wandb_runs(out)
    assert len(runs) == 2 and runs[1]["run"].run_id == RUN_ID
    assert [r["_step"] for r in runs[1]["rows"] if "train/charts/robot_minutes" in r] == [3]


def test_wandb_run_id_option_wins_over_pirl_run_id(run_config, offline_wandb):
    # with LeRobot's default project (only wandb.enable given: draccus builds the section from the class)
    cfg = run_config("--wandb.enable=true", "--wandb.run_id=myrun42", "--wandb.add_tags=false")
    out = cfg.learner.output_dir
    out.mkdir(parents=True)
    sink = MetricsSink(cfg, out, RUN_ID)
    sink.write(1, {"losses/value_loss": 1.0})
    sink.close()
    (run,) = read_wandb_runs(out)
    assert run["run"].run_id == "myrun42" and run["run"].project == "lerobot" and list(run["run"].tags) == []
    assert cfg.wandb.run_id == "myrun42"  # the logger writes the id into its copy, not into the run config


def test_missing_wandb_is_one_clear_line(run_config, offline_wandb, tmp_path, monkeypatch):
    cfg = run_config("--wandb.enable=true")
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` now raises ImportError
    with pytest.raises(ImportError) as err:
        MetricsSink(cfg, tmp_path, RUN_ID)
    assert str(err.value) == WANDB_MISSING and "\n" not in WANDB_MISSING
    assert "pip install wandb" in WANDB_MISSING and "--wandb.enable" in WANDB_MISSING
    assert not (tmp_path / "wandb").exists()
