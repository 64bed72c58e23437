"""An agent nobody enrolled, under ``--enforce-enrollment``: the collector refuses it on its ack
topic (rate-limited), the agent logs it and shows it in its health file and in ``kassa-agent outbox
status``; once enrolled, its kept backlog is stored and the refusal clears. Real agent runtime,
Mosquitto and collector service, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from agent.health import read_health
from collector.storage import create_engine_from_url
from collector.storage import repository as repo
from collector.storage.engine import begin_write
from collector.storage.schema import state_history
from protocol.mqtt.models import RefusalPayload, decode
from protocol.mqtt.topics import ack_topic

sys.path.insert(0, str(Path(__file__).parent))
import session_testkit as session
from session_testkit import wait_for

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]
AGENT = "store-1"

db_url = session.db_url


def _refused(health: Path) -> Any:
    return health.exists() and read_health(health).get("refused")


def _outbox_status(outbox: Path, *extra: str) -> str:
    command = [sys.executable, "-m", "agent", "outbox", "status", "--outbox", str(outbox), *extra]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=os.environ.copy(), check=True)
    return done.stdout


def _stored(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(state_history)).scalar_one())


def test_an_unenrolled_agent_is_told_it_is_refused_and_keeps_its_data_until_enrolled(
    mqtt_broker: Any, mqtt_recorder: Any, tmp_path: Path, db_url: str, model_register: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = mqtt_recorder([ack_topic(AGENT)])
    collector = session.start_collector(mqtt_broker, db_url, enforce_enrollment=True, history_sample_minutes=0)  # every state stored: counted below
    engine = create_engine_from_url(db_url)
    outbox, health = tmp_path / "outbox.sqlite", tmp_path / "health.json"
    agent = session.start_agent(mqtt_broker, outbox, model_register, health_file=str(health))
    try:
        refused = wait_for(lambda: _refused(health), 15, "the refusal in the agent's health file")
        assert refused["reason"] == "unknown_agent" and AGENT in refused["detail"]
        said = [r for r in caplog.records if r.name == "agent.refusal" and r.levelname == "ERROR"]
        assert len(said) == 1 and "the collector refuses this agent (unknown_agent" in said[0].getMessage()
        wait_for(lambda: agent.outbox.depth() >= 8, 15, "states piling up in the outbox")
        told = [decode(m.topic, m.payload) for m in recorder.messages]
        assert told and all(isinstance(m, RefusalPayload) for m in told)
        assert len(told) <= 2  # dozens of refused batches, one refusal per 30 s
        with engine.connect() as conn:
            assert {d.reason for d in repo.list_dead_letters(conn)} == {"unknown_agent"}
        assert _stored(engine) == 0
    finally:
        agent.stop(timeout=2)

    text = _outbox_status(outbox)
    assert "REFUSED by the collector" in text and "unknown_agent" in text
    report = json.loads(_outbox_status(outbox, "--json"))
    assert report["refused"]["reason"] == "unknown_agent" and report["depth"] >= 8

    with begin_write(engine) as conn:  # the operator enrolls it
        tenant = repo.create_tenant(conn, "ООО Ромашка", created_at=datetime.now(UTC))
        store = repo.create_node(conn, tenant, parent_id=None, kind="store", name="Тверская")
        repo.enroll_agent(conn, AGENT, tenant_id=tenant, node_id=store, enrolled_at=datetime.now(UTC))
    agent = session.start_agent(mqtt_broker, outbox, model_register, health_file=str(health))
    try:
        wait_for(lambda: agent.outbox.depth() == 0, 20, "the kept backlog stored and acked")
        wait_for(lambda: health.exists() and read_health(health).get("refused") is None, 10, "the refusal cleared")
        assert report["states"] <= _stored(engine)  # nothing of the refused time was lost
    finally:
        agent.stop(timeout=2)
        collector.stop()
        engine.dispose()
    assert "REFUSED" not in _outbox_status(outbox)
