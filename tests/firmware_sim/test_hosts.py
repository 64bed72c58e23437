"""Hosts carry endpoint bytes over a pty, TCP and sim://; unplug/replug behave like a cable."""

from __future__ import annotations

import os
import socket
import termios
import time
from collections.abc import Iterator
from datetime import datetime

import pytest
import serial

from firmware_sim.faults import FaultyEndpoint
from firmware_sim.hosts import answer_steps, install_sim_url_handler, register_sim, registered_sim
from firmware_sim.hosts.pty import PtyHost
from firmware_sim.hosts.tcp import TcpHost

install_sim_url_handler()


class Echo:
    def __init__(self) -> None:
        self.resets = 0
        self.fed = bytearray()

    def feed(self, data: bytes) -> bytes:
        self.fed += data
        return data.upper()

    def reset(self) -> None:
        self.resets += 1


    def idle(self) -> None:
        pass


def read_exactly(port: serial.SerialBase, size: int, timeout: float = 2.0) -> bytes:
    port.timeout = timeout
    return bytes(port.read(size))


@pytest.fixture
def pty_host() -> Iterator[tuple[PtyHost, Echo]]:
    echo = Echo()
    with PtyHost(echo) as host:
        yield host, echo


def test_pty_host_pumps_bytes_in_raw_mode(pty_host: tuple[PtyHost, Echo]) -> None:
    host, _ = pty_host
    assert os.path.exists(host.slave_path) and host.address == host.slave_path
    with serial.serial_for_url(host.slave_path, baudrate=115200, timeout=2) as port:
        payload = bytes(range(0x00, 0x20)) + b"abc\r\n\x03\x11\x13"  # control bytes must pass untouched
        port.write(payload)
        assert read_exactly(port, len(payload)) == payload.upper()
    attrs = termios.tcgetattr(os.open(host.slave_path, os.O_RDWR | os.O_NOCTTY))
    assert not attrs[3] & termios.ICANON  # the slave stays raw


def test_pty_host_unplug_drops_input_and_replug_resets(pty_host: tuple[PtyHost, Echo]) -> None:
    host, echo = pty_host
    with serial.serial_for_url(host.slave_path, timeout=0.3) as port:
        host.unplug()
        port.write(b"lost")
        assert port.read(4) == b""
        host.replug()
        assert echo.resets == 1
        port.write(b"back")
        assert read_exactly(port, 4) == b"BACK"
    assert b"lost" not in echo.fed


def test_pty_host_honours_split_pacing() -> None:
    faulty = FaultyEndpoint(Echo()).split(times=1)
    with PtyHost(faulty) as host, serial.serial_for_url(host.slave_path, timeout=2) as port:
        port.write(b"xyz")
        assert read_exactly(port, 3) == b"XYZ"
    assert host.bytes_out == 3


def test_tcp_host_serves_one_client_at_a_time() -> None:
    echo = Echo()
    with TcpHost(echo) as host:
        assert host.address == f"socket://127.0.0.1:{host.port}" and host.port > 0
        with socket.create_connection(("127.0.0.1", host.port), timeout=2) as client:
            client.sendall(b"ping")
            assert client.recv(16) == b"PING"
            with socket.create_connection(("127.0.0.1", host.port), timeout=2) as second:
                assert second.recv(16) == b""  # closed at once: the register is busy
            client.sendall(b"still")
            assert client.recv(16) == b"STILL"
        assert host.connections == 1


def test_tcp_host_unplug_refuses_until_replug_on_the_same_port() -> None:
    echo = Echo()
    with TcpHost(echo) as host:
        port = host.port
        client = socket.create_connection(("127.0.0.1", port), timeout=2)
        client.sendall(b"a")
        assert client.recv(4) == b"A"
        host.unplug()
        assert client.recv(4) == b""  # the connection is dropped
        client.close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2)
        host.replug()
        assert host.port == port
        with socket.create_connection(("127.0.0.1", port), timeout=2) as again:
            again.sendall(b"b")
            assert again.recv(4) == b"B"


def test_sim_url_with_a_registered_device_and_unplug() -> None:
    echo = Echo()
    registration = register_sim("Hosts-Echo", echo)
    try:
        assert registered_sim("hosts-echo") is registration
        with serial.serial_for_url("sim://hosts-echo", timeout=0.5) as port:
            port.write(b"hello")
            assert port.in_waiting == 5
            assert port.read(10) == b"HELLO"  # returns what arrived when the timeout passes
            registration.unplug()
            with pytest.raises(serial.SerialException, match="unplugged"):
                port.write(b"x")
        with pytest.raises(serial.SerialException, match="unplugged"):
            serial.serial_for_url("sim://hosts-echo")
        registration.replug()
        with serial.serial_for_url("sim://hosts-echo", timeout=0.5) as port:
            port.write(b"ok")
            assert port.read(2) == b"OK"
    finally:
        registration.close()
    assert registered_sim("hosts-echo") is None


def test_sim_url_delayed_answer_arrives_late_but_whole() -> None:
    faulty = FaultyEndpoint(Echo()).delay(0.2, times=1)
    registration = register_sim("hosts-delay", faulty)
    try:
        with serial.serial_for_url("sim://hosts-delay", timeout=0.05) as port:
            port.write(b"slow")
            assert port.read(4) == b""  # not there yet
            port.reset_input_buffer()  # must not discard what is still on its way
            started = time.monotonic()
            port.timeout = 1
            assert port.read(4) == b"SLOW"
            assert time.monotonic() - started < 0.5
    finally:
        registration.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sim://nosuch", "no sim device"),
        ("sim://shtrih?scenario=nope", "unknown scenario"),
        ("sim://shtrih?colour=red", "unknown option"),
        ("sim://atol?fault=explode", "fault"),
        ("sim://shtrih?speed=fast", "speed|float"),
    ],
)
def test_sim_url_errors_are_serial_exceptions(url: str, message: str) -> None:
    with pytest.raises(serial.SerialException, match=message):
        serial.serial_for_url(url)


def test_sim_url_builds_a_scenario_register_per_open() -> None:
    from agent.drivers.registry import DeviceConnection

    with DeviceConnection("shtrih", "sim://shtrih?scenario=long-shift&speed=1", timeout=0.5) as connection:
        state = connection.poll()
    assert state.shift_age() is not None
    assert abs(state.shift_age().total_seconds() - (23 * 3600 + 40 * 60)) < 120


def test_answer_steps_without_answer_is_empty() -> None:
    class Silent:
        def feed(self, data: bytes) -> bytes:
            return b""

        def reset(self) -> None:
            pass


        def idle(self) -> None:
            pass

    assert answer_steps(Silent(), b"x") == []
    assert answer_steps(Echo(), b"x") == [(0.0, b"X")]


@pytest.mark.parametrize("protocol", ["shtrih", "atol"])
@pytest.mark.parametrize("transport", ["pty", "tcp"])
def test_real_devices_over_real_hosts(protocol: str, transport: str) -> None:
    from agent.drivers.registry import DeviceConnection
    from firmware_sim.clock import ManualClock
    from firmware_sim.devices import make_device
    from firmware_sim.model import RegisterModel

    model = RegisterModel(clock=ManualClock(datetime(2026, 3, 2, 9, 0)))
    model.open_shift()
    device = make_device(protocol, model, tcp=transport == "tcp")
    host = PtyHost(device) if transport == "pty" else TcpHost(device)
    try:
        with DeviceConnection(protocol, host.address, timeout=0.5) as connection:
            state = connection.poll()
    finally:
        host.close()
    assert state.fn.serial == model.fn_serial
    assert state.shift.number == 1


def test_make_device_resolves_lazily_and_rejects_unknown_protocols() -> None:
    from firmware_sim.clock import ManualClock
    from firmware_sim.devices import UnknownProtocol, device_protocols, make_device
    from firmware_sim.model import RegisterModel

    assert device_protocols() == ["atol", "atol2", "shtrih", "shtrih-alt"]
    model = RegisterModel(clock=ManualClock())
    assert make_device("shtrih", model, tcp=True).feed(b"\x05") == b"\x15"  # idle Shtrih NAKs an ENQ
    with pytest.raises(UnknownProtocol, match="speaks atol, atol2, shtrih, shtrih-alt"):
        make_device("mercury", model)
