import functools
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

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
    teleop = rows["teleop calibration"]
    assert not teleop.ok and "so101_leader id='leader1'" in teleop.detail
    assert f"`pirl calibrate --teleop.type=so101_leader --teleop.port={tmp_path / 'ttyACM1'}" in teleop.hint
    assert all(c.required for c in rows.values())


def test_run_config_that_does_not_parse_is_one_failed_row(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"robot": {"type": "no_such_robot"}}')
    (row,) = doctor.check_run_config(str(bad))
    assert row.name == "run config" and not row.ok and row.required


# ---- the run config's arm type as written, serial-port permissions, corrupt calibration files ----------


def _so101_config(tmp_path, *, robot_calibration: str | None = None) -> Path:
    """configs/so101_two_machines.json with its ports and calibration folders in tmp_path."""
    for port in ("ttyACM0", "ttyACM1"):
        (tmp_path / port).write_text("")  # stands in for the device node
    if robot_calibration is not None:
        (tmp_path / "robot").mkdir()
        (tmp_path / "robot" / "arm1.json").write_text(robot_calibration)
    cfg = json.loads((REPO / "configs" / "so101_two_machines.json").read_text())
    cfg["robot"].update(port=str(tmp_path / "ttyACM0"), calibration_dir=str(tmp_path / "robot"), cameras={})
    cfg["teleop"].update(port=str(tmp_path / "ttyACM1"), calibration_dir=str(tmp_path / "leader"))
    path = tmp_path / "run.json"
    path.write_text(json.dumps(cfg))
    return path


def test_run_config_rows_name_the_so101_type_the_config_wrote(tmp_path, monkeypatch):
    """LeRobot 0.6.1 parses so101_follower into a config whose .type is so100_follower; the doctor shows
    and suggests what the user wrote."""
    monkeypatch.setenv("PIRL_TOKEN", "x")
    rows = {c.name: c for c in doctor.check_run_config(str(_so101_config(tmp_path)))}
    robot = rows["robot calibration"]
    assert not robot.ok and "so101_follower id='arm1'" in robot.detail
    assert robot.hint == (
        f"calibrate it first: `pirl calibrate --robot.type=so101_follower --robot.port={tmp_path / 'ttyACM0'} "
        f"--robot.id=arm1 --robot.calibration_dir={tmp_path / 'robot'}`"
    )
    assert "so101_follower" in rows["robot port"].detail
    text = doctor.render_report(doctor.Report(list(rows.values())), "real")
    assert "so100" not in text


def test_run_config_with_a_corrupt_calibration_file_says_which_and_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("PIRL_TOKEN", "x")
    path = _so101_config(tmp_path, robot_calibration='{"shoulder_pan": {"id": 1, "drive_')  # half written
    rows = {c.name: c for c in doctor.check_run_config(str(path))}
    robot = rows["robot calibration"]
    assert not robot.ok and robot.required
    assert str(tmp_path / "robot" / "arm1.json") in robot.detail and "cannot be read" in robot.detail
    assert "pirl calibrate --robot.type=" in robot.detail


def test_factory_reports_a_corrupt_calibration_file_instead_of_a_traceback(tmp_path):
    from lerobot.robots.so_follower import SO101FollowerConfig

    from hardware.factory import CalibrationCorruptError, CalibrationMissingError, make_robot

    (tmp_path / "arm1.json").write_text('{"shoulder_pan": [1, 2')
    cfg = SO101FollowerConfig(port="/dev/null", id="arm1", calibration_dir=tmp_path, cameras={})
    with pytest.raises(
        CalibrationCorruptError, match=r"arm1\.json .* cannot be read: .*pirl calibrate"
    ) as err:
        make_robot(cfg)
    assert isinstance(err.value, CalibrationMissingError)  # callers that show a missing file show this too
    (tmp_path / "arm1.json").write_text('{"shoulder_pan": {"id": 1}}')  # valid JSON, missing fields
    with pytest.raises(CalibrationCorruptError, match="cannot be read"):
        make_robot(cfg, require_calibration=False)


def _port(tmp_path, name: str, mode: int) -> Path:
    port = tmp_path / name
    port.write_text("")
    port.chmod(mode)
    return port


def test_port_access_follows_owner_group_and_other_bits(tmp_path):
    st = _port(tmp_path, "ttyACM0", 0o660).stat()
    group = doctor._group_name(st.st_gid)
    stranger = 424242 if st.st_uid != 424242 else 424243
    denied = doctor.port_access(str(tmp_path / "ttyACM0"), uid=stranger, gids=set(), user="nobody-here")
    assert not denied.ok and "mode 660" in denied.detail and f"group {group}" in denied.detail
    assert f"sudo usermod -aG {group} $USER" in denied.hint and "log out" in denied.hint
    member = doctor.port_access(str(tmp_path / "ttyACM0"), uid=stranger, gids={st.st_gid})
    assert member.ok
    assert doctor.port_access(str(_port(tmp_path, "ttyUSB0", 0o666)), uid=stranger, gids=set()).ok
    owner_only = doctor.port_access(str(_port(tmp_path, "ttyACM1", 0o600)), uid=stranger, gids={st.st_gid})
    assert not owner_only.ok and "udev" in owner_only.hint and "sudo chmod 666" in owner_only.hint
    assert doctor.port_access(str(tmp_path / "ttyACM1"), uid=0, gids=set()).ok  # root may open anything


def test_port_access_in_group_but_not_in_this_login_says_log_in_again(tmp_path, monkeypatch):
    port = _port(tmp_path, "ttyACM0", 0o660)
    monkeypatch.setattr(doctor, "_group_members", lambda gid: ["alice"])
    access = doctor.port_access(str(port), uid=424242, gids=set(), user="alice")
    assert not access.ok and "log out and back in" in access.hint and "newgrp" in access.hint


def test_permission_rows_fail_with_the_fix(tmp_path, monkeypatch):
    """A port the user may not open fails `port permissions` (every listed port) and the run config's
    `robot port` row, each with the command that fixes it."""
    monkeypatch.setenv("PIRL_TOKEN", "x")
    as_stranger = functools.partial(doctor.port_access, uid=424242, gids=set(), user="nobody-here")
    monkeypatch.setattr(doctor, "port_access", as_stranger)
    path = _so101_config(tmp_path)
    for port in ("ttyACM0", "ttyACM1"):
        os.chmod(tmp_path / port, 0o660)
    check = doctor.check_port_permissions([str(tmp_path / "ttyACM0")])
    assert not check.ok and "usermod -aG" in check.hint
    assert doctor.check_port_permissions([]).ok
    rows = {c.name: c for c in doctor.check_run_config(str(path))}
    assert not rows["robot port"].ok and "usermod -aG" in rows["robot port"].hint
    os.chmod(tmp_path / "ttyACM0", 0o666)
    rows = {c.name: c for c in doctor.check_run_config(str(path))}
    assert rows["robot port"].ok and "read/write ok" in rows["robot port"].detail


def test_real_target_has_a_required_port_permissions_row(monkeypatch):
    monkeypatch.setattr(doctor, "check_mujoco_render", lambda t: doctor.Check("mujoco render", True, "stub"))
    monkeypatch.setattr(doctor, "list_serial_ports", lambda: [])
    report = doctor.run_checks(doctor.DoctorConfig(target="real"))
    row = next(c for c in report.checks if c.name == "port permissions")
    assert row.required and row.ok


def test_report_rows_keep_status_and_whole_fix_on_one_line():
    """Each row is one line: name, status, required, then the detail and (when it failed) the fix, whole,
    so a long command can be copy-pasted from a log or pipe; no colour codes, brackets printed as written."""
    cmd = (
        "pirl calibrate --robot.type=so101_follower --robot.port=/dev/ttyACM0 --robot.id=arm1 "
        "--robot.calibration_dir=/home/someone/.cache/huggingface/lerobot/calibration/robots/so101_follower"
    )
    report = doctor.Report(
        [
            doctor.Check("python", True, "3.12.1", True, "never shown: the row passed"),
            doctor.Check(
                "robot calibration", False, "no file [/dev/ttyACM0]", True, f"calibrate it: `{cmd}`"
            ),
            doctor.Check(
                "cuda", False, "not available (CPU only)", False, "a learner for pi0/pi05 needs a GPU"
            ),
        ]
    )
    text = doctor.render_report(report, "real")
    lines = text.splitlines()
    assert lines[0].split() == ["check", "status", "required", "detail"]
    expected = [
        ("python", "ok", "yes", "3.12.1"),
        ("robot calibration", "FAIL", "yes", f"no file [/dev/ttyACM0]  -> calibrate it: `{cmd}`"),
        ("cuda", "missing", "no", "not available (CPU only)  -> a learner for pi0/pi05 needs a GPU"),
    ]
    for line, (name, status, required, detail) in zip(lines[2:5], expected, strict=True):
        assert re.fullmatch(rf"{name} +{status} +{required} +{re.escape(detail)}", line), line
    assert lines[-1] == "pirl doctor: NOT ready for target 'real'"
    assert "\x1b" not in text
