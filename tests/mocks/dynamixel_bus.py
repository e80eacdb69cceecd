"""A simulated Dynamixel X-series bus (protocol 2.0) behind a fake serial port.

Packets, as the real servos speak them (little-endian, CRC-16/BUYPASS over everything before the CRC,
byte stuffing FF FF FD -> FF FF FD FD inside instruction/params):

    request: FF FF FD 00 id lenL lenH instr params... crcL crcH     len = len(params) + 3
    status : FF FF FD 00 id lenL lenH 55 error data... crcL crcH    len = len(data) + 4

Handled: PING (single and broadcast; data = model number + firmware), READ, WRITE, SYNC_READ, SYNC_WRITE.
EEPROM writes (address < 64) with torque on are refused with an access error, as the firmware does, so a
caller that forgets `torque_disabled()` fails here as it would on the Koch arm.
"""

from __future__ import annotations

from collections import Counter, deque

from lerobot.motors.dynamixel.tables import MODEL_NUMBER_TABLE, X_SERIES_CONTROL_TABLE

from tests.mocks.serial_port import SimulatedBus
from tests.mocks.servo import WRITE_LOG_SIZE, Register, SimulatedArm, SimulatedMotor

BROADCAST_ID = 0xFE
HEADER = b"\xff\xff\xfd\x00"
INST_PING, INST_READ, INST_WRITE, INST_SYNC_READ, INST_SYNC_WRITE = 0x01, 0x02, 0x03, 0x82, 0x83
INST_STATUS = 0x55
ERR_INSTRUCTION, ERR_ACCESS = 0x02, 0x07
EEPROM_END = 64
INSTRUCTION_NAMES = {
    INST_PING: "ping",
    INST_READ: "read",
    INST_WRITE: "write",
    INST_SYNC_READ: "sync_read",
    INST_SYNC_WRITE: "sync_write",
}

KOCH_MOTORS = {
    "shoulder_pan": 1,
    "shoulder_lift": 2,
    "elbow_flex": 3,
    "wrist_flex": 4,
    "wrist_roll": 5,
    "gripper": 6,
}
KOCH_FOLLOWER_MODELS = ["xl430-w250", "xl430-w250", "xl330-m288", "xl330-m288", "xl330-m288", "xl330-m288"]
KOCH_LEADER_MODELS = ["xl330-m077"] * 6


def crc16(data: bytes) -> int:
    """CRC-16 (poly 0x8005, init 0, no reflection), bit by bit: independent of the SDK's lookup table."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def stuff(payload: bytes) -> bytes:
    """Insert FD after every FF FF FD inside the payload (headers excluded)."""
    out = bytearray()
    for b in payload:
        out.append(b)
        if len(out) >= 3 and out[-3:] == b"\xff\xff\xfd":
            out.append(0xFD)
    return bytes(out)


def unstuff(payload: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(payload):
        out.append(payload[i])
        if len(out) >= 3 and out[-3:] == b"\xff\xff\xfd" and i + 1 < len(payload) and payload[i + 1] == 0xFD:
            i += 1
        i += 1
    return bytes(out)


def _reg(name: str, signed: str = "") -> Register:
    addr, size = X_SERIES_CONTROL_TABLE[name]
    return Register(addr, size, signed)


class DynamixelMotor(SimulatedMotor):
    """An X-series servo: present = actual + homing_offset (drive-mode bit 0 reverses the shaft), goal
    clamped to the position limits in position mode (3) but not in extended position mode (4)."""

    MODEL_NUMBER = _reg("Model_Number")
    ID = _reg("ID")
    PRESENT_POSITION = _reg("Present_Position", "2c")
    GOAL_POSITION = _reg("Goal_Position", "2c")
    TORQUE_ENABLE = _reg("Torque_Enable")
    HOMING_OFFSET = _reg("Homing_Offset", "2c")
    MIN_LIMIT = _reg("Min_Position_Limit")
    MAX_LIMIT = _reg("Max_Position_Limit")
    OPERATING_MODE = _reg("Operating_Mode")
    DRIVE_MODE = _reg("Drive_Mode")
    FIRMWARE = _reg("Firmware_Version")
    RETURN_DELAY = _reg("Return_Delay_Time")

    def __init__(self, motor_id: int, model: str = "xl330-m288", firmware: int = 52, **kw):
        self.firmware = firmware
        self.model = model
        super().__init__(motor_id, MODEL_NUMBER_TABLE[model], **kw)

    def _factory_defaults(self) -> None:
        super()._factory_defaults()
        self.set(self.FIRMWARE, self.firmware)
        self.set(self.OPERATING_MODE, 3)
        self.set(self.RETURN_DELAY, 250)

    def _sign(self) -> int:
        return -1 if self.get(self.DRIVE_MODE) & 1 else 1

    def present_from_actual(self, actual: float) -> int:
        return int(round(self._sign() * actual + self.get(self.HOMING_OFFSET)))

    def actual_from_present(self, present: float) -> float:
        return float(self._sign() * (present - self.get(self.HOMING_OFFSET)))

    def goal_bounds(self) -> tuple[int, int] | None:
        if self.get(self.OPERATING_MODE) != 3:
            return None
        return super().goal_bounds()

    def write_denied(self, addr: int, size: int) -> int:
        return ERR_ACCESS if addr < EEPROM_END and self.torque_enabled else 0


class DynamixelBus(SimulatedBus):
    """Motors by id on one Dynamixel protocol-2.0 bus; same `traffic` / `writes` / `corrupt_replies`
    instrumentation as `FeetechBus`."""

    def __init__(self, motors: list[DynamixelMotor], baudrate: int = 1_000_000) -> None:
        self.motors: dict[int, DynamixelMotor] = {m.id: m for m in motors}
        self.baudrate = baudrate
        self.traffic: Counter[str] = Counter()
        self.writes: deque[tuple[int, int, bytes]] = deque(maxlen=WRITE_LOG_SIZE)
        self.corrupt_replies = 0
        self._buf = bytearray()

    def handle(self, data: bytes) -> bytes:
        self._buf += data
        out = bytearray()
        while True:
            start = self._buf.find(HEADER)
            if start < 0:
                del self._buf[: max(0, len(self._buf) - 3)]
                break
            del self._buf[:start]
            if len(self._buf) < 7:
                break
            length = int.from_bytes(self._buf[5:7], "little")
            total = 7 + length
            if len(self._buf) < total:
                break
            pkt = bytes(self._buf[:total])
            del self._buf[:total]
            if crc16(pkt[:-2]) != int.from_bytes(pkt[-2:], "little"):
                continue
            body = unstuff(pkt[7:-2])
            out += self._dispatch(pkt[4], body[0], body[1:])
        return bytes(out)

    def _status(self, motor: DynamixelMotor, data: bytes = b"", error: int = 0) -> bytes:
        payload = stuff(bytes([INST_STATUS, error | motor.error_status]) + data)
        head = HEADER + bytes([motor.id]) + (len(payload) + 2).to_bytes(2, "little")
        crc = crc16(head + payload)
        if self.corrupt_replies > 0:
            self.corrupt_replies -= 1
            crc ^= 0xFFFF
        return head + payload + crc.to_bytes(2, "little")

    def _live(self, motor_id: int) -> DynamixelMotor | None:
        m = self.motors.get(motor_id)
        return m if m is not None and m.responding else None

    def _dispatch(self, motor_id: int, inst: int, params: bytes) -> bytes:
        self.traffic[INSTRUCTION_NAMES.get(inst, f"0x{inst:02x}")] += 1
        if inst == INST_PING:
            ids = sorted(self.motors) if motor_id == BROADCAST_ID else [motor_id]
            return b"".join(
                self._status(m, m.get(m.MODEL_NUMBER).to_bytes(2, "little") + bytes([m.get(m.FIRMWARE)]))
                for i in ids
                if (m := self._live(i))
            )
        if inst in (INST_SYNC_READ, INST_SYNC_WRITE):
            addr = int.from_bytes(params[0:2], "little")
            size = int.from_bytes(params[2:4], "little")
            rest = params[4:]
            if inst == INST_SYNC_READ:
                return b"".join(self._status(m, m.read(addr, size)) for i in rest if (m := self._live(i)))
            for k in range(0, len(rest) - size + 1, size + 1):
                if m := self._live(rest[k]):
                    value = rest[k + 1 : k + 1 + size]
                    self.writes.append((m.id, addr, value))
                    m.write(addr, value)
            return b""
        if inst == INST_WRITE:
            addr = int.from_bytes(params[0:2], "little")
            value = params[2:]
            targets = list(self.motors.values()) if motor_id == BROADCAST_ID else [self._live(motor_id)]
            err = 0
            for t in targets:
                if t is not None and t.responding:
                    err = t.write(addr, value)
                    if not err:
                        self.writes.append((t.id, addr, value))
            m = self._live(motor_id)
            return self._status(m, error=err) if m else b""
        m = self._live(motor_id)
        if m is None:
            return b""
        if inst == INST_READ:
            addr = int.from_bytes(params[0:2], "little")
            size = int.from_bytes(params[2:4], "little")
            return self._status(m, m.read(addr, size))
        return self._status(m, error=ERR_INSTRUCTION)


def koch_bus(leader: bool = False, **motor_kw) -> DynamixelBus:
    """The six servos of a Koch v1.1 follower (XL430 + XL330-M288) or leader (XL330-M077), ids 1..6."""
    models = KOCH_LEADER_MODELS if leader else KOCH_FOLLOWER_MODELS
    return DynamixelBus(
        [DynamixelMotor(i, m, **motor_kw) for i, m in zip(KOCH_MOTORS.values(), models, strict=True)]
    )


def koch_arm(leader: bool = False, **motor_kw) -> SimulatedArm:
    return SimulatedArm(koch_bus(leader, **motor_kw), KOCH_MOTORS)
