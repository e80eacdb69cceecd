"""Benchmark 4 (GPU update cost): skips cleanly without CUDA, and its tiny CPU run goes through the core
trainer and prints a well-formed table."""

from __future__ import annotations

import pytest
import torch

from benchmarks import gpu_update as gu


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the benchmark would run")
def test_without_cuda_it_skips_with_a_hint(capsys):
    assert gu.main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("skipped: no CUDA device") and "--tiny" in out


def test_tiny_cpu_run_prints_a_table(capsys):
    assert gu.main(["--tiny", "--models", "smolvla", "--iters", "1", "--warmup", "0", "--batch", "2"]) == 0
    out = capsys.readouterr().out
    rows = [ln for ln in out.splitlines() if ln.startswith("| smolvla")]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert len(cells) == 8 and cells[-1] == "n/a"  # no peak GPU memory on CPU
    assert float(cells[5]) > 0  # update seconds
    assert "PIRLTrainer.update" in out
