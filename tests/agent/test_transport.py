"""SerialLink: every URL through serial_for_url, failures as typed errors that carry the fix."""

from __future__ import annotations

import errno
import os
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import serial

from agent.drivers import transport
from agent.drivers.link import LinkClosed, LinkError, PortNotFound, PortPermissionDenied
from agent.drivers.transport import SerialLink, open_link, register_url_handlers
from protocol.kkt.state import DRIVER_PROTOCOLS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_missing_port_is_port_not_found_with_the_detect_hint(tmp_path: Path) -> None:
    missing = str(tmp_path / "ttyACM7")
    with pytest.raises(PortNotFound) as error:
        SerialLink(missing).open()
    assert f"{missing} does not exist" in str(error.value)
    assert "cable plugged in" in error.value.hint and "kassa-agent detect" in error.value.hint


def test_permission_denied_names_the_dialout_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = tmp_path / "ttyS9"
    port.write_bytes(b"")
    port.chmod(0)
    if os.geteuid() == 0:  # root opens anything: raise what pyserial raises for EACCES instead
        def denied(url: str, **kwargs: Any) -> None:
            raise serial.SerialException(errno.EACCES, f"could not open port {url}: [Errno 13] Permission denied")

        monkeypatch.setattr(transport.serial, "serial_for_url", denied)
    with pytest.raises(PortPermissionDenied) as error:
        SerialLink(str(port)).open()
    assert f"permission denied on {port}" in str(error.value)
    assert "sudo usermod -aG dialout $USER" in error.value.hint


def test_refused_socket_is_port_not_found_with_a_network_hint() -> None:
    url = f"socket://127.0.0.1:{free_port()}"
    with pytest.raises(PortNotFound) as error:
        SerialLink(url).open()
    assert "nothing accepts connections" in str(error.value)
    assert "7778" in error.value.hint and "5555" in error.value.hint


def test_unknown_scheme_is_a_link_error() -> None:
    with pytest.raises(LinkError, match="unknown URL scheme"):
        SerialLink("gopher://register").open()


def test_url_handlers_from_entry_points_are_registered_once() -> None:
    register_url_handlers()  # may have run already: the first open of a sim:// URL does it
    assert "firmware_sim.hosts" in serial.protocol_handler_packages
    assert register_url_handlers() == []
    assert serial.protocol_handler_packages.count("firmware_sim.hosts") == 1


def test_loop_url_reads_return_what_arrived_at_the_timeout() -> None:
    link = SerialLink("loop://")
    link.open()
    try:
        link.write(b"\x05")
        assert link.read(10, 0.05) == b"\x05"
        assert link.read(1, 0.01) == b""
        link.write(b"junk")
        link.discard_input()
        assert link.read(4, 0.01) == b""
    finally:
        link.close()
    assert not link.is_open
    with pytest.raises(LinkClosed):
        link.read(1, 0.01)


def test_sim_url_works_through_serial_for_url() -> None:
    from firmware_sim.clock import ManualClock
    from firmware_sim.devices import make_device
    from firmware_sim.hosts import register_sim
    from firmware_sim.model import RegisterModel

    registration = register_sim("transport-shtrih", make_device("shtrih", RegisterModel(clock=ManualClock())))
    try:
        link = open_link("sim://transport-shtrih", 115200)
        assert link.is_open
        link.write(b"\x05")  # ENQ: an idle Shtrih answers NAK (specs §1.2)
        assert link.read(1, 0.5) == b"\x15"
        link.close()
    finally:
        registration.close()


def test_dropped_tcp_connection_mid_session_is_link_closed() -> None:
    from firmware_sim.clock import ManualClock
    from firmware_sim.devices import make_device
    from firmware_sim.hosts.tcp import TcpHost
    from firmware_sim.model import RegisterModel

    model = RegisterModel(clock=ManualClock(datetime(2026, 3, 2, 9, 0)))
    with TcpHost(make_device("shtrih", model, tcp=True)) as host:
        link = SerialLink(host.address)
        link.open()
        link.write(b"\x05")
        assert link.read(1, 1.0) == b"\x15"
        host.unplug()
        with pytest.raises(LinkClosed) as error:
            for _ in range(3):  # the first write may still succeed into the socket buffer
                link.write(b"\x05")
                link.read(1, 0.5)
        assert "lost" in str(error.value)
        assert not link.is_open


def test_open_link_chooses_usb_for_usb_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    import agent.drivers.usb as usb

    opened: list[str] = []

    class FakeUsbLink:
        def __init__(self, url: str) -> None:
            self.url = url
            self.is_open = False

        def open(self) -> None:
            opened.append(self.url)
            self.is_open = True

    monkeypatch.setattr(usb, "UsbLink", FakeUsbLink)
    link = open_link("usb://2912:0005")
    assert isinstance(link, FakeUsbLink) and opened == ["usb://2912:0005"]
    assert isinstance(open_link("loop://"), SerialLink)


def test_registry_resolves_lazily_and_names_known_protocols(monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.drivers import registry

    assert registry.available_protocols() == sorted(DRIVER_PROTOCOLS)  # what the collector accepts too
    assert registry.get_session_class("SHTRIH").protocol == "shtrih"
    assert registry.get_session_class("atol").protocol == "atol"
    with pytest.raises(registry.UnknownProtocol, match="known protocols are atol, atol2, shtrih, shtrih-alt"):
        registry.get_session_class("mercury")
    monkeypatch.setitem(registry.SESSION_CLASSES, "broken", "agent.drivers.no_such_module:Session")
    with pytest.raises(registry.DriverUnavailable, match="broken driver"):
        registry.DeviceConnection("broken", "loop://")


def test_device_connection_opens_lazily_and_reopens_after_a_link_error() -> None:
    from agent.drivers.registry import open_session

    connection = open_session("shtrih", "gopher://nowhere", timeout=0.05)
    assert connection.link is None and connection.baudrate == 115200  # nothing opened yet
    for _ in range(2):  # each poll tries to open again and fails the same typed way
        with pytest.raises(LinkError, match="unknown URL scheme"):
            connection.poll()
        assert connection.link is None
