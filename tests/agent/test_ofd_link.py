"""The agent's OFD connect test against a real TCP listener on loopback: an open port, a closed
port ("no internet"), a name that never resolves ("wrong host"); the rate limit and the
guarantee that no payload is ever sent."""

from __future__ import annotations

import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from agent.config import load_config
from agent.ofd_link import OfdLinkMonitor, check_ofd_link
from agent.runtime import AgentRuntime, open_driver
from firmware_sim.devices import make_device
from firmware_sim.hosts import install_sim_url_handler, register_sim, unregister_sim
from firmware_sim.model import RegisterModel
from protocol.kkt.vocabulary import Vendor
from protocol.mqtt.wire import OfdLinkCheck, OfdState, RegisterState

sys.path.insert(0, str(Path(__file__).parents[1]))
from netkit import free_port, wait_for


class Listener:
    """A loopback TCP server that records what each accepted connection sent before closing."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.received: list[bytes] = []
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                conn.settimeout(2.0)
                data = b""
                try:
                    while chunk := conn.recv(1024):
                        data += chunk
                except OSError:
                    pass
                self.received.append(data)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


def test_open_port_connects_and_sends_nothing(listener: Listener) -> None:
    result = check_ofd_link("127.0.0.1", listener.port)
    assert (result.resolved, result.connected, result.error) == (True, True, None)
    assert result.elapsed_ms is not None and result.elapsed_ms < 3000
    wait_for(lambda: listener.received, 5, "the listener to see the connection close")
    assert listener.received == [b""]  # the handshake only, never a payload


def test_localhost_name_resolves_and_connects(listener: Listener) -> None:
    result = check_ofd_link("localhost", listener.port)
    assert result.resolved and result.connected


def test_closed_port_is_no_internet() -> None:
    result = check_ofd_link("127.0.0.1", free_port())
    assert result.resolved and not result.connected
    assert result.error is not None and result.error.startswith("TCP:")


def test_unresolvable_host_is_reported_as_dns() -> None:
    result = check_ofd_link("ofd.kassa-monitor.invalid", 7777)
    assert not result.resolved and not result.connected
    assert result.error is not None and result.error.startswith("DNS:")


def _state(host: str | None, port: int | None) -> RegisterState:
    return RegisterState(vendor=Vendor.SHTRIH, protocol="shtrih", serial="1", ofd=OfdState(server_host=host, server_port=port))


def test_monitor_checks_in_background_and_attaches_the_result(listener: Listener) -> None:
    monitor = OfdLinkMonitor()
    monitor.attach(_state("127.0.0.1", listener.port))  # starts the check on its own thread
    assert monitor.wait_idle(5)
    attached = monitor.attach(_state("127.0.0.1", listener.port)).ofd.link_check
    assert attached is not None and attached.connected and attached.port == listener.port


def test_monitor_checks_one_target_at_most_once_per_interval(listener: Listener) -> None:
    monitor = OfdLinkMonitor(interval=60)
    for _ in range(5):
        monitor.attach(_state("127.0.0.1", listener.port))
        assert monitor.wait_idle(5)
    wait_for(lambda: listener.accepted, 5, "the first check's connection")
    assert listener.accepted == 1
    other = Listener()  # a different server is checked on its own schedule
    try:
        monitor.attach(_state("127.0.0.1", other.port))
        assert monitor.wait_idle(5)
        wait_for(lambda: other.accepted, 5, "the second server's check")
    finally:
        other.close()


def test_a_slow_check_never_blocks_attach() -> None:
    release = threading.Event()

    def slow(host: str, port: int) -> OfdLinkCheck:
        release.wait(5)
        return OfdLinkCheck(host=host, port=port, resolved=True, connected=True, checked_at=datetime.now().astimezone())

    monitor = OfdLinkMonitor(slow)
    started = time.monotonic()
    monitor.attach(_state("ofd.example", 7777))
    monitor.attach(_state("ofd.example", 7777))  # still running: not started twice
    assert time.monotonic() - started < 0.5
    release.set()
    assert monitor.wait_idle(5)


def test_no_server_known_means_no_check() -> None:
    calls: list[tuple[str, int]] = []
    monitor = OfdLinkMonitor(lambda h, p: calls.append((h, p)) or check_ofd_link(h, p))
    state = _state(None, None)
    assert monitor.attach(state) is state
    assert calls == []


def test_the_agent_checks_a_server_shared_by_two_registers_once_and_both_carry_the_result(
    mqtt_broker: Any, listener: Listener, tmp_path: Path
) -> None:
    """Two simulated Shtrih registers set (table 19) to the same OFD server: the runtime's one
    monitor connects once, both published states carry the check, and polling never waited."""
    install_sim_url_handler()
    names = []
    for index in range(2):
        model = RegisterModel(clock=lambda: datetime.now().replace(microsecond=0), serial=f"00123456789012{index}0")
        model.ofd_host, model.ofd_port = "127.0.0.1", listener.port
        names.append(register_sim(f"ofd-link-{uuid.uuid4().hex[:6]}", make_device("shtrih", model)).name)
    config = load_config(None, env={}, overrides={
        "agent_id": "agent-ofd-link", "heartbeat": 0.3,
        "broker": {"url": mqtt_broker.url},
        "outbox": {"path": str(tmp_path / "outbox.sqlite")},
        "devices": [{"protocol": "shtrih", "url": f"sim://{name}", "poll_interval": 0.1, "register_id": f"kkt-{i}"}
                    for i, name in enumerate(names)],
    })  # fmt: skip
    runtime = AgentRuntime(config, opener=open_driver)
    runtime.start()
    try:
        for worker in runtime.workers:
            wait_for(lambda w=worker: w.state and w.state.ofd.link_check, 10, f"{worker.register_id}: the link check")
        time.sleep(0.5)  # more polls: no new check inside the minute
        for worker in runtime.workers:
            check = worker.state.ofd.link_check
            assert check.connected and (check.host, check.port) == ("127.0.0.1", listener.port)
        assert listener.accepted == 1
    finally:
        runtime.stop(timeout=2)
        for name in names:
            unregister_sim(name)
