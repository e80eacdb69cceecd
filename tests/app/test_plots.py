"""app/report: the PNG plots (real files matplotlib reads back), their refusals and empty states, `safely`,
the progress bar at a (fake) terminal; the robot-time benchmark's plot writer on a fabricated result; and the
learner's slow-save log lines (issue "Pictures where a person would rather look")."""

from __future__ import annotations

import io
import json
import logging
import math
import sys
import time

import pytest

from app.report import plots, progress

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_png(path):
    """(height, width) of a PNG that matplotlib reads back; fails on anything that is not one."""
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    img = imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    assert float(img[..., :3].std()) > 0.01  # something is drawn, not a blank canvas
    return img.shape[:2]


# ------------------------------------------------------------------------- success vs robot minutes


def test_success_vs_robot_minutes_writes_a_png_with_bands(tmp_path):
    path = plots.success_vs_robot_minutes(
        tmp_path / "sub" / "s.png",
        {
            "rm_flow_noise": [(0, 0.55, 0.45, 0.64), (10, 0.63, 0.53, 0.72), (5, 0.6, 0.5, 0.69)],
            "baseline": [(0, 0.55), (5, None), (10, 0.6)],  # no interval; one point not measured
            "final": [(10.2, 0.64, 0.54, 0.73)],  # a single interval: an error bar
        },
        title="t",
    )
    assert path == tmp_path / "sub" / "s.png"
    h, w = read_png(path)
    assert 400 <= h <= 700 and 600 <= w <= 1000
    assert [p.name for p in path.parent.iterdir()] == ["s.png"]  # no temporary file left behind


@pytest.mark.parametrize(
    ("points", "message"),
    [
        ([(0, 1.5)], "success must be in [0, 1], got 1.5"),
        ([(-1, 0.5)], "robot minutes must be >= 0"),
        ([(math.nan, 0.5)], "robot minutes must be >= 0"),
        ([(1, math.inf)], "success must be in [0, 1]"),
        ([(1, 0.5, 0.6, 0.7)], "need 0 <= low <= success <= high <= 1"),
        ([(1, 0.5, None, 0.7)], "give both ends of the interval or neither"),
        ([(1, 0.5, 0.4)], "want (robot_minutes, success[, low, high])"),
    ],
)
def test_success_vs_robot_minutes_refuses_bad_points(tmp_path, points, message):
    with pytest.raises(ValueError, match="curve 'm' point 0") as err:
        plots.success_vs_robot_minutes(tmp_path / "s.png", {"m": points})
    assert message in str(err.value)
    assert not (tmp_path / "s.png").exists()


def test_nothing_measured_gives_a_plot_that_says_so(tmp_path):
    for curves in ({}, {"m": [(0, None)]}):
        read_png(plots.success_vs_robot_minutes(tmp_path / "e.png", curves))


# ----------------------------------------------------------------------------------- learning curve


def write_metrics(path, rows, tail=""):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)
    return path


ROWS = [
    {"update": u, "time": 100.0 + u, "charts/success_rate": u / 10, "charts/episodic_return": None if u == 2 else 0.1 * u,
     "losses/policy_loss": -0.01 * u, "losses/value_loss": None, "losses/approx_kl": 0.001 * u,
     **({"charts/robot_minutes": 0.5 * u} if u != 3 else {})}
    for u in range(1, 9)
]  # fmt: skip


def test_read_metrics_skips_cut_lines_and_names_a_missing_file(tmp_path):
    path = write_metrics(tmp_path / "metrics.jsonl", ROWS[:2], tail='[1, 2]\n{"update": 3, "ti')
    assert [r["update"] for r in plots.read_metrics(path)] == [1, 2]
    with pytest.raises(FileNotFoundError, match="no metrics file at"):
        plots.read_metrics(tmp_path / "nope.jsonl")


def test_learning_curve_against_updates_and_robot_minutes(tmp_path):
    with_minutes = write_metrics(tmp_path / "a.jsonl", ROWS)
    without = write_metrics(
        tmp_path / "b.jsonl", [{k: v for k, v in r.items() if "robot" not in k} for r in ROWS]
    )
    h2, w2 = read_png(plots.learning_curve(tmp_path / "a.png", with_minutes))
    h1, w1 = read_png(plots.learning_curve(tmp_path / "b.png", without))
    assert w2 > 1.6 * w1 and h2 == h1  # a second column: against robot minutes
    # success, return, policy loss, KL: four panels (value loss is null throughout, so it has none)
    assert h1 == round((2.3 * 4 + 0.6) * plots.DPI)
    # the in-process demo's metrics (train/eval success, no charts/*) are plotted too
    inproc = write_metrics(tmp_path / "c.jsonl", [{"update": 1, "train_success": 0.5, "eval_success": 0.6}])
    assert read_png(plots.learning_curve(tmp_path / "c.png", inproc))[0] == round((2.3 + 0.6) * plots.DPI)


def test_learning_curve_of_a_run_without_updates_says_so(tmp_path):
    for rows in ([], [{"update": 1, "time": 1.0, "charts/success_rate": None}]):
        path = plots.learning_curve(tmp_path / "e.png", write_metrics(tmp_path / "m.jsonl", rows))
        assert read_png(path)[0] == round(3.0 * plots.DPI)  # the one-panel "no updates yet" picture
    with pytest.raises(FileNotFoundError):
        plots.learning_curve(tmp_path / "x.png", tmp_path / "missing" / "metrics.jsonl")


# ---------------------------------------------------------------------------------- per-scene success


def test_per_scene_success_writes_a_png(tmp_path):
    scenes = [
        plots.SceneBar(str(i), k, 8, max(0.0, k / 8 - 0.2), min(1.0, k / 8 + 0.2), counted=i != 2, deterministic=k > 4)
        for i, k in enumerate([0, 3, 8, 5, 1, 8, 0, 6] * 10)
    ]  # fmt: skip
    h, w = read_png(plots.per_scene_success(tmp_path / "p.png", scenes, (0.55, 0.45, 0.64)))
    assert w == round(min(16.0, 3.5 + 0.11 * 80) * plots.DPI) and h == round(4.4 * plots.DPI)
    read_png(plots.per_scene_success(tmp_path / "one.png", scenes[:1], None))
    read_png(plots.per_scene_success(tmp_path / "none.png", [], None))  # "no episodes finished"


@pytest.mark.parametrize(
    "scene",
    [
        plots.SceneBar("7", 2, 1, 0.0, 1.0),
        plots.SceneBar("7", 0, 0, 0.0, 1.0),
        plots.SceneBar("7", 1, 2, 0.6, 0.9),
        plots.SceneBar("7", 1, 2, 0.1, math.nan),
    ],
)
def test_per_scene_success_refuses_impossible_scenes(tmp_path, scene):
    with pytest.raises(ValueError, match="scene 7: need"):
        plots.per_scene_success(tmp_path / "p.png", [scene])


# ----------------------------------------------------------------------------------------------- safely


def test_safely_turns_any_failure_into_one_warning_line(tmp_path, caplog):
    said = []
    out = plots.safely(
        "the plot", plots.success_vs_robot_minutes, tmp_path / "a.png", {"m": [(0, 2.0)]}, warn=said.append
    )
    assert out is None and len(said) == 1
    assert said[0].startswith("the plot not written: ValueError: curve 'm' point 0")
    (tmp_path / "file").write_text("")
    with caplog.at_level(logging.WARNING, logger="pirl.plots"):  # default: this module's logger
        assert plots.safely("x", plots.success_vs_robot_minutes, tmp_path / "file" / "a.png", {}) is None
    assert [r.levelname for r in caplog.records] == ["WARNING"] and "x not written" in caplog.text
    ok = plots.safely(
        "y", plots.success_vs_robot_minutes, tmp_path / "b.png", {"m": [(0, 0.5)]}, warn=said.append
    )
    assert ok == tmp_path / "b.png" and len(said) == 1


# --------------------------------------------------------------------------------------- progress bars


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_at_a_terminal_and_lines_go_above_it(monkeypatch):
    with progress.bar(10, "x", "step") as b:  # pytest captures stderr: no terminal, no bar
        b.update()
        progress.advance_to(b, 5.0)
        assert b.disable
    term, out = FakeTerminal(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", term)
    monkeypatch.setattr(sys, "stdout", out)
    with progress.bar(10, "x", "step", show=False) as b:
        assert b.disable
    with progress.bar(20.0, "PI-RL", "robot min", decimals=2) as b:
        assert not b.disable
        progress.advance_to(b, 3.25)
        progress.advance_to(b, 1.0)  # never backwards
        assert b.n == pytest.approx(3.25)
        b.refresh()
        print("demo: a progress line")
    assert "PI-RL:  16%" in term.getvalue() and "3.25/20 robot min" in term.getvalue()
    assert out.getvalue() == "demo: a progress line\n"  # printed through the bar, whole


# ------------------------------------------------------------------------------ robot-time benchmark


def test_robot_time_plot_writer_on_a_fabricated_result(tmp_path):
    from app.eval.stats import wilson_interval
    from benchmarks import robot_time as rt

    payload = {
        "args": {"eval_episodes": 100},
        "results": [
            {"task": "reach", "method": "baseline", "seed": 0, "curve": [[0.0, 0.55], [5.0, 0.6], [10.0, 0.6]]},
            {"task": "reach", "method": "rm_flow_noise", "seed": 0, "curve": [[0.0, 0.55], [5.0, 0.5], [10.0, 0.6]]},
            {"task": "reach", "method": "rm_flow_noise", "seed": 1, "curve": [[0.0, 0.45], [5.0, 0.7]]},
        ],
    }  # fmt: skip
    curves = rt.plot_curves(payload)
    assert list(curves) == ["baseline (1 seed)", "rm_flow_noise (2 seeds)"]
    minutes, mean, low, high = curves["rm_flow_noise (2 seeds)"][1]
    ci = wilson_interval(50 + 70, 200)  # pooled over both seeds' 100 episodes
    assert (minutes, mean, low, high) == (5.0, pytest.approx(0.6), ci.low, ci.high)
    assert curves["rm_flow_noise (2 seeds)"][2][:2] == (10.0, 0.6)  # only seed 0 got there
    h, w = read_png(rt.write_plot(payload, tmp_path / "robot_time.png"))
    assert h > 300 and w > 500


def test_robot_time_plot_failure_is_a_warning(tmp_path, capsys):
    from benchmarks import robot_time as rt

    assert rt.write_plot({"args": {}, "results": []}, tmp_path / "x.png") is None
    assert capsys.readouterr().out.startswith("warning: robot-time plot not written: KeyError")


# ----------------------------------------------------------------------- learner checkpoint save lines


def test_a_slow_checkpoint_save_logs_start_and_done_with_size_and_seconds(tmp_path, caplog, monkeypatch):
    import torch

    from app.learner import checkpoint

    mgr = checkpoint.CheckpointManager(tmp_path, keep=2)
    state = {"trainable": {"w": torch.zeros(250_000)}}
    with caplog.at_level(logging.INFO, logger="pirl.learner.checkpoint"):
        mgr.save(1, state, {})  # quick: only the usual line
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["checkpoint saved"]
    caplog.clear()
    monkeypatch.setattr(checkpoint, "SLOW_SAVE_S", 0.05)
    with caplog.at_level(logging.INFO, logger="pirl.learner.checkpoint"):
        mgr.save(2, state, {}, write_extra=lambda folder: time.sleep(0.3))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3 and lines[0].endswith("000002: saving (still writing after 0 s) ...")
    assert " saved 1.0 MB in 0." in lines[1] and lines[2].startswith("checkpoint saved:")
    caplog.clear()

    def fail(folder):
        time.sleep(0.3)
        raise OSError("disk full")

    with caplog.at_level(logging.INFO, logger="pirl.learner.checkpoint"), pytest.raises(OSError):
        mgr.save(3, state, {}, write_extra=fail)
    assert [r.levelname for r in caplog.records] == ["INFO", "WARNING"]
    assert "save failed after 0." in caplog.records[1].getMessage()
