"""A simulated Feetech STS/SMS bus (protocol 0) behind a fake serial port.

Packets, as the real servos speak them (little-endian words, checksum = ~sum(id..params) & 0xFF):

    request: FF FF id len instr params... chk         len = len(params) + 2
    status : FF FF id len error data... chk           len = len(data) + 2

Handled instructions: PING (single and broadcast), READ, WRITE, SYNC_READ (one status per listed id),
SYNC_WRITE (no status). Anything else gets an instruction-error status. Register addresses come from
LeRobot's own table for the STS3215 (the motor in SO-100/SO-101), so the mock and LeRobot agree by
construction on *where* things are; the mock decides independently *what they do* (offset formula,
goal clamping, torque hold, scripted motion).
"""

from __future__ import annotations

from collections import Counter, deque

from lerobot.motors.feetech.tables import MODEL_NUMBER_TABLE, STS_SMS_SERIES_CONTROL_TABLE

from tests.mocks.serial_port import SimulatedBus
from tests.mocks.servo import WRITE_LOG_SIZE, Register, SimulatedArm, SimulatedMotor

BROADCAST_ID = 0xFE
INST_PING, INST_READ, INST_WRITE, INST_SYNC_READ, INST_SYNC_WRITE = 0x01, 0x02, 0x03, 0x82, 0x83
ERR_INSTRUCTION = 0x40
INSTRUCTION_NAMES = {
    INST_PING: "ping",
    INST_READ: "read",
    INST_WRITE: "write",
    INST_SYNC_READ: "sync_read",
    INST_SYNC_WRITE: "sync_write",
}

SO101_MOTORS = {
    "shoulder_pan": 1,
    "shoulder_lift": 2,
    "elbow_flex": 3,
    "wrist_flex": 4,
    "wrist_roll": 5,
    "gripper": 6,
}


def _reg(name: str, signed: str = "") -> Register:
    addr, size = STS_SMS_SERIES_CONTROL_TABLE[name]
    return Register(addr, size, signed)


def checksum(body: bytes | list[int]) -> int:
    return ~sum(body) & 0xFF


class FeetechMotor(SimulatedMotor):
    """An STS3215: 12-bit encoder, present = (actual - homing_offset) mod 4096, goal clamped to the
    min/max position limits in position mode, homing offset sign-magnitude on bit 11."""

    MODEL_NUMBER = _reg("Model_Number")
    ID = _reg("ID")
    PRESENT_POSITION = _reg("Present_Position", "sm15")
    GOAL_POSITION = _reg("Goal_Position", "sm15")
    TORQUE_ENABLE = _reg("Torque_Enable")
    HOMING_OFFSET = _reg("Homing_Offset", "sm11")
    MIN_LIMIT = _reg("Min_Position_Limit")
    MAX_LIMIT = _reg("Max_Position_Limit")
    OPERATING_MODE = _reg("Operating_Mode")
    PHASE = _reg("Phase")
    FIRMWARE_MAJOR = _reg("Firmware_Major_Version")
    FIRMWARE_MINOR = _reg("Firmware_Minor_Version")
    RETURN_DELAY = _reg("Return_Delay_Time")
    LOCK = _reg("Lock")

    def __init__(self, motor_id: int, model: str = "sts3215", firmware: tuple[int, int] = (3, 10), **kw):
        self.firmware = firmware
        super().__init__(motor_id, MODEL_NUMBER_TABLE[model], **kw)

    def _factory_defaults(self) -> None:
        super()._factory_defaults()
        self.set(self.FIRMWARE_MAJOR, self.firmware[0])
        self.set(self.FIRMWARE_MINOR, self.firmware[1])
        self.set(self.RETURN_DELAY, 250)  # factory: 500 us; LeRobot's configure_motors sets 0
        self.set(self.PHASE, 0x10)  # factory multi-turn feedback bit; LeRobot clears it for the STS3215
        self.set(self.LOCK, 1)

    def present_from_actual(self, actual: float) -> int:
        return int(round(actual - self.get(self.HOMING_OFFSET))) % self.RESOLUTION

    def actual_from_present(self, present: float) -> float:
        return float((present + self.get(self.HOMING_OFFSET)) % self.RESOLUTION)

    def goal_bounds(self) -> tuple[int, int] | None:
        if self.get(self.OPERATING_MODE) != 0:
            return None
        return super().goal_bounds()


class FeetechBus(SimulatedBus):
    """Motors by id on one Feetech protocol-0 bus. `traffic` counts instructions by name; `writes` keeps
    the recent (id, register address, value bytes) writes, sync writes included."""

    def __init__(self, motors: list[FeetechMotor], baudrate: int = 1_000_000) -> None:
        self.motors: dict[int, FeetechMotor] = {m.id: m for m in motors}
        self.baudrate = baudrate
        self.traffic: Counter[str] = Counter()
        self.writes: deque[tuple[int, int, bytes]] = deque(maxlen=WRITE_LOG_SIZE)
        self.corrupt_replies = 0  # the next N status packets get a wrong checksum (noisy cable)
        self._buf = bytearray()

    # --- framing ---------------------------------------------------------------------------------------
    def handle(self, data: bytes) -> bytes:
        self._buf += data
        out = bytearray()
        while True:
            start = self._buf.find(b"\xff\xff")
            if start < 0:
                self._buf.clear()
                break
            del self._buf[:start]
            if len(self._buf) < 4:
                break
            length = self._buf[3]
            total = length + 4
            if len(self._buf) < total:
                break
            pkt = bytes(self._buf[:total])
            del self._buf[:total]
            if checksum(pkt[2:-1]) != pkt[-1]:
                continue  # a real servo silently drops a packet with a bad checksum
            out += self._dispatch(pkt[2], pkt[4], pkt[5:-1])
        return bytes(out)

    def _status(self, motor: FeetechMotor, data: bytes = b"", error: int = 0) -> bytes:
        body = bytes([motor.id, len(data) + 2, error | motor.error_status]) + data
        chk = checksum(body)
        if self.corrupt_replies > 0:
            self.corrupt_replies -= 1
            chk ^= 0xFF
        return b"\xff\xff" + body + bytes([chk])

    def _live(self, motor_id: int) -> FeetechMotor | None:
        m = self.motors.get(motor_id)
        return m if m is not None and m.responding else None

    # --- instructions ----------------------------------------------------------------------------------
    def _dispatch(self, motor_id: int, inst: int, params: bytes) -> bytes:
        self.traffic[INSTRUCTION_NAMES.get(inst, f"0x{inst:02x}")] += 1
        if inst == INST_PING:
            ids = sorted(self.motors) if motor_id == BROADCAST_ID else [motor_id]
            return b"".join(self._status(m) for i in ids if (m := self._live(i)))
        if inst == INST_SYNC_READ:
            addr, size, ids = params[0], params[1], params[2:]
            return b"".join(self._status(m, m.read(addr, size)) for i in ids if (m := self._live(i)))
        if inst == INST_SYNC_WRITE:
            addr, size = params[0], params[1]
            body = params[2:]
            for k in range(0, len(body) - size + 1, size + 1):
                if m := self._live(body[k]):
                    value = body[k + 1 : k + 1 + size]
                    self.writes.append((m.id, addr, value))
                    m.write(addr, value)
            return b""
        m = self._live(motor_id) if motor_id != BROADCAST_ID else None
        if inst == INST_WRITE:
            targets = list(self.motors.values()) if motor_id == BROADCAST_ID else ([m] if m else [])
            for t in targets:
                self.writes.append((t.id, params[0], params[1:]))
                err = t.write(params[0], params[1:])
            return self._status(m, error=err) if m else b""
        if m is None:
            return b""
        if inst == INST_READ:
            return self._status(m, m.read(params[0], params[1]))
        return self._status(m, error=ERR_INSTRUCTION)


def so101_bus(**motor_kw) -> FeetechBus:
    """The six STS3215 of an SO-100/SO-101 arm (ids 1..6), shafts mid-range (2048)."""
    return FeetechBus([FeetechMotor(i, **motor_kw) for i in SO101_MOTORS.values()])


def so101_arm(**motor_kw) -> SimulatedArm:
    """An SO-100/SO-101 (follower or leader: same motors and ids) addressable by joint name."""
    return SimulatedArm(so101_bus(**motor_kw), SO101_MOTORS)
