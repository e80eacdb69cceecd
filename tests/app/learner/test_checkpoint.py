"""Atomic checkpoints: keep N, LAST pointer, weights-only load, and a save killed half-way loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from app.learner.checkpoint import CheckpointManager
from app.rl.digests import weights_digest


def _state(v: float):
    return {
        "policy": {"w": torch.full((8,), v)},
        "optimizers": {"actor": {"state": {0: {"step": torch.tensor(3.0)}}, "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.95)}]}},
        "counters": {"updates": int(v)},
    }  # fmt: skip


def test_save_load_round_trip_keep_n_and_last(tmp_path):
    mgr = CheckpointManager(tmp_path / "checkpoints", keep=2)
    for v in range(1, 5):
        path = mgr.save(v, _state(float(v)), {"updates": v})
    assert [p.name for p in mgr.finished()] == ["000003", "000004"]
    assert mgr.latest() == path
    state, meta = CheckpointManager.load(mgr.latest())
    assert meta["version"] == 4 and meta["updates"] == 4
    assert torch.equal(state["policy"]["w"], torch.full((8,), 4.0))
    assert state["optimizers"]["actor"]["param_groups"][0]["betas"] == (0.9, 0.95)


def test_half_written_checkpoints_are_ignored(tmp_path):
    mgr = CheckpointManager(tmp_path, keep=3)
    mgr.save(1, _state(1.0), {})
    (tmp_path / "000002").mkdir()  # a folder without meta.json (never renamed into place by us, but be safe)
    (tmp_path / ".tmp-000003-999").mkdir()
    (tmp_path / "LAST").write_text("000002\n")  # a pointer to an unfinished folder
    assert mgr.latest().name == "000001"
    mgr.save(4, _state(4.0), {})
    assert not list(tmp_path.glob(".tmp-*"))


def test_extra_writer_lands_inside_the_checkpoint(tmp_path):
    mgr = CheckpointManager(tmp_path)
    path = mgr.save(1, _state(1.0), {}, write_extra=lambda d: (d / "pretrained_model").mkdir())
    assert (path / "pretrained_model").is_dir()


def test_weights_digest_is_content_based():
    a = {"x": torch.ones(3), "y": torch.zeros(2)}
    assert weights_digest(a) == weights_digest({"y": torch.zeros(2), "x": torch.ones(3)})
    assert weights_digest(a) != weights_digest({"x": torch.ones(3) * 2, "y": torch.zeros(2)})


_SAVER = r"""
import sys, torch
from app.learner.checkpoint import CheckpointManager
mgr = CheckpointManager(sys.argv[1], keep=5)
mgr.save(1, {"w": torch.ones(4)}, {})
print("first-saved", flush=True)
mgr.save(2, {"w": torch.randn(256, 1024)}, {}, write_extra=lambda d: (print("writing", flush=True), __import__("time").sleep(30)))
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_a_save_killed_half_way_leaves_the_previous_checkpoint_intact(tmp_path, sig):
    proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "first-saved"
        assert proc.stdout.readline().strip() == "writing"  # v2 half-written: state.pt on disk, no meta yet
        os.kill(proc.pid, sig)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.1)
    mgr = CheckpointManager(tmp_path)
    assert mgr.latest().name == "000001"
    state, _ = CheckpointManager.load(mgr.latest())
    assert torch.equal(state["w"], torch.ones(4))


def test_add_folder_puts_a_folder_into_a_finished_checkpoint_or_leaves_it_as_it_was(tmp_path):
    mgr = CheckpointManager(tmp_path)
    path = mgr.save(1, _state(1.0), {})

    def broken(d):
        d.mkdir()
        (d / "config.json").write_text("{}")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        mgr.add_folder(path, "pretrained_model", broken)
    assert not (path / "pretrained_model").exists()  # a failed (or killed) add leaves only a temp folder

    def good(d):
        d.mkdir()
        (d / "config.json").write_text("{}")

    added = mgr.add_folder(path, "pretrained_model", good)
    assert added == path / "pretrained_model" and (added / "config.json").is_file()
    assert not list(path.glob(".tmp-*"))  # the next add clears what a failed one left
    assert mgr.latest() == path and CheckpointManager.load(path)[0]["counters"] == {"updates": 1}
    with pytest.raises(FileNotFoundError, match="not a finished pirl checkpoint"):
        mgr.add_folder(tmp_path / "000009", "pretrained_model", good)
