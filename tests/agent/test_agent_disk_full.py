"""`kassa-agent run` with its outbox on a real, tiny tmpfs that fills up while the broker restarts.

Issue 13 item 2: the outbox cannot take a new session on the full disk at reconnect. The MQTT
supervisor thread must not die silently: it is restarted with backoff, recovers when space comes
back, and when it cannot recover the agent exits non-zero with the thread and reason in the
health file (systemd then restarts it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.health import read_health
from agent.outbox import Outbox

sys.path.insert(0, str(Path(__file__).parents[1]))
from netkit import wait_for

BIN = Path(sys.executable).parent
AGENT = "agent-disk"


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: a real filesystem that really runs out of space (needs root to mount)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"cannot mount a tmpfs under CI=true: {mounted.stderr}")
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(disk: Path) -> Path:
    """Write a filler file until the filesystem says ENOSPC."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as fh:  # unbuffered: nothing is left to fail at close
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


def start_agent(broker: Any, tmp_path: Path, disk: Path, max_restarts: int) -> subprocess.Popen[bytes]:
    config = tmp_path / "agent.toml"
    config.write_text(
        f"""
agent_id = "{AGENT}"
ack_mode = "puback"
health_file = "{tmp_path / 'health.json'}"
log_format = "json"

[broker]
url = "{broker.url}"
reconnect_min = 0.05
reconnect_max = 0.3

[outbox]
path = "{disk / 'outbox.sqlite'}"

[supervision]
max_restarts = {max_restarts}
backoff_initial = 0.1
backoff_max = 0.3

[[devices]]
protocol = "shtrih"
url = "sim://shtrih"
poll_interval = 0.5
register_id = "kkt-1"
"""
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("KASSA_AGENT_")}
    return subprocess.Popen(
        [str(BIN / "kassa-agent"), "run", "--config", str(config)],
        stderr=(tmp_path / "agent.stderr").open("wb"),
        env=env,
    )


def health(tmp_path: Path) -> dict[str, Any]:
    try:
        return read_health(tmp_path / "health.json")
    except (OSError, ValueError):
        return {}


def thread_health(tmp_path: Path, name: str) -> dict[str, Any]:
    return next((t for t in health(tmp_path).get("threads", []) if t["name"] == name), {})


def log_lines(tmp_path: Path) -> list[dict[str, Any]]:
    """Every stderr line must be one JSON object, tracebacks included."""
    text = (tmp_path / "agent.stderr").read_text()
    return [json.loads(line) for line in text.splitlines()]


def test_disk_full_at_reconnect_exits_non_zero_naming_the_thread(
    mqtt_broker: Any, tmp_path: Path, tiny_disk: Path
) -> None:
    agent = start_agent(mqtt_broker, tmp_path, tiny_disk, max_restarts=2)
    try:
        wait_for(lambda: health(tmp_path).get("broker_connected"), 20, "the agent to connect")
        fill(tiny_disk)
        mqtt_broker.restart()  # the reconnect needs a new session, which needs the disk
        code = agent.wait(60)
    finally:
        if agent.poll() is None:
            agent.kill()
    assert code != 0
    report = health(tmp_path)
    assert report["failure"]["thread"] == "mqtt-supervisor"
    assert report["failure"]["error"].endswith("database or disk is full")
    assert report["broker_connected"] is False
    lines = log_lines(tmp_path)
    assert any(line.get("agent_thread") == "mqtt-supervisor" and "exc" in line for line in lines)  # traceback as JSON
    assert any(line["level"] == "critical" and "cannot recover" in line["msg"] for line in lines)


def test_disk_full_at_reconnect_recovers_when_space_returns(
    mqtt_broker: Any, tmp_path: Path, tiny_disk: Path
) -> None:
    agent = start_agent(mqtt_broker, tmp_path, tiny_disk, max_restarts=1000)
    try:
        first = wait_for(lambda: health(tmp_path).get("session"), 20, "the agent to connect")
        filler = fill(tiny_disk)
        mqtt_broker.restart()
        wait_for(lambda: thread_health(tmp_path, "mqtt-supervisor").get("restarts", 0) >= 2, 30, "restarts")
        assert thread_health(tmp_path, "mqtt-supervisor")["last_error"].endswith("database or disk is full")
        assert health(tmp_path)["broker_connected"] is False
        filler.unlink()
        wait_for(lambda: (health(tmp_path).get("session") or 0) > first, 30, "a new session after space came back")
        assert agent.poll() is None
        assert thread_health(tmp_path, "mqtt-supervisor")["alive"] is True
        assert health(tmp_path)["failure"] is None
    finally:
        if agent.poll() is None:
            agent.terminate()
            agent.wait(15)
    assert agent.returncode == 0


def test_a_full_disk_at_start_exits_1_with_a_clear_json_error(mqtt_broker: Any, tmp_path: Path, tiny_disk: Path) -> None:
    with Outbox(tiny_disk / "outbox.sqlite") as outbox:  # an outbox from an earlier run
        outbox.next_session()
    fill(tiny_disk)
    agent = start_agent(mqtt_broker, tmp_path, tiny_disk, max_restarts=2)
    assert agent.wait(30) == 1
    lines = log_lines(tmp_path)
    assert lines[-1]["level"] == "critical" and "cannot open the outbox" in lines[-1]["msg"]
    # SQLite's own words: no space for the WAL file is an I/O error, no space for a page is "full"
    assert lines[-1]["msg"].rsplit(": ", 1)[1] in ("disk I/O error", "database or disk is full")
