import socket
import subprocess
import sys
from pathlib import Path

from app import doctor
from app.cli import main as cli_main

REPO = Path(__file__).resolve().parents[2]


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


def test_run_config_devices_ports_and_calibration(tmp_path, monkeypatch):
    """`--config`: the robot's port exists and its calibration file is found; the leader's port is missing
    and it has no calibration file; each is its own required row with what to do."""
    import json

    from lerobot.motors import MotorCalibration

    from hardware import so101_model
    from tests.mocks.calibration_files import write_calibration_file

    monkeypatch.setenv("PIRL_TOKEN", "x")
    port = tmp_path / "ttyACM0"
    port.write_text("")  # stands in for the device node
    calib = {
        m: MotorCalibration(id=i + 1, drive_mode=0, homing_offset=0, range_min=1000, range_max=3000)
        for i, m in enumerate(so101_model.MOTORS)
    }
    write_calibration_file(tmp_path / "robot" / "arm1.json", calib)
    cfg = json.loads((REPO / "configs" / "so101_two_machines.json").read_text())
    cfg["robot"].update(port=str(port), calibration_dir=str(tmp_path / "robot"), cameras={})
    cfg["teleop"].update(port=str(tmp_path / "ttyACM1"), calibration_dir=str(tmp_path / "leader"))
    path = tmp_path / "run.json"
    path.write_text(json.dumps(cfg))

    rows = {c.name: c for c in doctor.check_run_config(str(path))}
    assert rows["run config"].ok
    assert rows["robot port"].ok and rows["robot calibration"].ok
    assert rows["robot calibration"].detail.endswith("arm1.json")
    assert not rows["teleop port"].ok and "lerobot-find-port" in rows["teleop port"].hint
    assert not rows[
        "teleop calibration"
    ].ok and "pirl calibrate --teleop.type=so10" in (  # LeRobot 0.6.1 reports so101 configs as so100_*
        rows["teleop calibration"].detail
    )
    assert all(c.required for c in rows.values())


def test_run_config_that_does_not_parse_is_one_failed_row(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"robot": {"type": "no_such_robot"}}')
    (row,) = doctor.check_run_config(str(bad))
    assert row.name == "run config" and not row.ok and row.required
