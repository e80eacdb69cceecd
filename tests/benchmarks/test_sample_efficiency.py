"""Benchmark 1 runs end to end (tiny budget, one seed) and its table has one row per (method, seed)."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import sample_efficiency as se


def test_args_reject_bad_input(capsys):
    with pytest.raises(SystemExit):
        se.parse_args(["--seeds", "0", "0"])
    with pytest.raises(SystemExit):
        se.parse_args(["--budget_s", "0"])
    with pytest.raises(SystemExit):
        se.parse_args(["--methods", "ppo"])
    assert "--seeds has duplicates" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        se.parse_args(["--bc_demos", "0"])
    assert "--bc_demos and --bc_steps must be >= 1" in capsys.readouterr().err


def test_bc_start_options_reach_the_report_line():
    assert se.bc_line(se.parse_args([])) == "12 scripted demos, flow policy 1000 BC steps (SAC: 600)"
    args = se.parse_args(["--bc_demos", "20", "--bc_steps", "100"])
    assert se.bc_line(args) == "20 scripted demos, flow policy 100 BC steps (SAC: 600)"


def test_bc_start_options_reach_every_method(monkeypatch):
    """run_one hands --bc_demos/--bc_steps to the flow recipe, and the demo count to SAC (its BC steps stay
    its own); the runners are replaced, so no training happens here."""
    import app.demo.pipeline as pipeline
    import benchmarks.sac_sim as sac_sim

    seen = {}

    def fake_flow(cfg, log):
        seen["flow"] = (cfg.bc.demos, cfg.bc.steps)
        return pipeline.DemoResult(0.5, 0.6, [], 10, 2, 1.0, 1.0, "", "")

    def fake_sac(scfg, log):
        seen["sac"] = (scfg.demos, scfg.bc_steps)
        return sac_sim.SACResult(0.3, 0.4, 5, 50, 40, 1.0, 1.0)

    monkeypatch.setattr(pipeline, "run_inprocess", fake_flow)
    monkeypatch.setattr(sac_sim, "run_sac", fake_sac)
    for method in ("flow_noise", "sac"):
        se.run_one(se.RunSpec(method, 0, 1.0, 4, False, 1, 7, 33))
    assert seen == {"flow": (7, 33), "sac": (7, sac_sim.SACRunConfig.bc_steps)}
    se.run_one(se.RunSpec("flow_noise", 0, 1.0, 4, False, 1))  # not given: the demo's defaults
    assert seen["flow"] == (pipeline.BCConfig.demos, pipeline.BCConfig.steps)


def test_tables_rows_and_mean_std():
    rs = [
        se.RunResult("flow_noise", 0, 0.2, 0.6, 100, 10.0, 20.0, True, 5),
        se.RunResult("flow_noise", 1, 0.4, 0.8, 120, 10.0, 21.0, True, 6),
        se.RunResult("sac", 0, 0.0, 0.1, 50, 10.0, 15.0, False, 900),
    ]
    header, rows, summary = se.tables(rs, ["flow_noise", "flow_sde", "sac"])
    assert len(rows) == 3 and all(len(r) == len(header) for r in rows)
    assert rows[0][5] == "+40" and rows[2][2] == "no"
    # flow_sde has no runs -> no summary row; flow_noise: mean 70 +- stdev 14 (of 60 and 80)
    assert [s[0] for s in summary] == ["flow_noise", "sac"]
    assert summary[0][3] == "70 +- 14" and summary[0][4] == "40 +- 0"


class _FloorOnly:
    """The one SimEnvs method _Norm uses (building real arms costs seconds and adds nothing here)."""

    def state_std_floor(self) -> torch.Tensor:
        return torch.full((9,), 2.0)


def test_sac_action_normalisation_round_trips():
    from benchmarks.sac_sim import _Norm

    envs = _FloorOnly()
    states = torch.randn(20, 9) * 10
    states[:, 4] = 3.0  # a constant entry: std 0 must be floored, not divide by zero
    actions = torch.rand(20, 6) * 40 - 20
    norm = _Norm(states, actions, envs, margin=10.0)
    u = norm.action_to_unit(actions)
    assert u.abs().max() < 1
    assert torch.allclose(norm.action_from_unit(u), actions, atol=1e-3)
    assert (norm.s_std >= envs.state_std_floor()).all()
    assert torch.isfinite(norm.state(states)).all()


@pytest.mark.slow
def test_smoke_all_methods_one_seed(tmp_path, capsys):
    out = tmp_path / "b1.json"
    payload = se.main(
        [
            "--budget_s",
            "2",
            "--seeds",
            "3",
            "--quick",
            "--eval_episodes",
            "4",
            "--jobs",
            "2",
            "--out",
            str(out),
        ]
    )
    text = capsys.readouterr().out
    results = payload["results"]
    assert [(r["method"], r["seed"]) for r in results] == [(m, 3) for m in se.METHODS]
    for r in results:
        assert 0 <= r["before"] <= 1 and 0 <= r["after"] <= 1
        assert r["updates"] >= 1 and r["rl_wall_s"] >= 2 and r["wall_s"] >= r["rl_wall_s"]
    assert json.loads(out.read_text())["results"] == results
    # one table row per run, plus one summary row per method
    for m in se.METHODS:
        assert sum(line.startswith(f"| {m} ") for line in text.splitlines()) == 2
    assert "Command: `" in text and "Machine: " in text
