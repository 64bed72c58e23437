"""Refusing an agent nobody enrolled: on its ack topic, once per interval and reason, in the
contract's words (the ingest writer without MQTT, SQLite and PostgreSQL)."""

from __future__ import annotations

import sys
from pathlib import Path

import sqlalchemy as sa

from collector.ingest.admission import Refusal
from collector.ingest.batcher import IngestWriter, WriterSettings
from collector.ingest.refusals import RefusalNotices
from protocol.mqtt.models import AckPayload, RefusalPayload, decode
from protocol.mqtt.topics import ack_topic

sys.path.insert(0, str(Path(__file__).parent))
import ingest_testkit as kit

engine = kit.engine


def test_an_unenrolled_agent_is_told_on_its_ack_topic_and_nothing_is_acked(engine: sa.Engine) -> None:
    downlink = kit.FakeDownlink()
    writer = IngestWriter(engine, downlink, settings=WriterSettings(enforce_enrollment=True))
    for seq in range(3):
        result = writer.process(kit.batch(kit.state_msg("agent-x", "kkt-1", 1, seq)))
        assert [r.reason for r in result.dead_letters] == ["unknown_agent"]
    told = [decode(topic, raw) for topic, raw in downlink.published]
    assert [topic for topic, _ in downlink.published] == [ack_topic("agent-x")]  # once, not per batch
    assert isinstance(told[0], RefusalPayload) and told[0].refused == "unknown_agent"
    assert not any(isinstance(payload, AckPayload) for payload in told)


def test_refusals_repeat_after_the_interval_or_when_the_reason_changes() -> None:
    now = [0.0]
    notices = RefusalNotices(interval=30, clock=lambda: now[0])
    unknown = {"a": Refusal("unknown_agent", "agent 'a' is not enrolled")}
    assert [agent for agent, _ in notices.due(unknown)] == ["a"]
    now[0] = 29.0
    assert notices.due(unknown) == []
    assert [agent for agent, _ in notices.due({"a": Refusal("agent_revoked", "agent 'a' was revoked")})] == ["a"]
    now[0] = 60.0
    assert len(notices.due({"a": Refusal("agent_revoked", "agent 'a' was revoked")})) == 1
