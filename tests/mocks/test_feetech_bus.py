"""The simulated Feetech bus under LeRobot's real FeetechMotorsBus (scservo_sdk on the wire)."""

from __future__ import annotations

import pytest
from lerobot.motors import Motor, MotorNormMode
from lerobot.motors.feetech import FeetechMotorsBus

from tests.mocks.feetech_bus import SO101_MOTORS, FeetechBus, FeetechMotor, checksum, so101_arm


def make_bus(port: str) -> FeetechMotorsBus:
    motors = {n: Motor(i, "sts3215", MotorNormMode.RANGE_M100_100) for n, i in SO101_MOTORS.items()}
    return FeetechMotorsBus(port, motors)


@pytest.fixture
def bus(so101_sim):
    b = make_bus(so101_sim.port)
    b.connect()
    yield b
    if b.is_connected:
        b.disconnect(disable_torque=False)


def test_handshake_pings_and_checks_firmware(so101_sim, bus):
    traffic = so101_sim.bus.traffic
    assert traffic["ping"] == 6  # one per motor, from _assert_motors_exist
    assert traffic["read"] >= 6 * 2  # model number after each ping + firmware major/minor
    assert bus.ping("gripper") == 777
    assert bus._read_firmware_version([1, 2]) == {1: "3.10", 2: "3.10"}


def test_broadcast_ping_finds_every_motor(so101_sim, bus):
    assert bus.broadcast_ping() == dict.fromkeys(range(1, 7), 777)


def test_handshake_rejects_mixed_firmware(sim_ports):
    arm = so101_arm()
    arm["elbow_flex"].set(FeetechMotor.FIRMWARE_MINOR, 9)
    sim_ports.add("/dev/mixed", arm.bus)
    with pytest.raises(RuntimeError, match="different firmware"):
        make_bus("/dev/mixed").connect()


def test_missing_motor_fails_connect_with_its_id(so101_sim):
    so101_sim["wrist_flex"].responding = False
    with pytest.raises(RuntimeError, match=r"Missing motor IDs:\n  - 4"):
        make_bus(so101_sim.port).connect()


def test_unknown_port_and_wrong_baudrate_do_not_connect(sim_ports):
    with pytest.raises(ConnectionError, match="/dev/nothing_here"):
        make_bus("/dev/nothing_here").connect()
    sim_ports.add("/dev/slow", FeetechBus([FeetechMotor(i) for i in range(1, 7)], baudrate=57_600))
    with pytest.raises(RuntimeError, match="Missing motor IDs"):
        make_bus("/dev/slow").connect()


def test_writes_are_visible_in_reads_including_signed_offsets(so101_sim, bus):
    bus.write("Homing_Offset", "shoulder_pan", -300, normalize=False)
    bus.write("Min_Position_Limit", "shoulder_pan", 700, normalize=False)
    assert bus.read("Homing_Offset", "shoulder_pan", normalize=False) == -300
    assert so101_sim["shoulder_pan"].get(FeetechMotor.HOMING_OFFSET) == -300
    # sign-magnitude on bit 11, as the STS3215 stores it
    raw = int.from_bytes(so101_sim["shoulder_pan"].regs[31:33], "little")
    assert raw == 300 | (1 << 11)
    # Present = Actual - Homing_Offset (mod 4096)
    assert bus.read("Present_Position", "shoulder_pan", normalize=False) == 2048 + 300
    assert bus.read_calibration()["shoulder_pan"].range_min == 700


def test_configure_motors_clears_phase_bit_and_return_delay(so101_sim, bus):
    assert so101_sim["gripper"].get(FeetechMotor.PHASE) & 0x10
    bus.configure_motors()
    for name in SO101_MOTORS:
        assert so101_sim[name].get(FeetechMotor.PHASE) & 0x10 == 0
        assert so101_sim[name].get(FeetechMotor.RETURN_DELAY) == 0


def test_scripted_positions_play_one_sample_per_read(so101_sim, bus):
    so101_sim.script({"elbow_flex": [1000, 1500, 2500], "gripper": lambda k: 3000 - 10 * k})
    seen = [bus.sync_read("Present_Position", normalize=False) for _ in range(4)]
    assert [s["elbow_flex"] for s in seen] == [1000, 1500, 2500, 2500]  # sequence holds its last value
    assert [s["gripper"] for s in seen] == [3000, 2990, 2980, 2970]
    assert {s["shoulder_pan"] for s in seen} == {2048}


def test_goal_tracking_clamp_and_torque_hold(so101_sim, bus):
    pan = so101_sim["shoulder_pan"]
    pan.tracking = 0.5
    bus.write("Min_Position_Limit", "shoulder_pan", 1000, normalize=False)
    bus.write("Max_Position_Limit", "shoulder_pan", 3000, normalize=False)
    # torque off: the goal is stored but the shaft does not move
    bus.sync_write("Goal_Position", {"shoulder_pan": 2848}, normalize=False)
    assert bus.read("Present_Position", "shoulder_pan", normalize=False) == 2048
    bus.enable_torque("shoulder_pan")
    assert bus.read("Goal_Position", "shoulder_pan", normalize=False) == 2048  # torque on holds the pose
    bus.sync_write("Goal_Position", {"shoulder_pan": 2848}, normalize=False)
    got = [bus.read("Present_Position", "shoulder_pan", normalize=False) for _ in range(3)]
    assert got == [2448, 2648, 2748]  # half the remaining error per sample
    bus.sync_write("Goal_Position", {"shoulder_pan": 3900}, normalize=False)  # beyond Max_Position_Limit
    pan.tracking = 1.0
    assert bus.read("Present_Position", "shoulder_pan", normalize=False) == 3000
    assert (1, 42, (3900).to_bytes(2, "little")) in so101_sim.bus.writes


def test_corrupted_status_packets_fail_then_retry(so101_sim, bus):
    so101_sim.bus.corrupt_replies = 1
    with pytest.raises(ConnectionError):
        bus.sync_read("Present_Position", normalize=False)
    so101_sim.bus.corrupt_replies = 1
    assert bus.sync_read("Present_Position", normalize=False, num_retry=1)["gripper"] == 2048


def test_bad_request_checksum_is_ignored_like_real_servo():
    sim = FeetechBus([FeetechMotor(1)])
    ping = [1, 2, 1]
    assert sim.handle(bytes([0xFF, 0xFF, *ping, checksum(ping)])) == bytes([0xFF, 0xFF, 1, 2, 0, 0xFC])
    assert sim.handle(bytes([0xFF, 0xFF, *ping, checksum(ping) ^ 1])) == b""
