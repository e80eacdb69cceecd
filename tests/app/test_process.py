"""The shared front end of `pirl learner` / `pirl actor`: operator mistakes end in one line and exit 2."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest

from app.actor import cli as actor_cli
from app.learner import cli as learner_cli
from app.run.process import install_stop_signals


@pytest.mark.parametrize("cli", [learner_cli, actor_cli], ids=["learner", "actor"])
def test_missing_config_file_is_one_clear_line(cli, tmp_path, capsys):
    assert cli.main(["--config", str(tmp_path / "nope.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("pirl ") and "nope.json not found" in err[-1] and "docs/recipes.md" in err[-1]


@pytest.mark.parametrize("cli", [learner_cli, actor_cli], ids=["learner", "actor"])
def test_help_is_one_screen_and_help_all_lists_every_option(cli, capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--config configs/sim_pirl_reach.json" in out and "--transport.port" in out
    assert "--help-all" in out and "policy" in out and "robot" in out
    assert len(out.splitlines()) <= 50, "--help must fit on one screen"
    assert cli.main(["--help-all"]) == 0
    full = capsys.readouterr().out
    assert "--policy.rl.optim.actor_lr" in full and "--learner.max_updates" in full
    assert len(full.splitlines()) > 1000


def test_first_signal_asks_for_a_clean_stop_second_aborts():
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        shutdown = threading.Event()
        install_stop_signals(shutdown, "learner")
        signal.raise_signal(signal.SIGTERM)
        assert shutdown.is_set()
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@pytest.mark.parametrize("name", ["learner", "actor"])
def test_torch_threads_are_set_for_the_process_before_it_builds(name, tmp_path):
    """`--learner.torch_threads` / `--actor.torch_threads`: one core each when both share a small machine."""
    import torch

    from app.run.process import run_role

    seen: list[int] = []

    def build(cfg, shutdown):
        seen.append(torch.get_num_threads())
        return lambda: 0

    config = str(Path(__file__).resolve().parents[2] / "configs" / "sim_pirl_reach.json")
    argv = ["--config", config, f"--learner.output_dir={tmp_path / 'run'}"]
    old_threads = torch.get_num_threads()
    old_handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        torch.set_num_threads(2)
        assert run_role([*argv, f"--{name}.torch_threads=1"], name, "", lambda a: 1, build) == 0
        assert run_role([*argv, f"--{name}.torch_threads=0"], name, "", lambda a: 1, build) == 0
        assert seen == [1, 1]  # 0 leaves the process as it is
        from app.run.parse import parse_run_config

        with pytest.raises(ValueError, match=f"{name}.torch_threads must be >= 0"):
            parse_run_config([*argv, f"--{name}.torch_threads=-1"]).validate(name)
    finally:
        torch.set_num_threads(old_threads)
        for s, h in old_handlers.items():
            signal.signal(s, h)
