import socket
import subprocess
import sys

from app import doctor
from app.cli import main as cli_main


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_python_stack_checks_pass_in_project_venv():
    cfg = doctor.DoctorConfig(target="any")
    report = doctor.run_checks(cfg)
    names = {c.name: c for c in report.checks}
    assert names["python"].ok and names["torch"].ok
    assert names["lerobot"].ok and names["lerobot"].detail == "0.6.1"
    assert report.ok


def test_headless_render_works_here():
    check = doctor.check_mujoco_render(timeout_s=120)
    assert check.ok, check.detail


def test_unreachable_learner_fails_the_run_and_says_what_to_do():
    port = _free_port()
    cfg = doctor.DoctorConfig(target="any", learner_address=f"127.0.0.1:{port}")
    report = doctor.run_checks(cfg)
    learner = next(c for c in report.checks if c.name == "learner")
    assert not learner.ok and learner.required
    assert not report.ok
    text = doctor.render_report(report, "any")
    assert "FAIL" in text and "pirl learner" in text and "NOT ready" in text


def test_reachable_learner_passes():
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        check = doctor.check_learner(f"127.0.0.1:{srv.getsockname()[1]}")
    assert check.ok


def test_bad_address_is_reported():
    check = doctor.check_learner("no-port-here")
    assert not check.ok and "host:port" in check.hint


def test_real_target_requires_ports_and_calibration(monkeypatch):
    monkeypatch.setattr(
        doctor, "check_serial_ports", lambda: doctor.Check("serial ports", False, "none found")
    )
    monkeypatch.setattr(doctor, "check_mujoco_render", lambda t: doctor.Check("mujoco render", True, "stub"))
    report = doctor.run_checks(doctor.DoctorConfig(target="real"))
    ports = next(c for c in report.checks if c.name == "serial ports")
    assert ports.required and not report.ok


def test_require_cuda_fails_on_cpu_machine(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not doctor.check_cuda(required=True).ok
    assert doctor.check_cuda(required=True).required


def test_cli_exit_codes(capsys):
    port = _free_port()
    assert cli_main(["doctor", "--target=any", f"--learner_address=127.0.0.1:{port}"]) == 1
    out = capsys.readouterr().out
    assert "check" in out and "learner" in out
    assert cli_main(["nope"]) == 2
    assert cli_main(["--help"]) == 0


def test_python_dash_m_app_entry_point():
    out = subprocess.run(
        [sys.executable, "-m", "app", "--version"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and out.stdout.startswith("pirl ")
