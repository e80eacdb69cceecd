"""A fake serial port that answers with a simulated servo bus, wired under the vendor SDKs.

LeRobot's `FeetechMotorsBus` / `DynamixelMotorsBus` talk to the motors through the vendor SDKs'
`PortHandler`, which opens a `serial.Serial` and then only uses `write`, `read`, `in_waiting`, `flush`,
`reset_input_buffer` and `close`. We replace the `serial` module *as the two SDK port handlers see it* with a
shim whose `Serial` opens a `FakeSerialPort` bound to a registered `SimulatedBus`. Everything above the
byte stream (the SDK packet handlers with their checksums/CRCs, timeouts, sync read/write, LeRobot's bus
and robot classes) runs unmodified, so a test exercises the same code a real arm does.

Why not a pty pair (mock_serial)? Responses here are computed synchronously when the request is written,
so no thread has to win a race against the SDK's 50 ms packet timeout on a loaded CI machine.
"""

from __future__ import annotations

import contextlib
import threading
import types
from collections.abc import Iterator

import serial


class SimulatedBus:
    """Anything that turns request bytes into response bytes (one per protocol)."""

    baudrate: int = 1_000_000

    def handle(self, data: bytes) -> bytes:  # pragma: no cover - interface
        raise NotImplementedError


class FakeSerialPort:
    """The subset of `serial.Serial` the SDK port handlers use, backed by a `SimulatedBus`.

    A request written at a baud rate other than the bus's gets no answer, like a real bus, so LeRobot's
    baud-rate scan (`scan_port`, `setup_motor`) behaves as on hardware.
    """

    def __init__(self, bus: SimulatedBus, port: str, baudrate: int) -> None:
        self.bus = bus
        self.port = port
        self.baudrate = baudrate
        self.is_open = True
        self._rx = bytearray()
        self._lock = threading.Lock()
        self.bytes_written = 0

    # --- the serial.Serial surface used by scservo_sdk / dynamixel_sdk -----------------------------------
    def write(self, data) -> int:
        if not self.is_open:
            raise serial.SerialException(f"port {self.port} is closed")
        raw = bytes(data)
        self.bytes_written += len(raw)
        if self.baudrate == self.bus.baudrate:
            reply = self.bus.handle(raw)
            with self._lock:
                self._rx += reply
        return len(raw)

    def read(self, size: int = 1) -> bytes:
        with self._lock:
            out = bytes(self._rx[:size])
            del self._rx[:size]
        return out

    @property
    def in_waiting(self) -> int:
        return len(self._rx)

    def flush(self) -> None:
        """Output flush: nothing is buffered on the way out."""

    def reset_input_buffer(self) -> None:
        with self._lock:
            self._rx.clear()

    def close(self) -> None:
        self.is_open = False


class PortRegistry:
    """Maps port names ("/dev/mock_so101") to simulated buses; opening any other name fails like a real
    missing device (`serial.SerialException`), so no test can ever touch real hardware."""

    def __init__(self) -> None:
        self.buses: dict[str, SimulatedBus] = {}
        self.opened: list[FakeSerialPort] = []

    def add(self, port: str, bus: SimulatedBus) -> str:
        self.buses[port] = bus
        return port

    def remove(self, port: str) -> None:
        self.buses.pop(port, None)

    def open(self, port: str | None = None, baudrate: int = 9600, **_: object) -> FakeSerialPort:
        if port not in self.buses:
            raise serial.SerialException(f"[Errno 2] could not open port {port}: no simulated bus there")
        fake = FakeSerialPort(self.buses[port], port, baudrate)
        self.opened.append(fake)
        return fake

    def serial_shim(self) -> types.SimpleNamespace:
        """A stand-in for the `serial` module: `Serial` opens a fake port, constants come from pyserial."""
        return types.SimpleNamespace(
            Serial=self.open,
            SerialException=serial.SerialException,
            EIGHTBITS=serial.EIGHTBITS,
            PARITY_NONE=serial.PARITY_NONE,
            PARITY_ODD=serial.PARITY_ODD,
            STOPBITS_ONE=serial.STOPBITS_ONE,
            STOPBITS_TWO=serial.STOPBITS_TWO,
        )


def _sdk_port_handler_modules() -> list[types.ModuleType]:
    mods = []
    with contextlib.suppress(ImportError):
        import scservo_sdk.port_handler as scs_ph

        mods.append(scs_ph)
    with contextlib.suppress(ImportError):
        import dynamixel_sdk.port_handler as dxl_ph

        mods.append(dxl_ph)
    return mods


@contextlib.contextmanager
def simulated_ports(registry: PortRegistry | None = None) -> Iterator[PortRegistry]:
    """Route the Feetech and Dynamixel SDKs' serial ports to `registry` for the duration of the block."""
    registry = registry or PortRegistry()
    shim = registry.serial_shim()
    saved = [(mod, mod.serial) for mod in _sdk_port_handler_modules()]
    for mod, _ in saved:
        mod.serial = shim
    try:
        yield registry
    finally:
        for mod, original in saved:
            mod.serial = original
