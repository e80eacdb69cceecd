"""A simulated servo: a register table plus a one-line model of the shaft it drives.

Protocol code (Feetech, Dynamixel) only moves bytes in and out of `SimulatedMotor.read/write`; this module
decides what the bytes mean physically, so writes are visible in later reads and positions move:

* `actual` is the shaft's raw encoder position (ticks), i.e. what the arm really does.
* Present_Position is derived from `actual` and the homing offset with the vendor's formula
  (Feetech: present = actual - offset, mod 4096; Dynamixel: present = actual + offset).
* With torque on, each position sample moves `actual` toward the goal (`tracking` = fraction of the
  remaining error closed per sample, `max_step` = ticks per sample); torque on holds the current pose first,
  like the real servos do.
* With torque off, a `script` (a sequence or a callable of the sample index) plays the human's hand: each
  sample of Present_Position takes the next scripted shaft position.

A "sample" is one read of the Present_Position register (single or sync read): deterministic, no clocks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

ScriptLike = Iterable[float] | Callable[[int], float]
# Bus write logs keep this many recent writes (about 15 minutes of a 6-motor arm at 30 Hz).
WRITE_LOG_SIZE = 200_000


@dataclass(frozen=True)
class Register:
    addr: int
    size: int
    signed: str = ""  # "" unsigned, "sm<bit>" sign-magnitude with sign bit, "2c" two's complement


def encode(value: int, reg: Register) -> int:
    if reg.signed.startswith("sm"):
        bit = int(reg.signed[2:])
        return (-value | (1 << bit)) if value < 0 else value
    if reg.signed == "2c" and value < 0:
        return value + (1 << (8 * reg.size))
    return value


def decode(raw: int, reg: Register) -> int:
    if reg.signed.startswith("sm"):
        bit = int(reg.signed[2:])
        return -(raw & ~(1 << bit)) if raw & (1 << bit) else raw
    if reg.signed == "2c" and raw & (1 << (8 * reg.size - 1)):
        return raw - (1 << (8 * reg.size))
    return raw


class SimulatedMotor:
    """Register table + shaft model. Subclasses give the register addresses and the offset formula."""

    TABLE_SIZE = 256
    RESOLUTION = 4096
    # Register layout; set by subclasses.
    MODEL_NUMBER: Register
    ID: Register
    PRESENT_POSITION: Register
    GOAL_POSITION: Register
    TORQUE_ENABLE: Register
    HOMING_OFFSET: Register
    MIN_LIMIT: Register
    MAX_LIMIT: Register

    def __init__(
        self,
        motor_id: int,
        model_number: int,
        position: float = 2048,
        tracking: float = 1.0,
        max_step: float | None = None,
    ) -> None:
        self.regs = bytearray(self.TABLE_SIZE)
        self.actual = float(position)  # shaft position, raw ticks
        self.tracking = tracking  # fraction of the goal error closed per sample (1.0: reach it at once)
        self.max_step = max_step  # ticks per sample at most (None: no speed limit)
        self.responding = True  # False: the motor is unplugged / dead (no status packets at all)
        self.error_status = 0  # error byte put in every status packet (e.g. overload, overheat)
        self.samples = 0  # Present_Position reads so far
        self._script: Iterator[float] | Callable[[int], float] | None = None
        self._script_start = 0
        self._target: float | None = None  # shaft target while torque is on
        self.set(self.MODEL_NUMBER, model_number)
        self.set(self.ID, motor_id)
        self._factory_defaults()
        self._refresh_present()

    # --- subclass hooks --------------------------------------------------------------------------------
    def _factory_defaults(self) -> None:
        self.set(self.MIN_LIMIT, 0)
        self.set(self.MAX_LIMIT, self.RESOLUTION - 1)

    def present_from_actual(self, actual: float) -> int:
        raise NotImplementedError

    def actual_from_present(self, present: float) -> float:
        raise NotImplementedError

    def goal_bounds(self) -> tuple[int, int] | None:
        """Goal clamp the firmware applies (present frame), or None when it applies none."""
        lo, hi = self.get(self.MIN_LIMIT), self.get(self.MAX_LIMIT)
        return (lo, hi) if lo < hi else None

    def write_denied(self, addr: int, size: int) -> int:
        """Error byte to answer a write with when the firmware refuses it (0: accepted)."""
        return 0

    # --- typed register access (what tests and the shaft model use) ------------------------------------
    @property
    def id(self) -> int:
        return self.get(self.ID)

    def get(self, reg: Register) -> int:
        raw = int.from_bytes(self.regs[reg.addr : reg.addr + reg.size], "little")
        return decode(raw, reg)

    def set(self, reg: Register, value: int) -> None:
        raw = encode(int(value), reg) & ((1 << (8 * reg.size)) - 1)
        self.regs[reg.addr : reg.addr + reg.size] = raw.to_bytes(reg.size, "little")

    @property
    def torque_enabled(self) -> bool:
        return bool(self.get(self.TORQUE_ENABLE))

    @property
    def present(self) -> int:
        return self.present_from_actual(self.actual)

    def script(self, positions: ScriptLike | None) -> None:
        """Play `positions` (raw shaft ticks) on the following samples while torque is off; a sequence holds
        its last value when exhausted, a callable gets the sample index counted from now."""
        self._script_start = self.samples
        if positions is None or callable(positions):
            self._script = positions
        else:
            self._script = iter(list(positions))

    # --- bus-facing byte access ------------------------------------------------------------------------
    def read(self, addr: int, size: int) -> bytes:
        pp = self.PRESENT_POSITION
        if addr < pp.addr + pp.size and pp.addr < addr + size:
            self.sample()
        return bytes(self.regs[addr : addr + size])

    def write(self, addr: int, data: bytes) -> int:
        denied = self.write_denied(addr, len(data))
        if denied:
            return denied
        was_on = self.torque_enabled
        self.regs[addr : addr + len(data)] = data
        te, gp = self.TORQUE_ENABLE, self.GOAL_POSITION
        if addr <= te.addr < addr + len(data):
            if self.torque_enabled and not was_on:  # torque on: hold where the shaft is now
                self._target = self.actual
                self.set(gp, self.present)
            elif not self.torque_enabled:
                self._target = None
        if addr < gp.addr + gp.size and gp.addr < addr + len(data) and self.torque_enabled:
            goal = self.get(gp)
            bounds = self.goal_bounds()
            if bounds is not None:
                goal = min(max(goal, bounds[0]), bounds[1])
            self._target = self.actual_from_present(goal)
        return 0

    # --- shaft model -----------------------------------------------------------------------------------
    def sample(self) -> None:
        """Advance the shaft by one position sample, then refresh Present_Position."""
        if self.torque_enabled and self._target is not None:
            step = (self._target - self.actual) * self.tracking
            if self.max_step is not None:
                step = max(-self.max_step, min(self.max_step, step))
            self.actual += step
        elif self._script is not None:
            if callable(self._script):
                self.actual = float(self._script(self.samples - self._script_start))
            else:
                nxt = next(self._script, None)
                if nxt is not None:
                    self.actual = float(nxt)
        self.samples += 1
        self._refresh_present()

    def _refresh_present(self) -> None:
        self.set(self.PRESENT_POSITION, self.present)


class SimulatedArm:
    """Named motors on one simulated bus: the arm a test scripts by joint name."""

    def __init__(self, bus, names: dict[str, int]) -> None:
        self.bus = bus
        self.names = dict(names)  # motor name -> id
        self.port: str | None = None  # serial port name once registered with a PortRegistry

    def __getitem__(self, name: str) -> SimulatedMotor:
        return self.bus.motors[self.names[name]]

    def script(self, positions: dict[str, ScriptLike]) -> None:
        """Scripted shaft positions (raw ticks) per joint; joints not named keep still."""
        for name, seq in positions.items():
            self[name].script(seq)

    def actual(self) -> dict[str, float]:
        return {name: self[name].actual for name in self.names}

    def present(self) -> dict[str, int]:
        return {name: self[name].present for name in self.names}

    def set_actual(self, positions: dict[str, float]) -> None:
        for name, pos in positions.items():
            self[name].actual = float(pos)
            self[name]._refresh_present()
