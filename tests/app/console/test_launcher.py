"""`pirl console` as a launcher: what it refuses, how it starts the actor, and how it stops one that does
not stop (QUIT grace -> SIGTERM -> SIGKILL)."""

from __future__ import annotations

import os
import signal
import sys

import pytest

from app.console.launcher import ActorProcess
from app.console.main import ConsoleConfig, actor_argv, main
from app.control.protocol import ControlConfig
from tests.app.console.helpers import wait


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "no actor config given"),
        (["--attach=true", "--config=configs/sim_pirl_reach.json"], "either --config"),
        (["--config=configs/nope.json"], "not found"),
        (["--attach=true", "--control.host=0.0.0.0"], "not a loopback address"),
    ],
)
def test_bad_command_lines_are_refused_with_the_fix(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("pirl console: ") and message in err


def test_the_started_actor_listens_where_the_console_connects():
    cfg = ConsoleConfig(config="configs/sim_pirl_reach.json", control=ControlConfig(port=7123))
    argv = actor_argv(cfg)
    assert argv[:5] == [sys.executable, "-m", "app", "actor", "--config"]
    assert "--actor.control.port=7123" in argv and "--actor.control.host=127.0.0.1" in argv
    cfg.control.unix_socket = "/tmp/pirl-test.sock"
    argv = actor_argv(cfg)
    assert "--actor.control.unix_socket=/tmp/pirl-test.sock" in argv
    assert not any(a.startswith("--actor.control.port") for a in argv)
    assert not any(a.startswith("--actor.control.token_file") for a in argv)  # both derive the default
    cfg.control.token_file = "/tmp/pirl-test.token"  # a console told where the token is tells its actor
    assert "--actor.control.token_file=/tmp/pirl-test.token" in actor_argv(cfg)


def _process(tmp_path, code: str) -> ActorProcess:
    """A stand-in actor; it prints "ready" once its signal handlers are set, so no signal beats them."""
    proc = ActorProcess([sys.executable, "-u", "-c", code], tmp_path / "actor.log").start()
    wait(lambda: "ready" in proc.log_path.read_text() or proc.poll() is not None, 30, "the child to start")
    assert proc.poll() is None or "ready" in proc.log_path.read_text(), proc.log_path.read_text()
    return proc


def test_the_actor_runs_in_its_own_session_with_its_output_in_the_log(tmp_path):
    proc = _process(tmp_path, "import time; print('ready'); time.sleep(30)")
    try:
        assert os.getsid(proc.proc.pid) != os.getsid(0)  # Ctrl-C / hang-up of the console never reach it
    finally:
        assert proc.stop(quit_grace_s=0.1, term_grace_s=5) == -signal.SIGTERM
    assert "ready" in proc.log_path.read_text()


def test_an_actor_that_ignores_sigterm_is_killed(tmp_path):
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready'); time.sleep(30)"
    )
    proc = _process(tmp_path, code)
    assert proc.stop(quit_grace_s=0.1, term_grace_s=0.3) == -signal.SIGKILL


def test_an_actor_that_quits_in_time_is_left_alone(tmp_path):
    proc = _process(tmp_path, "import time; print('ready'); time.sleep(0.2)")
    assert proc.stop(quit_grace_s=10, term_grace_s=0.1) == 0


def test_other_options_go_to_the_started_actor_and_are_checked_first(capsys):
    from app.console.main import split_argv

    own, extra = split_argv(
        ["--config", "configs/sim_pirl_reach.json", "--robot.realtime=true", "--transport.host", "gpu-box",
         "--control.port=7124", "--actor_log=x.log"]
    )  # fmt: skip
    assert own == ["--config", "configs/sim_pirl_reach.json", "--control.port=7124", "--actor_log=x.log"]
    assert extra == ["--robot.realtime=true", "--transport.host", "gpu-box"]
    argv = actor_argv(ConsoleConfig(config="configs/sim_pirl_reach.json"), extra)
    assert argv[5:9] == [
        "configs/sim_pirl_reach.json",
        "--robot.realtime=true",
        "--transport.host",
        "gpu-box",
    ]

    assert main(["--config=configs/sim_pirl_reach.json", "--robot.no_such_option=1"]) == 2
    assert "--robot.no_such_option" in capsys.readouterr().err  # named before anything starts
    assert main(["--attach=true", "--robot.realtime=true"]) == 2
    assert "is an actor option" in capsys.readouterr().err


def test_the_tail_of_the_log_is_this_runs_output_only(tmp_path):
    log = tmp_path / "actor.log"
    log.write_text("an earlier actor's last words\n")
    code = "import sys; print('ready'); print('line 2\\n\\n\\tdetail'); sys.exit('Error: the reason')"
    proc = _process(tmp_path, code)
    wait(lambda: proc.poll() is not None, 30, "the child to exit")
    assert proc.poll() == 1
    assert proc.tail() == ["ready", "line 2", "    detail", "Error: the reason"]
    assert proc.tail(2) == ["    detail", "Error: the reason"]
    assert "an earlier actor's last words" in log.read_text()  # kept in the file, not shown as this run's


def test_a_port_where_an_actor_already_listens_is_refused(capsys):
    """The started actor could not listen there, and the console would watch that other actor."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["--config=configs/sim_pirl_reach.json", f"--control.port={port}"]) == 2
    err = capsys.readouterr().err
    assert f"an actor already listens on 127.0.0.1:{port}" in err
    assert f"pirl console --attach=true --control.port={port}" in err
