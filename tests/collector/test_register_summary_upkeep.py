"""The ingest writer and the alert evaluator keep ``register_summary`` in step with the rows they
write (states, births, link events, agent status, alerts and verdicts), and the register list reads
their result. SQLite and PostgreSQL."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from collector.alerts import Thresholds
from collector.ingest.batcher import IngestWriter
from collector.ingest.engine import AlertEngine
from collector.ingest.writes import RefreshCache
from collector.storage import register_list, register_summary
from collector.storage.register_list import RegisterQuery
from collector.storage.schema import agents
from collector.storage.schema import register_summary as summary
from collector.storage.scope import Scope
from protocol.kkt.state import ShiftStatus
from protocol.mqtt.models import EventKind

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: make the helper next to us importable
import ingest_testkit as kit

engine = kit.engine  # the fixture: a migrated engine on SQLite and on PostgreSQL

T0 = kit.T0


def ingest(engine: sa.Engine, *messages: tuple[str, bytes]) -> None:
    IngestWriter(engine, kit.FakeDownlink()).process([kit.inbound(topic, payload, at=T0) for topic, payload in messages])


def rows(engine: sa.Engine) -> dict[str, dict[str, Any]]:
    """The stored summary, after checking it equals a rebuild from the source tables."""
    with engine.connect() as conn:
        stored = {row.register_id: dict(row._mapping) for row in conn.execute(sa.select(summary))}
        computed = register_summary._computed(conn.dialect.name, None).subquery()
        rebuilt = {row.register_id: dict(row._mapping) for row in conn.execute(sa.select(computed))}
    assert stored == rebuilt
    return stored


def test_the_writer_keeps_the_summary_of_what_each_batch_wrote(engine: sa.Engine) -> None:
    ingest(
        engine,
        kit.status_msg("agent-a", 1, "online"),
        kit.status_msg("agent-b", 1, "online"),
        kit.state_msg("agent-a", "kkt-1", 1, 1, kit.register_state("0001")),
        kit.birth_msg("agent-b", 1, 1, {"kkt-2": kit.register_state("0002"), "kkt-3": kit.register_state("0003")}),
    )
    found = rows(engine)
    assert set(found) == {"kkt-1", "kkt-2", "kkt-3"}
    assert found["kkt-1"]["agent_online"] is True and found["kkt-2"]["agent_online"] is True
    assert found["kkt-2"]["link_up"] is True and "0002" in found["kkt-2"]["search_text"]
    assert found["kkt-1"]["sell_rank"] == 1  # not evaluated yet: unknown

    ingest(engine, kit.event_msg("agent-a", "kkt-1", 1, 2, EventKind.LINK_LOST), kit.status_msg("agent-b", 1, "offline"))
    found = rows(engine)
    assert found["kkt-1"]["link_up"] is False
    assert (found["kkt-2"]["agent_online"], found["kkt-3"]["agent_online"]) == (False, False)
    with engine.connect() as conn:
        unreachable = register_list.list_page(conn, Scope.admin(), RegisterQuery(connectivity="unreachable"))
        offline = register_list.count_registers(conn, Scope.admin(), RegisterQuery(connectivity="offline"))
    assert [row.register_id for row in unreachable.rows] == ["kkt-1"] and offline == 2


def test_the_evaluator_keeps_the_verdict_severity_and_alerts_in_the_summary(engine: sa.Engine) -> None:
    backlog = kit.register_state(unsent=40, oldest_unsent_age=timedelta(days=20))
    ingest(
        engine,
        kit.status_msg("agent-a", 1, "online"),
        kit.state_msg("agent-a", "kkt-1", 1, 1, backlog),
        kit.state_msg("agent-a", "kkt-2", 1, 2, kit.register_state("0002")),
    )
    alerts = AlertEngine(engine, Thresholds())
    alerts.evaluate(["kkt-1", "kkt-2"], now=T0)
    found = rows(engine)
    assert found["kkt-1"]["problem"] is True and found["kkt-1"]["worst_severity"] == "critical"
    assert found["kkt-1"]["block_order"] == T0 + timedelta(days=10)
    assert found["kkt-2"]["problem"] is False and found["kkt-2"]["block_order"] == register_summary.NO_BLOCK
    with engine.connect() as conn:
        first = register_list.list_page(conn, Scope.admin(), RegisterQuery(), limit=1)
    assert [row.register_id for row in first.rows] == ["kkt-1"] and first.next_cursor is not None

    ingest(engine, kit.state_msg("agent-a", "kkt-1", 1, 3, kit.register_state()))  # the backlog is sent
    alerts.evaluate(["kkt-1"], now=T0)
    found = rows(engine)
    assert found["kkt-1"]["problem"] is False and found["kkt-1"]["worst_severity"] is None


def _shift(status: ShiftStatus, receipts: int = 3) -> Any:
    state = kit.register_state("0001", receipts=receipts)
    return state.model_copy(update={"shift": state.shift.model_copy(update={"status": status})})


def test_a_writer_rewrites_a_summary_row_only_when_a_new_state_moves_what_it_shows(engine: sa.Engine) -> None:
    """One writer (its identity cache warm) and a second collector writing the same register: a
    state that only counts receipts runs no summary upsert; one that moves the shift status or
    brings the link back does, also after the other collector wrote the row in between."""
    first, second = IngestWriter(engine, kit.FakeDownlink()), IngestWriter(engine, kit.FakeDownlink())
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))

    def ingest_by(writer: IngestWriter, seq: int, state: Any) -> int:
        """Summary upserts run for one state message."""
        statements.clear()
        writer.process([kit.inbound(*kit.state_msg("agent-a", "kkt-1", 1, seq, state), at=T0 + timedelta(seconds=seq))])
        return sum(s.startswith("INSERT INTO register_summary") for s in statements)

    assert ingest_by(first, 1, _shift(ShiftStatus.OPEN)) == 1
    assert ingest_by(first, 2, _shift(ShiftStatus.OPEN, receipts=9)) == 0  # nothing the list shows moved
    assert rows(engine)["kkt-1"]["shift_status"] == "open"
    assert ingest_by(first, 3, _shift(ShiftStatus.CLOSED)) == 1
    assert rows(engine)["kkt-1"]["shift_status"] == "closed"
    assert ingest_by(second, 4, _shift(ShiftStatus.EXPIRED)) == 1  # the other collector
    assert ingest_by(first, 5, _shift(ShiftStatus.CLOSED)) == 1  # what the first one wrote last: still stale
    assert rows(engine)["kkt-1"]["shift_status"] == "closed"
    first.process([kit.inbound(*kit.event_msg("agent-a", "kkt-1", 1, 6, EventKind.LINK_LOST), at=T0)])
    assert rows(engine)["kkt-1"]["link_up"] is False
    assert ingest_by(first, 7, _shift(ShiftStatus.CLOSED)) == 1  # a state: the link is back
    assert rows(engine)["kkt-1"]["link_up"] is True


def test_an_agent_seen_again_rewrites_no_summary_row_unless_a_newer_session_brings_it_online(engine: sa.Engine) -> None:
    writer = IngestWriter(engine, kit.FakeDownlink())
    writer._refresh = RefreshCache(seen_interval=0)  # every batch marks its agents seen
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))

    def ingest_at(seconds: int, *messages: tuple[str, bytes]) -> int:
        statements.clear()
        writer.process([kit.inbound(topic, payload, at=T0 + timedelta(seconds=seconds)) for topic, payload in messages])
        return sum(s.startswith("INSERT INTO register_summary") for s in statements)

    ingest_at(0, kit.status_msg("agent-a", 1, "online"), kit.state_msg("agent-a", "kkt-1", 1, 1, kit.register_state()))
    assert ingest_at(1, kit.state_msg("agent-a", "kkt-1", 1, 2, kit.register_state(receipts=4))) == 0
    with engine.connect() as conn:
        assert conn.execute(sa.select(agents.c.last_seen)).scalar_one() == T0 + timedelta(seconds=1)
    ingest_at(2, kit.status_msg("agent-a", 1, "offline"))
    assert rows(engine)["kkt-1"]["agent_online"] is False
    assert ingest_at(3, kit.state_msg("agent-a", "kkt-1", 2, 1, kit.register_state(receipts=5))) == 1
    assert rows(engine)["kkt-1"]["agent_online"] is True
