"""The simulated Dynamixel bus under LeRobot's real DynamixelMotorsBus (dynamixel_sdk protocol 2.0)."""

from __future__ import annotations

import pytest
from dynamixel_sdk.protocol2_packet_handler import Protocol2PacketHandler
from lerobot.motors import Motor, MotorNormMode
from lerobot.motors.dynamixel import DynamixelMotorsBus

from tests.mocks.dynamixel_bus import KOCH_FOLLOWER_MODELS, KOCH_MOTORS, DynamixelMotor, crc16, stuff, unstuff


def make_bus(port: str) -> DynamixelMotorsBus:
    motors = {
        n: Motor(i, model, MotorNormMode.RANGE_M100_100)
        for (n, i), model in zip(KOCH_MOTORS.items(), KOCH_FOLLOWER_MODELS, strict=True)
    }
    return DynamixelMotorsBus(port, motors)


@pytest.fixture
def bus(koch_sim):
    b = make_bus(koch_sim.port)
    b.connect()
    yield b
    if b.is_connected:
        b.disconnect(disable_torque=False)


def test_crc_matches_the_sdk_table():
    data = bytes(range(256)) + b"\xff\xff\xfd\x00\x01\x03\x00\x01"
    assert crc16(data) == Protocol2PacketHandler().updateCRC(0, list(data), len(data))


def test_stuffing_round_trip():
    raw = b"\x03\x74\x00\xff\xff\xfd\x00"
    assert stuff(raw) == b"\x03\x74\x00\xff\xff\xfd\xfd\x00"
    assert unstuff(stuff(raw)) == raw


def test_handshake_and_model_numbers(koch_sim, bus):
    assert koch_sim.bus.traffic["ping"] == 6
    assert bus.ping("shoulder_pan") == 1060  # XL430-W250
    assert bus.ping("gripper") == 1200  # XL330-M288
    assert bus.broadcast_ping() == {1: 1060, 2: 1060, 3: 1200, 4: 1200, 5: 1200, 6: 1200}


def test_wrong_model_is_reported(sim_ports):
    from tests.mocks.dynamixel_bus import koch_arm

    arm = koch_arm(leader=True)  # XL330-M077 everywhere: not a follower
    sim_ports.add("/dev/leader_here", arm.bus)
    with pytest.raises(RuntimeError, match="incorrect model numbers"):
        make_bus("/dev/leader_here").connect()


def test_offsets_are_twos_complement_and_add_to_present(koch_sim, bus):
    bus.write("Homing_Offset", "elbow_flex", -1500, normalize=False)
    assert bus.read("Homing_Offset", "elbow_flex", normalize=False) == -1500
    assert koch_sim["elbow_flex"].get(DynamixelMotor.HOMING_OFFSET) == -1500
    assert bus.read("Present_Position", "elbow_flex", normalize=False) == 2048 - 1500
    cal = bus.read_calibration()
    assert cal["elbow_flex"].homing_offset == -1500 and cal["elbow_flex"].range_max == 4095


def test_values_needing_byte_stuffing_survive_both_ways(koch_sim, bus):
    value = 0x00FDFFFF  # little-endian FF FF FD 00: must be stuffed in the request and the status
    bus.write("Profile_Velocity", "wrist_flex", value, normalize=False)
    assert koch_sim["wrist_flex"].regs[112:116] == value.to_bytes(4, "little")
    assert bus.read("Profile_Velocity", "wrist_flex", normalize=False) == value
    assert (
        bus.sync_read("Profile_Velocity", ["wrist_flex", "gripper"], normalize=False)["wrist_flex"] == value
    )


def test_eeprom_write_with_torque_on_is_refused(koch_sim, bus):
    bus.enable_torque("gripper")
    with pytest.raises(RuntimeError, match="not available to target address"):
        bus.write("Operating_Mode", "gripper", 4, normalize=False)
    assert koch_sim["gripper"].get(DynamixelMotor.OPERATING_MODE) == 3
    with bus.torque_disabled("gripper"):
        bus.write("Operating_Mode", "gripper", 4, normalize=False)
    assert koch_sim["gripper"].get(DynamixelMotor.OPERATING_MODE) == 4


def test_goal_tracking_and_scripts(koch_sim, bus):
    koch_sim.script({"wrist_roll": [100, 5000]})  # extended range is fine on Dynamixel
    assert [bus.read("Present_Position", "wrist_roll", normalize=False) for _ in range(2)] == [100, 5000]
    koch_sim["shoulder_lift"].max_step = 100
    bus.enable_torque("shoulder_lift")
    bus.sync_write("Goal_Position", {"shoulder_lift": 2348}, normalize=False)
    got = [
        bus.sync_read("Present_Position", ["shoulder_lift"], normalize=False)["shoulder_lift"]
        for _ in range(4)
    ]
    assert got == [2148, 2248, 2348, 2348]
