"""The robot-time benchmark: its pacing of the simulated arm, its table, and (slow) a tiny run of each kind of
method through the real runtime / in process."""

from __future__ import annotations

import json
import re

import pytest

from benchmarks import robot_time as rt
from benchmarks.paced_actor import MAX_DEBT_S, Pace


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.t += s


def test_pace_holds_the_arm_to_speedup_times_real_time_and_never_bursts():
    clock = FakeClock()
    pace = Pace(4.0, clock=clock, sleep=clock.sleep)
    for _ in range(120):  # 120 control periods of 1/30 s = 4 simulated seconds
        pace.step(1 / 30)
        clock.t += 0.001  # the work between steps
    x, wall = pace.achieved()
    assert wall == pytest.approx(1.0 + 0.001, abs=2e-3) and x == pytest.approx(4.0, rel=0.01)
    # a stall of a second (a busy CPU): the schedule restarts instead of running the arm flat out after it
    clock.t += 1.0
    pace.step(1 / 30)
    assert pace.behind == 1 and MAX_DEBT_S < 1.0
    before = len(clock.slept)
    pace.step(1 / 30)
    assert len(clock.slept) == before + 1  # paced again right away
    with pytest.raises(ValueError, match="speedup"):
        Pace(0)


def test_args_quick_and_refusals(capsys):
    args = rt.parse_args(["--quick"])
    assert args.robot_minutes == rt.QUICK["robot_minutes"] and args.marks == rt.QUICK["marks"]
    assert args.wall_limit_s == pytest.approx(3 * 0.3 * 60 / 4 + 120)
    assert rt.parse_args(["--robot_minutes", "12"]).marks == [5.0, 10.0]
    with pytest.raises(SystemExit):
        rt.parse_args(["--tasks", "pick_cube"])
    assert "pick_cube is not implemented yet" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        rt.parse_args(["--methods", "ppo"])


def _result(method, seed, curve, **kw):
    return rt.RunResult("reach", method, seed, curve[0][1], curve, robot_minutes=curve[-1][0], **kw)


def test_table_has_marks_minutes_to_targets_and_the_run_conditions():
    results = [
        _result("baseline", 0, [(0, 0.55), (5, 0.56), (10, 0.6)], wall_s=150, achieved_speedup=3.9),
        _result("rm_flow_noise", 0, [(0, 0.55), (5, 0.82), (10, 0.91)], human_minutes=0.8, takeovers=40),
        _result("rm_flow_noise", 1, [(0, 0.5), (5, 0.7), (10, 0.84)], human_minutes=1.0, takeovers=50),
    ]
    assert results[1].minutes_to(0.8) == 5 and results[1].minutes_to(0.9) == 10
    assert results[2].minutes_to(0.9) is None
    header, rows = rt.table(results, [5.0, 10.0])
    assert header[:6] == ["task", "method", "seeds", "0 min", "5 min", "10 min"]
    base, rm = rows
    assert base[1] == "baseline" and base[4] == "56 +- 0" and base[6] == "> 10"
    assert rm[2] == "2" and rm[4] == "76 +- 8" and rm[6] == "7.5 (2/2)" and rm[7] == "10 (1/2)"
    assert rm[header.index("human min")] == "0.9 +- 0.1" and rm[header.index("takeovers")] == "45"
    assert base[header.index("speedup")] == "3.9x"
    assert rt._achieved_speedup("x\npaced actor: achieved 3.87x real time (10 s simulated)\n") == 3.87


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_quick_run_of_the_runtime_and_sac_paths(tmp_path):
    out = tmp_path / "rt.json"
    md = tmp_path / "rt.md"
    args = ["--quick", "--methods", "baseline", "rm_flow_noise", "sac", "--seeds", "0", "--speedup", "8"]
    payload = rt.main([*args, "--out", str(out), "--md", str(md), "--workdir", str(tmp_path / "w")])
    runs = {r["method"]: r for r in payload["results"]}
    assert set(runs) == {"baseline", "rm_flow_noise", "sac"}
    for method in ("baseline", "rm_flow_noise"):
        r = runs[method]
        assert [m for m, _ in r["curve"]] == [0.0, 0.1, 0.2, 0.3], r  # every mark saved and evaluated
        assert r["robot_minutes"] >= 0.3 and r["episodes"] > 0 and r["achieved_speedup"] > 0
    assert runs["sac"]["in_process"] and runs["sac"]["curve"][0][0] == 0.0
    text = md.read_text()
    assert re.search(r"\| reach \| rm_flow_noise +\|", text)  # columns are padded to the widest name
    assert "sac (in-process)" in text and "Command:" in text
    assert json.loads(out.read_text())["machine"]
