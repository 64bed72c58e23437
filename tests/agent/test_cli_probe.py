"""``kassa-agent probe`` / ``detect`` as subprocesses against ``kassa-sim`` subprocesses (pty and TCP)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest

TIMEOUT = 20


@contextmanager
def kassa_sim(*args: str) -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "firmware_sim", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        address = process.stdout.readline().strip()
        assert address, process.stderr.read() if process.stderr else ""
        yield address
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=TIMEOUT)
        assert process.returncode == 0, stderr
        assert "stopped" in stderr


def kassa_agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=TIMEOUT
    )


@pytest.mark.parametrize(
    ("protocol", "transport", "scenario"),
    [("shtrih", "pty", "long-shift"), ("shtrih", "tcp", "ofd-backlog"), ("atol", "pty", "ofd-backlog"), ("atol", "tcp", "long-shift")],
)
def test_probe_json_reads_the_scenario(protocol: str, transport: str, scenario: str) -> None:
    with kassa_sim("--protocol", protocol, "--transport", transport, "--scenario", scenario) as address:
        assert address.startswith("/dev/") if transport == "pty" else address.startswith("socket://127.0.0.1:")
        result = kassa_agent("probe", address, "--protocol", protocol, "--json")
    assert result.returncode == 0, result.stderr
    state = json.loads(result.stdout)
    assert state["protocol"] == protocol
    assert state["read_at"] is not None
    clock = datetime.fromisoformat(state["register_clock"])
    if scenario == "long-shift":
        opened = datetime.fromisoformat(state["shift"]["opened_at"])
        assert abs(clock - opened - timedelta(hours=23, minutes=40)) < timedelta(minutes=2)
        assert state["shift"]["status"] == "open"
    else:
        assert state["ofd"]["unsent_count"] == 40  # what the scenario's text says
        assert state["ofd"]["transport_connected"] is False
        oldest = datetime.fromisoformat(state["ofd"]["first_unsent_at"])
        assert abs(clock - oldest - timedelta(days=20)) < timedelta(minutes=2)


@pytest.mark.parametrize("protocol", ["shtrih", "atol"])
def test_probe_without_protocol_finds_it_and_prints_a_table(protocol: str) -> None:
    with kassa_sim("--protocol", protocol, "--transport", "pty", "--scenario", "paper-out") as address:
        result = kassa_agent("probe", address, "--timeout", "0.3")
    assert result.returncode == 0, result.stderr
    assert f"register            {protocol}:" in result.stdout
    assert "shift               open" in result.stdout
    assert "ФН valid until" in result.stdout


def test_probe_errors_print_cause_and_fix(tmp_path: Path) -> None:
    missing = kassa_agent("probe", str(tmp_path / "ttyACM3"))
    assert missing.returncode == 3
    assert "does not exist" in missing.stderr and "fix:" in missing.stderr and "kassa-agent detect" in missing.stderr
    no_args = kassa_agent("probe")
    assert no_args.returncode == 2 and "fix:" in no_args.stderr
    with kassa_sim("--protocol", "shtrih", "--transport", "pty", "--fault", "drop") as address:
        silent = kassa_agent("probe", address, "--timeout", "0.1", "--retries", "0")
    assert silent.returncode == 4
    assert "no register answered" in silent.stderr and "fix:" in silent.stderr


def test_detect_finds_both_registers_and_prints_the_probe_command() -> None:
    with kassa_sim("--protocol", "shtrih", "--transport", "pty") as shtrih, kassa_sim(
        "--protocol", "atol", "--transport", "tcp"
    ) as atol:
        result = kassa_agent("detect", "--ports", shtrih, atol, "--json")
        human = kassa_agent("detect", "--ports", shtrih)
    assert result.returncode == 0, result.stderr
    found = {f["port"]: f for f in json.loads(result.stdout)}
    assert found[shtrih]["protocol"] == "shtrih" and found[shtrih]["baudrate"] == 115200
    assert found[atol]["protocol"] == "atol"
    assert found[atol]["probe_command"] == f"kassa-agent probe {atol} --protocol atol"
    assert "trying shtrih" in result.stderr  # progress goes to stderr
    assert f"run: kassa-agent probe {shtrih} --protocol shtrih --baud 115200" in human.stdout


@pytest.mark.parametrize("protocol", ["shtrih-alt", "atol2"])
def test_detect_finds_an_alternative_link_shtrih_and_an_atol_v2(protocol: str) -> None:
    with kassa_sim("--protocol", protocol, "--transport", "pty", "--scenario", "ofd-backlog") as address:
        result = kassa_agent("detect", "--ports", address, "--json")
        probe = kassa_agent("probe", address, "--protocol", protocol, "--json")
    assert result.returncode == 0, result.stderr
    (finding,) = json.loads(result.stdout)
    assert finding["protocol"] == protocol and finding["baudrate"] == 115200
    assert probe.returncode == 0, probe.stderr
    assert json.loads(probe.stdout)["ofd"]["unsent_count"] == 40


def test_kassa_sim_help_and_scenario_list() -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "firmware_sim", "--help"], capture_output=True, text=True, timeout=TIMEOUT
    ).stdout
    assert "examples:" in help_text and "--fault" in help_text
    listing = subprocess.run(
        [sys.executable, "-m", "firmware_sim", "--list-scenarios"], capture_output=True, text=True, timeout=TIMEOUT
    ).stdout
    assert "long-shift" in listing and "ofd-backlog" in listing
    bad = subprocess.run(
        [sys.executable, "-m", "firmware_sim", "--scenario", "nope"], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert bad.returncode == 2 and "unknown scenario" in bad.stderr


# --------------------------------------------------------------------------- in-process detect/probe details


def test_detect_port_reports_permission_problems_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import io

    import serial

    from agent.commands.detect import detect_port
    from agent.drivers import transport

    def denied(url: str, **kwargs: object) -> None:
        raise serial.SerialException(errno.EACCES, f"could not open port {url}: [Errno 13] Permission denied")

    monkeypatch.setattr(transport.serial, "serial_for_url", denied)
    progress = io.StringIO()
    finding = detect_port("/dev/ttyACM0", ["shtrih", "atol"], 0.05, progress)
    assert finding.protocol is None
    assert finding.error == "permission denied on /dev/ttyACM0"
    assert finding.hint is not None and "usermod -aG dialout" in finding.hint
    assert progress.getvalue().count("trying") == 1  # no point trying other protocols or baud rates


def test_detect_port_tries_every_baud_rate_until_one_answers() -> None:
    import io

    from agent.commands.detect import detect_port
    from agent.drivers.registry import get_session_class
    from firmware_sim.clock import ManualClock
    from firmware_sim.devices import make_device
    from firmware_sim.hosts.pty import PtyHost
    from firmware_sim.model import RegisterModel

    with PtyHost(make_device("atol", RegisterModel(clock=ManualClock()))) as host:
        progress = io.StringIO()
        finding = detect_port(host.address, ["shtrih", "atol"], 0.05, progress)
    shtrih_bauds = len(get_session_class("shtrih").default_baudrates)
    assert finding.protocol == "atol" and finding.baudrate == get_session_class("atol").default_baudrates[0]
    assert progress.getvalue().count("trying shtrih") == shtrih_bauds
    assert finding.probe_command == f"kassa-agent probe {host.address} --protocol atol --baud {finding.baudrate}"


def test_probe_protocol_order() -> None:
    from agent.commands.probe import protocols_to_try

    assert protocols_to_try("/dev/ttyACM0", None) == ["shtrih", "shtrih-alt", "atol", "atol2"]
    assert protocols_to_try("socket://10.0.0.5:5555", None) == ["atol", "shtrih", "shtrih-alt", "atol2"]
    assert protocols_to_try("socket://10.0.0.5:7778", None) == ["shtrih", "shtrih-alt", "atol", "atol2"]
    assert protocols_to_try("usb://2912:0005", None) == ["atol"]
    assert protocols_to_try("/dev/ttyACM0", "atol") == ["atol"]


def test_kassa_sim_reports_a_busy_tcp_port() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "firmware_sim", "--transport", "tcp", "--port", str(port)],
            capture_output=True, text=True, timeout=TIMEOUT,
        )
    assert result.returncode == 2
    assert f"cannot listen on port {port}" in result.stderr


def test_probe_and_detect_over_raw_usb_with_the_simulated_backend() -> None:
    """The real pyusb code path end to end from the CLI, with the simulator as the USB backend."""
    import os

    env = {
        **os.environ,
        "KASSA_USB_BACKEND": "firmware_sim.usb_backend:scenario_backend",
        "KASSA_SIM_SCENARIO": "ofd-backlog",
    }
    probe = subprocess.run(
        [sys.executable, "-m", "agent", "probe", "usb://2912", "--protocol", "atol", "--json"],
        capture_output=True, text=True, timeout=TIMEOUT, env=env,
    )
    assert probe.returncode == 0, probe.stderr
    state = json.loads(probe.stdout)
    assert state["vendor"] == "atol" and state["ofd"]["unsent_count"] > 0
    assert state["ofd"]["transport_connected"] is False
    detect = subprocess.run(
        [sys.executable, "-m", "agent", "detect", "--ports", "usb://2912", "--json"],
        capture_output=True, text=True, timeout=TIMEOUT, env=env,
    )
    assert detect.returncode == 0, detect.stderr
    assert "usb://2912" in detect.stdout and "atol" in detect.stdout
    broken = subprocess.run(
        [sys.executable, "-m", "agent", "probe", "usb://2912", "--protocol", "atol"],
        capture_output=True, text=True, timeout=TIMEOUT,
        env={**env, "KASSA_USB_BACKEND": "no.such.module:factory"},
    )
    assert broken.returncode != 0 and "KASSA_USB_BACKEND" in broken.stderr


@pytest.mark.parametrize("protocol", ["shtrih", "atol"])
def test_probe_reads_the_register_when_two_answers_are_lost(protocol: str) -> None:
    with kassa_sim("--protocol", protocol, "--transport", "pty", "--fault", "drop:2") as address:
        result = kassa_agent("probe", address, "--protocol", protocol, "--json")
    assert result.returncode == 0, result.stderr  # one retry of the command after the link error
    assert json.loads(result.stdout)["protocol"] == protocol


def test_probe_names_the_reason_when_the_retry_fails_too() -> None:
    result = kassa_agent("probe", "sim://shtrih?fault=drop:50", "--protocol", "shtrih", "--timeout", "0.2")
    assert result.returncode == 4
    assert "no reply" in result.stderr and "(twice)" in result.stderr
