"""Benchmark 3 (weight sync): sizes are exact, bad input is refused, the table is well formed, and every
path really delivers the pushed weights (the script checks a checksum after each gRPC trial)."""

from __future__ import annotations

import re

import pytest
import torch

from benchmarks import weight_sync as ws


def test_synthetic_model_holds_exactly_the_requested_parameters():
    for n in (1, 4095, 4096, 4096 * 4096 + 7):
        model = ws.make_synthetic(n)
        assert sum(p.numel() for p in model.parameters()) == n
        assert all(p.dtype == torch.float32 for p in model.parameters())


def test_bad_sizes_and_options_are_refused(capsys):
    with pytest.raises(ValueError, match="neither a parameter count"):
        ws.parse_size("big")
    with pytest.raises(ValueError, match="at least one"):
        ws.parse_size("0")
    with pytest.raises(ValueError):
        ws.main(["--sizes", "huge"])
    with pytest.raises(SystemExit):
        ws.main(["--dtype", "fp8"])
    with pytest.raises(SystemExit):
        ws.main(["--paths", "carrier-pigeon"])
    assert "choose from" in capsys.readouterr().err


def test_wire_cast_and_checksum():
    state = {"a": torch.tensor([1.0, 2.5]), "step": torch.tensor([3])}
    bf = ws.wire_state(state, "bf16")
    assert bf["a"].dtype == torch.bfloat16 and bf["step"].dtype == torch.int64
    assert ws.checksum(bf) == 3.5  # integer tensors are not weights


def test_table_and_verdict_name_the_largest_bf16_size():
    def row(size, params, dtype, path, secs):
        return ws.Row(size, params, dtype, path, [ws.Trial(s, params * 2) for s in secs])

    rows = [
        row("1e6", 10**6, "bf16", "pirl-grpc", [0.01, 0.02, 0.03]),
        row("450e6", 450 * 10**6, "bf16", "pirl-grpc", [0.5, 2.0, 0.9]),
        row("450e6", 450 * 10**6, "bf16", "lerobot-grpc", [3.0, 3.0, 3.0]),
        row("450e6", 450 * 10**6, "bf16", "raw-socket", [0.4, 0.4, 0.4]),
    ]
    cells = ws.table(rows)
    assert all(len(r) == len(ws.HEADER) for r in cells)
    assert cells[1][4] == "900.0"  # median ms
    verdict = ws.verdicts(rows, 1.0)
    assert "pirl-grpc 0.900 s (meets" in verdict and "lerobot-grpc 3.000 s (misses" in verdict
    assert "raw-socket" not in verdict


def _table_rows(text: str) -> list[list[str]]:
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    assert len(lines) >= 3, text
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    assert cells[0] == ws.HEADER
    assert all(re.fullmatch(r"-+", c) for c in cells[1])
    return cells[2:]


@pytest.mark.slow
def test_runs_every_path_and_a_real_policy(capsys):
    assert ws.main(["--sizes", "1e4", "--dtype", "bf16", "--trials", "1"]) == 0
    rows = _table_rows(capsys.readouterr().out)
    assert [r[3] for r in rows] == list(ws.PATHS)
    for r in rows:
        assert r[0] == "0.01M" and r[1] == "bf16" and float(r[4]) >= 0  # a 20 kB socket copy rounds to 0.0 ms
        assert len(r) == len(ws.HEADER) and float(r[8]) > 0  # the actor's peak memory was sampled
    assert all(float(r[4]) > 0 for r in rows if r[3] != "raw-socket")
    assert ws.main(["--sizes", "native", "--dtype", "fp32", "--paths", "pirl-grpc", "--trials", "2"]) == 0
    out = capsys.readouterr().out
    (row,) = _table_rows(out)
    assert row[0].startswith("native (") and row[3] == "pirl-grpc"
    assert "Command: `" in out and "Machine: " in out
