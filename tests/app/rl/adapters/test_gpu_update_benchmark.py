"""benchmarks/gpu_update.py: skips cleanly without CUDA, and its --tiny CPU path runs end to end."""

from __future__ import annotations

import pytest
import torch

from benchmarks import gpu_update


def test_without_cuda_it_says_skipped_and_exits_0(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_update.main([]) == 0
    assert "skipped: no CUDA device" in capsys.readouterr().out


@pytest.mark.parametrize("method", ["flow_noise", "flow_sde"])
def test_tiny_smoke_run_prints_a_row(method: str, capsys) -> None:
    assert (
        gpu_update.main(["--tiny", "--models", "pi05", "--iters", "1", "--warmup", "0", "--method", method])
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    row = [line for line in out if line.startswith("pi05")]
    assert len(row) == 1
    fields = row[0].split()
    assert float(fields[1]) > 0.2 and float(fields[4]) > 0 and float(fields[6]) > 0  # params M, chunk/s x2
