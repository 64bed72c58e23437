"""Agent-level events (outbox_gap, command_error) over HTTP: the agent's event list within the
caller's rights, and the register page showing what its agent lost; every event kind has a label."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent / "security"))
import accounts_testkit as accounts_kit
import security_testkit as kit

from collector.ingest.epochs import REINSTALLED, STRIDE
from collector.storage import repository as repo
from collector.storage.engine import begin_write
from collector.storage.rows import AgentEventRow
from collector.web.i18n import labels
from protocol.mqtt.models import EventKind

engine = accounts_kit.engine


client = pytest.fixture(kit.fresh_site, name="client")


def test_an_agent_s_events_are_listed_newest_first_within_rights(client: kit.Client, engine: sa.Engine) -> None:
    agent = client.world.a["{agent_id}"]
    gap = AgentEventRow(agent, 3, 9, "outbox_gap", kit.T0 - timedelta(hours=1), kit.T0,
                        {"message": "буфер полон: отброшено 120 состояний", "dropped": 120})
    failed = AgentEventRow(agent, 3, 10, "command_error", kit.T0, kit.T0, {"message": "неизвестная команда reboot"})
    with begin_write(engine) as conn:
        assert repo.insert_agent_events(conn, [gap, failed, gap]) == 2  # the repeat is dropped
    reply = client.call("GET", f"/api/v1/agents/{agent}/events", who="moscow_op")
    assert reply.status == 200
    assert [(e["kind"], e["seq"]) for e in reply.json["items"]] == [("command_error", 10), ("outbox_gap", 9)]
    assert reply.json["items"][1]["data"]["dropped"] == 120
    assert client.call("GET", f"/api/v1/agents/{agent}/events?limit=1", who="viewer").json["items"][0]["seq"] == 10
    assert client.call("GET", f"/api/v1/agents/{client.world.spb['{agent_id}']}/events", who="moscow_op").status == 404
    assert client.call("GET", f"/api/v1/agents/{agent}/events", who="owner_b").status == 404
    assert client.call("GET", "/api/v1/agents/no-such-agent/events", who="owner_a").status == 404
    assert client.call("GET", f"/api/v1/agents/{agent}/events?limit=0", who="owner_a").status == 400


def test_the_register_page_shows_what_its_agent_lost(client: kit.Client, engine: sa.Engine) -> None:
    register, agent = client.world.registers["tverskaya"], client.world.a["{agent_id}"]
    with begin_write(engine) as conn:
        conn.execute(sa.text("UPDATE registers SET agent_id = :agent WHERE register_id = :register"),
                     {"agent": agent, "register": register})
        repo.insert_agent_events(conn, [AgentEventRow(agent, 4, 2, "outbox_gap", kit.T0, kit.T0,
                                                      {"message": "отброшено 7 состояний"})])
    page = client.call("GET", f"/registers/{register}", who="owner_a").text
    assert f"События агента {agent}" in page
    assert "Агент потерял часть данных (буфер переполнен): отброшено 7 состояний" in page
    other = client.call("GET", f"/registers/{client.world.registers['arbat']}", who="owner_a").text
    assert "События агента" not in other  # its agent reported nothing


def test_the_register_page_says_its_agent_was_reinstalled(client: kit.Client, engine: sa.Engine) -> None:
    register, agent = client.world.registers["tverskaya"], client.world.a["{agent_id}"]
    with begin_write(engine) as conn:
        conn.execute(sa.text("UPDATE registers SET agent_id = :agent WHERE register_id = :register"),
                     {"agent": agent, "register": register})
        repo.insert_agent_events(conn, [AgentEventRow(agent, STRIDE, 0, REINSTALLED, kit.T0, kit.T0,
                                                      {"message": "нумерация сессий началась с 1"})])
    page = client.call("GET", f"/registers/{register}", who="owner_a").text
    assert "Агент переустановлен: нумерация сессий началась с 1" in page
    listed = client.call("GET", f"/api/v1/agents/{agent}/events", who="owner_a").json["items"]
    assert [e["kind"] for e in listed] == [REINSTALLED]


@pytest.mark.parametrize("language", ["ru", "en"])
def test_every_event_kind_has_a_label(language: str) -> None:
    names = labels(language)
    kinds = [kind.value for kind in EventKind] + [REINSTALLED]  # the last one the collector makes itself
    unlabelled = [kind for kind in kinds if names.event(kind) == kind]
    assert unlabelled == []
