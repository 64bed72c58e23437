"""`kassa-agent run` / `config check` / `outbox status` as processes, against kassa-sim over TCP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.health import DeviceHealth, HealthReport, read_health, write_health
from agent.logging_setup import JsonFormatter
from protocol.mqtt.models import EventPayload, StatePayload, StatusPayload, decode

BIN = Path(sys.executable).parent
AGENT = "agent-cli"


class Simulator:
    """`kassa-sim` on a fixed TCP port, so it can be killed ("unplugged") and started again."""

    def __init__(self) -> None:
        self.port = 0  # first start: kassa-sim picks a free port; restarts reuse it
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> str:
        self.process = subprocess.Popen(
            [str(BIN / "kassa-sim"), "--protocol", "shtrih", "--transport", "tcp", "--port", str(self.port), "--quiet"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        endpoint = self.process.stdout.readline().strip()
        self.port = int(endpoint.rsplit(":", 1)[1])
        return endpoint

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    sim = Simulator()
    yield sim
    sim.kill()


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("KASSA_AGENT_")}


def kinds(messages: list[Any], kind: str) -> list[Any]:
    return [decode(m.topic, m.payload) for m in messages if m.topic.split("/")[3] == kind and m.payload]


def test_run_survives_register_unplug_and_stops_cleanly(
    mqtt_broker: Any, mqtt_recorder: Any, simulator: Simulator, tmp_path: Path
) -> None:
    endpoint = simulator.start()
    assert endpoint == f"socket://127.0.0.1:{simulator.port}"
    recorder = mqtt_recorder([f"kassa/v1/{AGENT}/#"])
    agent = subprocess.Popen(
        [
            str(BIN / "kassa-agent"), "run", "--broker", mqtt_broker.url, "--agent-id", AGENT,
            "--device", f"shtrih,{endpoint}", "--outbox", str(tmp_path / "outbox.sqlite"), "--poll", "0.2",
            "--ack-mode", "puback", "--health-file", str(tmp_path / "health.json"), "--log-format", "json",
        ],
        stderr=subprocess.PIPE,
        env=clean_env(),
    )
    try:
        messages = recorder.wait_for(lambda m: kinds(m, "state"), timeout=15)
        state = kinds(messages, "state")[0]
        assert isinstance(state, StatePayload) and state.state.serial  # read over the wire from kassa-sim
        simulator.kill()  # cable pulled
        recorder.wait_for(lambda m: any(e.kind == "link_lost" for e in kinds(m, "event")), timeout=10)
        recorder.wait_for(lambda m: read_health(tmp_path / "health.json")["devices"][0]["link_up"] is False)
        simulator.start()  # and plugged back in
        messages = recorder.wait_for(lambda m: any(e.kind == "link_regained" for e in kinds(m, "event")), timeout=10)
        events = [e for e in kinds(messages, "event") if isinstance(e, EventPayload)]
        assert [e.kind for e in events if e.kind.startswith("link_")] == ["link_lost", "link_regained"]
        assert agent.poll() is None  # still running
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(15) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
    statuses = [s for s in kinds(recorder.messages, "status") if isinstance(s, StatusPayload)]
    assert [s.status for s in statuses][-1] == "offline" and statuses[-1].reason == "shutdown"
    assert agent.stderr is not None
    log_lines = [json.loads(line) for line in agent.stderr.read().decode().splitlines() if line.startswith("{")]
    assert any(line["level"] == "warning" and "link" in line["msg"] for line in log_lines)


def test_run_with_a_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN / "kassa-agent"), "run", "--agent-id", "a1", "--device", "shtrih,/dev/ttyACM0,12345"],
        capture_output=True, text=True, env=clean_env(), timeout=30,
    )
    assert result.returncode == 2
    assert "devices[0].baudrate:" in result.stderr


def test_config_check_reads_the_environment(tmp_path: Path) -> None:
    env = clean_env() | {
        "KASSA_AGENT_ID": "env-agent",
        "KASSA_AGENT_BROKER": "mqtts://broker.example:8883",
        "KASSA_AGENT_BROKER_PASSWORD": "hunter2",
    }
    result = subprocess.run(
        [str(BIN / "kassa-agent"), "config", "check", "--device", "atol,socket://10.0.0.9:5555", "--json"],
        capture_output=True, text=True, env=env, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["agent_id"] == "env-agent" and shown["broker"]["url"] == "mqtts://broker.example:8883"
    assert shown["broker"]["password"] == "***" and "hunter2" not in result.stdout


def test_outbox_status_reports_depth_and_drops(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from agent.outbox import Outbox

    path = tmp_path / "outbox.sqlite"
    with Outbox(path, max_bytes=2048) as outbox:
        session = outbox.next_session()
        for seq in range(6):  # ~3 KiB of events into a 2 KiB outbox: the oldest are dropped
            outbox.append("event", "kkt-1", session, seq, "t", b"x" * 500, datetime.now(UTC), durable=True)
    result = subprocess.run(
        [str(BIN / "kassa-agent"), "outbox", "status", "--outbox", str(path), "--json"],
        capture_output=True, text=True, env=clean_env(), timeout=30,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["events"] == report["depth"] == 4
    assert report["dropped_events_total"] == 2 and report["unreported_gap"]["dropped_events"] == 2
    assert report["oldest_record"] == f"event session {session} seq 2"
    missing = subprocess.run(
        [str(BIN / "kassa-agent"), "outbox", "status", "--outbox", str(tmp_path / "none.sqlite")],
        capture_output=True, text=True, env=clean_env(), timeout=30,
    )
    assert missing.returncode == 1 and "no outbox" in missing.stderr


def test_health_file_is_replaced_atomically(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    path = tmp_path / "run" / "health.json"
    now = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    device = DeviceHealth("kkt-1", "shtrih", "/dev/ttyACM0", link_up=True, last_poll=now, last_ok=now)
    write_health(path, HealthReport("a1", now, True, 3, 0, [device]))
    write_health(path, HealthReport("a1", now, False, None, 7, [device]))
    data = read_health(path)
    assert (data["broker_connected"], data["session"], data["outbox_depth"]) == (False, None, 7)
    assert data["devices"][0]["last_poll"] == "2026-11-28T09:00:00+00:00"
    assert [p.name for p in path.parent.iterdir()] == ["health.json"]  # no temp files left behind


def test_json_log_lines_carry_extra_fields() -> None:
    import logging

    record = logging.makeLogRecord({"msg": "link to %s lost", "args": ("kkt-1",), "levelname": "WARNING",
                                    "name": "agent.runtime", "register": "kkt-1"})
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "link to kkt-1 lost" and line["register"] == "kkt-1" and line["level"] == "warning"


def test_outbox_status_finds_the_path_in_the_config(tmp_path: Path) -> None:
    from agent.outbox import Outbox

    path = tmp_path / "state" / "outbox.sqlite"
    Outbox(path).close()
    config = tmp_path / "agent.toml"
    config.write_text(f'[outbox]\npath = "{path}"\n')  # no agent id or devices needed for this
    result = subprocess.run(
        [str(BIN / "kassa-agent"), "outbox", "status", "--config", str(config)],
        capture_output=True, text=True, env=clean_env(), timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert f"outbox {path}" in result.stdout and "waiting:  0 record(s)" in result.stdout
