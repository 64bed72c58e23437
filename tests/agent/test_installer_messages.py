"""What ``kassa-agent probe`` and ``detect`` tell an installer when something is wrong, each naming
the cause: a register of the other protocol on TCP (no baud rate there), a host name that does not
resolve, HOST:PORT without ``socket://``, a connection the other side drops, the reader of
``probe --json`` going away, and a network register found by ``detect --host`` on its known port.
Against the simulator's TCP host and real loopback listeners (subprocesses of ``kassa-agent``)."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from firmware_sim.clock import ManualClock
from firmware_sim.devices import make_device
from firmware_sim.hosts.tcp import TcpHost
from firmware_sim.model import RegisterModel

TIMEOUT = 60


def kassa_agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=TIMEOUT)


def loopback_address() -> str:
    """A loopback address of its own (127.x.y.z), so the fixed register ports never collide with other tests."""
    return f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"


@contextmanager
def simulated(protocol: str, port: int = 0, host: str = "127.0.0.1") -> Iterator[TcpHost]:
    sim = TcpHost(make_device(protocol, RegisterModel(clock=ManualClock())), port=port, host=host)
    try:
        yield sim
    finally:
        sim.close()


@contextmanager
def hanging_up_listener() -> Iterator[str]:
    """Accepts every connection and closes it at once (a proxy in front of an unreachable host does that)."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"socket://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        server.close()


def test_the_other_protocol_on_tcp_is_named_without_a_baud_rate() -> None:
    with simulated("atol") as sim:
        wrong = kassa_agent("probe", sim.address, "--protocol", "shtrih", "--timeout", "0.3", "--retries", "0")
        right = kassa_agent("probe", sim.address, "--timeout", "0.3")  # no protocol: both are tried
    assert wrong.returncode == 4
    assert "accepts the connection but does not answer in the Shtrih protocol" in wrong.stderr
    fix = next(line for line in wrong.stderr.splitlines() if line.startswith("fix:"))
    assert "--protocol atol " in f"{fix} " and "--protocol shtrih " not in f"{fix} "  # the others, not the one tried
    assert "baud" not in wrong.stderr
    assert right.returncode == 0, right.stderr


def test_a_silent_tcp_device_after_every_protocol_names_the_port_not_a_baud_rate() -> None:
    server = socket.create_server(("127.0.0.1", 0))  # accepts (backlog) and never answers
    try:
        url = f"socket://127.0.0.1:{server.getsockname()[1]}"
        silent = kassa_agent("probe", url, "--timeout", "0.2", "--retries", "0")
    finally:
        server.close()
    assert silent.returncode == 4
    assert "does not answer in the Shtrih, Shtrih alternative-link, ATOL or ATOL v2 protocol" in silent.stderr
    assert "Shtrih 7778 or 12345, ATOL 5555" in silent.stderr and "baud" not in silent.stderr


def test_a_host_name_that_does_not_resolve_says_so() -> None:
    result = kassa_agent("probe", "socket://kassa-17.invalid:7778")
    assert result.returncode == 3
    assert "the host name 'kassa-17.invalid' does not resolve" in result.stderr
    assert "Unknown error" not in result.stderr and "IP address" in result.stderr


def test_host_and_port_without_the_scheme_suggest_socket_url() -> None:
    result = kassa_agent("probe", "127.0.0.1:5585")
    assert result.returncode == 3
    assert "looks like a network address" in result.stderr
    assert "socket://127.0.0.1:5585" in result.stderr and "cable" not in result.stderr


def test_a_dropped_connection_in_a_one_shot_probe_says_what_to_check() -> None:
    with hanging_up_listener() as url:
        result = kassa_agent("probe", url, "--protocol", "shtrih", "--timeout", "0.3")
    assert result.returncode == 3, result.stderr
    assert "the other side closed the connection" in result.stderr
    assert "next poll" not in result.stderr and "Shtrih 7778 or 12345, ATOL 5555" in result.stderr


def test_probe_json_into_a_closed_pipe_ends_quietly() -> None:
    with simulated("shtrih") as sim:
        process = subprocess.Popen(
            [sys.executable, "-m", "agent", "probe", sim.address, "--protocol", "shtrih", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert process.stdout is not None
        process.stdout.close()  # `| head` that has already gone
        _, stderr = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 141
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr


@pytest.mark.parametrize(("protocol", "port"), [("atol", 5555), ("shtrih", 7778)])
def test_detect_host_finds_a_network_register_on_its_known_port(protocol: str, port: int) -> None:
    host = loopback_address()
    with simulated(protocol, port=port, host=host):
        result = kassa_agent("detect", "--host", host, "--json", "--timeout", "0.3")
    assert result.returncode == 0, result.stderr
    found = {f["port"]: f for f in json.loads(result.stdout)}
    url = f"socket://{host}:{port}"
    assert set(found) == {f"socket://{host}:{p}" for p in (7778, 12345, 5555)}
    assert found[url]["protocol"] == protocol and found[url]["probe_command"] == f"kassa-agent probe {url} --protocol {protocol}"
    assert [f["protocol"] for u, f in found.items() if u != url] == [None, None]
    assert f"{url}: trying {protocol}" in result.stderr  # progress, likeliest protocol first


def test_detect_host_that_does_not_resolve_is_said_once() -> None:
    result = kassa_agent("detect", "--host", "kassa-17.invalid")
    assert result.returncode == 1
    assert result.stdout.count("does not resolve") == 1 and "IP address" in result.stdout
