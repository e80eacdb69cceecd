"""Bad or missing calibration files are rejected with a message that says what is wrong and what to do."""

from __future__ import annotations

import json

import pytest
from lerobot.robots.koch_follower import KochFollowerConfig
from lerobot.robots.so_follower import SO101FollowerConfig
from lerobot.teleoperators.koch_leader import KochLeaderConfig
from lerobot.teleoperators.so_leader import SO101LeaderConfig

from calibration.cli import main
from calibration.devices import SPECS
from calibration.errors import CalibrationError
from calibration.validate import preflight, validate
from tests.mocks.calibration_files import KOCH_RANGES, SO101_RANGES, calibrate_registers

GOOD = {
    m: {"id": i, "drive_mode": 0, "homing_offset": off, "range_min": lo, "range_max": hi}
    for i, (m, (lo, hi), off) in enumerate(
        zip(SO101_RANGES, SO101_RANGES.values(), [-120, 40, 0, 300, 12, -900], strict=True), start=1
    )
}


def so_cfg(calib_dir, port="/dev/mock_so101", id_="arm1"):
    return SO101FollowerConfig(port=port, id=id_, calibration_dir=calib_dir)


def write(calib_dir, data, name="arm1"):
    path = calib_dir / f"{name}.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def broken(**changes):
    data = json.loads(json.dumps(GOOD))
    for motor, fields in changes.items():
        if fields is None:
            del data[motor]
        else:
            data[motor].update(fields)
    return data


def errors_of(calib_dir):
    (report,) = validate(so_cfg(calib_dir))
    return report, "\n".join(str(i) for i in report.errors)


def test_good_file_passes(calib_dir):
    write(calib_dir, GOOD)
    (report,) = validate(so_cfg(calib_dir))
    assert report.ok and not report.issues and report.format().endswith(": OK")


def test_missing_file_says_how_to_calibrate(calib_dir):
    report, text = errors_of(calib_dir)
    assert not report.ok
    assert "no calibration file at" in text
    assert "pirl calibrate --robot.type=so100_follower --robot.port=/dev/mock_so101 --robot.id=arm1" in text


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"shoulder_pan": {"id": 1,', "not valid JSON"),
        ("[1, 2, 3]", "should map motor names to calibrations"),
        (broken(elbow_flex={"range_max": "3080"}), "non-integer range_max"),
        ({"elbow_flex": {"id": 3}}, "missing drive_mode, homing_offset, range_min, range_max"),
    ],
)
def test_unreadable_files(calib_dir, content, expected):
    write(calib_dir, content)
    report, text = errors_of(calib_dir)
    assert expected in text and "re-run" in text.lower()


@pytest.mark.parametrize(
    ("changes", "motor", "expected"),
    [
        ({"elbow_flex": {"range_min": 3080, "range_max": 860}}, "elbow_flex", "range is inverted"),
        ({"wrist_flex": {"range_min": 2000, "range_max": 2000}}, "wrist_flex", "range is empty"),
        (
            {"shoulder_lift": {"range_min": 2000, "range_max": 2100}},
            "shoulder_lift",
            "range is tiny (8.8 deg",
        ),
        ({"elbow_flex": {"range_min": 0, "range_max": 4095}}, "elbow_flex", "spans a full turn"),
        ({"gripper": {"homing_offset": -2600}}, "gripper", "does not fit the servo"),
        (
            {"shoulder_pan": {"range_min": 2300, "range_max": 3900}},
            "shoulder_pan",
            "does not contain the homing middle",
        ),
        ({"wrist_flex": {"range_min": -40}}, "wrist_flex", "leaves the encoder's 0..4095"),
        ({"elbow_flex": {"id": 7}}, "elbow_flex", "id is 7 but"),
        ({"gripper": {"drive_mode": 3}}, "gripper", "drive_mode must be 0 or 1"),
        ({"gripper": None}, None, "motors missing from the file: gripper"),
    ],
)
def test_implausible_calibrations(calib_dir, changes, motor, expected):
    write(calib_dir, broken(**changes))
    report, text = errors_of(calib_dir)
    assert not report.ok
    assert expected in text
    if motor is not None:
        assert any(i.motor == motor and expected in i.message for i in report.errors)
    assert "fix: re-run pirl calibrate" in text


def test_wrist_roll_may_turn_fully_but_nothing_else(calib_dir):
    write(calib_dir, GOOD)  # wrist_roll is 0..4095 in GOOD
    assert validate(so_cfg(calib_dir))[0].ok


def test_preflight_raises_with_every_report(calib_dir):
    write(calib_dir, broken(elbow_flex={"range_min": 3080, "range_max": 860}))
    with pytest.raises(
        CalibrationError, match=r"(?s)calibration check failed.*elbow_flex: range is inverted"
    ):
        preflight(so_cfg(calib_dir))


def test_cli_validate_offline_exit_codes(calib_dir, capsys):
    args = [
        "validate",
        "--robot.type=so101_follower",
        "--robot.id=arm1",
        f"--robot.calibration_dir={calib_dir}",
    ]
    write(calib_dir, GOOD)
    assert main(args) == 0
    write(calib_dir, broken(wrist_flex={"range_min": 2000, "range_max": 2010}))
    assert main(args) == 1
    assert "wrist_flex: range is tiny" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ live


def test_live_check_passes_on_the_calibrated_arm(so101_sim, calib_dir):
    cal = calibrate_registers(so101_sim, SO101_RANGES, offsets={"shoulder_pan": -120})
    write(calib_dir, {m: vars(c) for m, c in cal.items()})
    (report,) = validate(so_cfg(calib_dir), live=True)
    assert report.ok and not report.issues, report.format()
    assert so101_sim.bus.traffic["ping"] == 6


def test_live_check_finds_silent_motor(so101_sim, calib_dir):
    cal = calibrate_registers(so101_sim, SO101_RANGES)
    write(calib_dir, {m: vars(c) for m, c in cal.items()})
    so101_sim["wrist_roll"].responding = False
    (report,) = validate(so_cfg(calib_dir), live=True)
    assert "not every motor answers" in report.format() and "- 5" in report.format()


def test_live_check_finds_other_arms_file(so101_sim, calib_dir):
    cal = calibrate_registers(so101_sim, SO101_RANGES)
    write(calib_dir, {m: vars(c) for m, c in cal.items()})
    so101_sim.set_actual({"elbow_flex": 3500})  # outside 860..3080: this file is not for this arm
    so101_sim["gripper"].set(so101_sim["gripper"].MAX_LIMIT, 3000)  # motor holds something else
    (report,) = validate(so_cfg(calib_dir), live=True)
    assert any(i.motor == "elbow_flex" and "outside its calibrated range" in i.message for i in report.errors)
    assert any(i.motor == "gripper" and "registers differ" in i.message for i in report.warnings)


def test_live_check_reads_in_the_files_frame_without_writing(so101_sim, calib_dir):
    cal = calibrate_registers(so101_sim, SO101_RANGES)
    write(calib_dir, {m: vars(c) for m, c in cal.items()})
    pan = so101_sim["shoulder_pan"]
    pan.set(pan.HOMING_OFFSET, 700)  # registers drifted: raw present now reads 2048 - 700 = 1348 (< 740 ok)
    writes_before = len(so101_sim.bus.writes)
    (report,) = validate(so_cfg(calib_dir), live=True)
    assert not report.errors, report.format()  # in the file's frame the joint sits at 2048
    assert len(so101_sim.bus.writes) == writes_before


# ------------------------------------------------------------------------------------- compatibility


def _cal_file(calib_dir, name, ranges, offsets=None):
    data = {}
    for i, (m, (lo, hi)) in enumerate(ranges.items(), start=1):
        data[m] = {
            "id": i,
            "drive_mode": 0,
            "homing_offset": (offsets or {}).get(m, 0),
            "range_min": lo,
            "range_max": hi,
        }
    write(calib_dir, data, name)


def test_leader_and_follower_compatible(calib_dir):
    _cal_file(calib_dir, "arm1", SO101_RANGES)
    leader_ranges = {**SO101_RANGES, "elbow_flex": (900, 3050)}  # within 25 %
    _cal_file(calib_dir, "lead", leader_ranges)
    lead = SO101LeaderConfig(port="", id="lead", calibration_dir=calib_dir)
    reports = validate(so_cfg(calib_dir), lead)
    assert len(reports) == 3 and all(r.ok for r in reports) and not reports[2].issues


def test_leader_with_half_the_range_is_rejected(calib_dir):
    _cal_file(calib_dir, "arm1", SO101_RANGES)
    _cal_file(calib_dir, "lead", {**SO101_RANGES, "shoulder_lift": (1600, 2400), "wrist_flex": (1300, 2900)})
    lead = SO101LeaderConfig(port="", id="lead", calibration_dir=calib_dir)
    pair = validate(so_cfg(calib_dir), lead)[2]
    assert any(
        i.motor == "shoulder_lift" and "cannot be driven through its whole range" in i.message
        for i in pair.errors
    )
    assert any(i.motor == "wrist_flex" and i.severity == "warning" for i in pair.issues)


def test_leader_units_must_match_the_follower(calib_dir):
    _cal_file(calib_dir, "arm1", SO101_RANGES)
    _cal_file(calib_dir, "lead", SO101_RANGES)
    lead = SO101LeaderConfig(port="", id="lead", calibration_dir=calib_dir, use_degrees=False)
    pair = validate(so_cfg(calib_dir), lead)[2]
    assert any("leader speaks -100..100 but follower expects degrees" in i.message for i in pair.errors)


def test_koch_leader_is_converted_to_degrees_with_a_warning(calib_dir):
    _cal_file(calib_dir, "k", KOCH_RANGES)
    _cal_file(calib_dir, "kl", {**KOCH_RANGES, "elbow_flex": (1600, 2500)})  # 0.4x the follower's span
    follower = KochFollowerConfig(port="", id="k", calibration_dir=calib_dir, use_degrees=True)
    leader = KochLeaderConfig(port="", id="kl", calibration_dir=calib_dir)
    pair = validate(follower, leader)[2]
    assert any("leader_degrees_map" in i.message for i in pair.warnings)
    assert [i.motor for i in pair.errors] == ["elbow_flex"]  # spans compared in degrees after conversion
    follower.use_degrees = False  # LeRobot's default pairing: both -100..100, range to range
    assert not validate(follower, leader)[2].issues


def test_specs_match_lerobots_classes(tmp_path):
    """Our table of motors per device type must agree with LeRobot's classes (no drift on upgrade)."""
    from lerobot.robots.koch_follower import KochFollower
    from lerobot.robots.so_follower import SO101Follower
    from lerobot.teleoperators.koch_leader import KochLeader
    from lerobot.teleoperators.so_leader import SO101Leader

    devices = {
        "so101_follower": SO101Follower(SO101FollowerConfig(port="", id="x", calibration_dir=tmp_path)),
        "so101_leader": SO101Leader(SO101LeaderConfig(port="", id="x", calibration_dir=tmp_path)),
        "koch_follower": KochFollower(KochFollowerConfig(port="", id="x", calibration_dir=tmp_path)),
        "koch_leader": KochLeader(KochLeaderConfig(port="", id="x", calibration_dir=tmp_path)),
    }
    for type_, dev in devices.items():
        spec = SPECS[type_]
        assert {n: (m.id, m.model) for n, m in dev.bus.motors.items()} == spec.motors
        assert dev.name == spec.lerobot_name
