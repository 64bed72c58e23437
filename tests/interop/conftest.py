"""The interoperability suite: the simulator driven byte by byte as a foreign client would.

Nothing here uses the agent's drivers. Each test writes the bytes a third-party client writes
(pyserial on a serial device path, or a TCP socket URL), reads the device's bytes with
deadlines, and checks them against the line of ``specs/kkt-protocols.md`` its docstring quotes
(``§section: «quote»``; ``test_spec_quotes`` checks the quotes exist when the spec is at hand).
Every case runs over both transports: a pty (serial) and TCP.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime

import pytest
import serial

from firmware_sim.endpoint import DeviceEndpoint
from firmware_sim.hosts.pty import PtyHost
from firmware_sim.hosts.tcp import TcpHost
from firmware_sim.model import RegisterModel

TRANSPORTS = ("pty", "tcp")
READ_TIMEOUT = 3.0  # generous: the machine is shared; a correct device answers in milliseconds


def make_model() -> RegisterModel:
    """An ordinary fiscal register with an open shift and one unsent receipt."""
    model = RegisterModel(
        clock=lambda: datetime(2026, 11, 27, 15, 30, 0),
        serial="0012345678901234",
        model_name="Interop register",
        fn_serial="9999078900012345",
        fn_valid_until=date(2027, 6, 1),
    )
    model.open_shift()
    model.deliver_to_ofd()
    model.sell()
    return model


@dataclass
class ForeignClient:
    """Raw bytes over a pyserial port: what an independent client library does."""

    port: serial.SerialBase
    received: bytearray = field(default_factory=bytearray)

    def send(self, data: bytes | str) -> None:
        self.port.write(bytes.fromhex(data) if isinstance(data, str) else data)

    def read(self, size: int, timeout: float = READ_TIMEOUT) -> bytes:
        """Exactly ``size`` bytes, or fail naming what did arrive."""
        deadline = time.monotonic() + timeout
        while len(self.received) < size:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"wanted {size} bytes, got {bytes(self.received).hex(' ') or 'nothing'}")
            self.port.timeout = min(left, 0.2)
            self.received += self.port.read(size - len(self.received))
        out = bytes(self.received[:size])
        del self.received[:size]
        return out

    def read_until(self, done: Callable[[bytes], bool], timeout: float = READ_TIMEOUT) -> bytes:
        """Bytes until ``done(bytes so far)``; fails with what arrived after ``timeout``."""
        deadline = time.monotonic() + timeout
        got = bytearray()
        while not done(bytes(got)):
            got += self.read(1, max(0.0, deadline - time.monotonic()))
        return bytes(got)

    def silent_for(self, seconds: float) -> bool:
        """True when nothing arrives for ``seconds`` (what arrived is kept for the next read)."""
        self.port.timeout = seconds
        chunk = self.port.read(1)
        self.received += chunk
        return not chunk


MakeDevice = Callable[[bool], DeviceEndpoint]  # tcp → the device (network quirks when True)


@dataclass
class Simulator:
    """A device endpoint behind a real transport, and a foreign client connected to it."""

    device: DeviceEndpoint
    transport: str
    client: ForeignClient


@pytest.fixture(params=TRANSPORTS)
def connect(request: pytest.FixtureRequest) -> Iterator[Callable[[MakeDevice], Simulator]]:
    """``connect(make)`` → ``make(tcp)``'s device served over this test's transport, a client attached."""
    transport: str = request.param
    opened: list[tuple[object, serial.SerialBase]] = []

    def attach(make: MakeDevice) -> Simulator:
        device = make(transport == "tcp")
        host: PtyHost | TcpHost = PtyHost(device) if transport == "pty" else TcpHost(device)
        port = serial.serial_for_url(host.address, baudrate=115200, timeout=READ_TIMEOUT)
        opened.append((host, port))
        return Simulator(device, transport, ForeignClient(port))

    yield attach
    for host, port in opened:
        port.close()
        host.close()  # type: ignore[attr-defined]
