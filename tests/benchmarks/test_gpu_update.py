"""Benchmark 4 (GPU update cost): skips cleanly without CUDA, and its tiny CPU run goes through the core
trainer, for both PI-RL methods and both adapter families, and prints a well-formed table."""

from __future__ import annotations

import pytest
import torch

from benchmarks import gpu_update as gu


def test_without_cuda_it_skips_with_a_hint(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gu.main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("skipped: no CUDA device") and "--tiny" in out


@pytest.mark.parametrize("method", ["flow_noise", "flow_sde"])
def test_tiny_cpu_run_prints_a_table(method: str, capsys) -> None:
    argv = ["--tiny", "--models", "smolvla", "pi05", "--iters", "1", "--warmup", "0", "--batch", "2"]
    assert gu.main([*argv, "--method", method]) == 0
    out = capsys.readouterr().out
    assert "PIRLTrainer.update" in out and f"method={method}" in out
    for model in ("smolvla", "pi05"):
        # the progress line: model, params M, trainable M, sample s, chunk/s, update s, chunk/s, peak GiB
        fields = [ln for ln in out.splitlines() if ln.startswith(model + " ")]
        assert len(fields) == 1
        fields = fields[0].split()
        assert float(fields[1]) > 0.2 and float(fields[4]) > 0 and float(fields[6]) > 0
        # the report table
        rows = [ln for ln in out.splitlines() if ln.startswith(f"| {model} ")]
        assert len(rows) == 1
        cells = [c.strip() for c in rows[0].strip("|").split("|")]
        assert len(cells) == 8 and cells[-1] == "n/a"  # no peak GPU memory on CPU
        assert float(cells[5]) > 0  # update seconds


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "zero1"])
def test_ranks_mode_times_one_and_two_gloo_ranks_on_cpu(capsys, strategy: str) -> None:
    """`--ranks 2 --tiny`: the data-parallel update at 1 and 2 gloo ranks (spawned processes) on CPU; with
    zero1 a rank of 2 holds about half the optimiser state of 1 rank, with ddp all of it."""
    argv = ["--tiny", "--models", "pi05", "--ranks", "2", "--iters", "1", "--warmup", "0", "--batch", "4"]
    assert gu.main([*argv, "--strategy", strategy]) == 0
    out = capsys.readouterr().out
    assert "ranks=1,2" in out and "gloo" in out and f"strategy={strategy}" in out
    rows = [ln for ln in out.splitlines() if ln.startswith("| pi05 ")]
    assert len(rows) == 2
    optim = []
    for ranks, row in zip(("1", "2"), rows, strict=True):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == ranks and len(cells) == 8
        update_s, per_s, chunks_s, optim_mib, weights_mib, rss = (float(c) for c in cells[2:])
        assert update_s > 0 and per_s == pytest.approx(1 / update_s, rel=0.02)
        assert chunks_s == pytest.approx(4 / update_s, rel=0.02) and rss > 50  # MiB of a torch process
        assert optim_mib > 0 and weights_mib > optim_mib / 2  # AdamW: two moments per trainable weight
        optim.append(optim_mib)
    if strategy == "ddp":
        assert optim[1] == optim[0]
    else:  # the largest rank's shard: about half (whole parameters, so not exactly)
        assert optim[0] * 0.4 < optim[1] < optim[0] * 0.7
