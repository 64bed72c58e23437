"""Batched ingest writes (``collector.ingest.bulk``; the array forms on PostgreSQL) keep the
semantics of the per-row storage functions — on SQLite and PostgreSQL."""

from __future__ import annotations

import sys
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from collector.ingest import bulk
from collector.storage import InvalidValue, RegisterOwnedElsewhere, UnknownNode
from collector.storage import repository as repo
from collector.storage.rows import HistoryRow, JsonText, LatestState, RegisterIdentity
from collector.storage.schema import agents, ingest_marks, register_state, registers, state_history

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: make the helper next to us importable
import ingest_testkit as kit

engine = kit.engine  # the fixture: a migrated engine on SQLite and on PostgreSQL
T0 = kit.T0


def _fleet(engine: sa.Engine, registers: list[str]) -> tuple[int, int]:
    with engine.begin() as conn:
        tenant = repo.create_tenant(conn, "T", created_at=T0)
        store = repo.create_node(conn, tenant, parent_id=None, kind="store", name="Магазин «Ромашка»")
        repo.enroll_agent(conn, "agent-1", tenant_id=tenant, node_id=store, enrolled_at=T0)
        for register_id in registers:
            repo.ensure_register(conn, RegisterIdentity(register_id, "shtrih"), agent_id="agent-1", seen_at=T0)
    return tenant, store


def _history(seq: int, register: str = "r-1", *, session: int = 1, receipts: int = 0) -> HistoryRow:
    state = kit.register_state(receipts=receipts).model_dump(mode="json")
    state["model"] = 'ШТРИХ "М" \\ 01Ф'  # quotes, backslash and Cyrillic survive the array transport
    return HistoryRow("agent-1", session, seq, register, T0 + timedelta(seconds=seq), T0, state)


def _latest(seq: int, register: str = "r-1", *, agent: str = "agent-1", session: int = 1, **kw: object) -> LatestState:
    row = LatestState.from_register_state(
        register, kit.register_state(receipts=seq, unsent=2, oldest_unsent_age=timedelta(days=3)),
        agent_id=agent, session=session, seq=seq, agent_ts=T0 + timedelta(seconds=seq), received_at=T0,
    )
    return replace(row, **kw) if kw else row


def test_insert_history_counts_only_new_rows_and_keeps_documents(engine: sa.Engine) -> None:
    _fleet(engine, ["r-1", "r-2"])
    with engine.begin() as conn:
        assert bulk.insert_history(conn, [_history(0), _history(1, "r-2"), _history(2)]) == 3
    with engine.begin() as conn:  # a redelivered batch: only the unseen seq is new
        assert bulk.insert_history(conn, [_history(1, "r-2"), _history(2), _history(3, receipts=9)]) == 1
        assert bulk.insert_history(conn, []) == 0
    with engine.connect() as conn:
        rows = conn.execute(sa.select(state_history).order_by(state_history.c.seq)).all()
    assert [r.seq for r in rows] == [0, 1, 2, 3]
    assert rows[3].state == _history(3, receipts=9).state
    assert rows[3].ts == T0 + timedelta(seconds=3)
    assert rows[0].received_at == T0


def test_insert_history_refuses_a_naive_instant_and_an_out_of_range_seq(engine: sa.Engine) -> None:
    _fleet(engine, ["r-1"])
    with engine.connect() as conn:
        with pytest.raises((ValueError, sa.exc.StatementError), match="naive"):
            bulk.insert_history(conn, [replace(_history(0), ts=datetime(2026, 1, 1))])
        with pytest.raises(ValueError, match="outside"):
            bulk.insert_history(conn, [replace(_history(0), seq=2**63)])


def test_latest_state_is_replaced_only_by_newer_rows(engine: sa.Engine) -> None:
    _fleet(engine, ["r-1", "r-2", "r-3"])
    with engine.begin() as conn:
        assert bulk.upsert_latest_states(conn, [_latest(5, link_up=True), _latest(5, "r-2"), _latest(1, "r-3", link_up=True)]) == {
            "r-1", "r-2", "r-3",
        }
    with engine.begin() as conn:
        written = bulk.upsert_latest_states(
            conn,
            [
                _latest(4, link_up=False),  # older seq of the same session: ignored
                _latest(0, "r-2", session=2, link_up=False),  # a later session wins whatever its seq
                _latest(7, "r-3", link_up=None),  # newer, link unknown: keeps the stored flag
            ],
        )
    assert written == {"r-2", "r-3"}
    with engine.connect() as conn:
        rows = {r.register_id: r for r in conn.execute(sa.select(register_state))}
    assert (rows["r-1"].seq, rows["r-1"].link_up) == (5, True)
    assert (rows["r-2"].session, rows["r-2"].seq, rows["r-2"].link_up) == (2, 0, False)
    assert (rows["r-3"].seq, rows["r-3"].link_up) == (7, True)
    assert rows["r-3"].unsent_count == 2
    assert rows["r-3"].oldest_unsent_at == kit.REGISTER_CLOCK - timedelta(days=3)
    assert rows["r-3"].state["shift"]["receipts"] == 7


def test_latest_state_from_another_agent_needs_a_later_timestamp(engine: sa.Engine) -> None:
    _fleet(engine, ["r-1"])
    with engine.begin() as conn:
        bulk.upsert_latest_states(conn, [_latest(50)])
    with engine.begin() as conn:
        assert bulk.upsert_latest_states(conn, [_latest(99, agent="agent-2", agent_ts=T0)]) == set()
        assert bulk.upsert_latest_states(conn, [_latest(0, agent="agent-2", agent_ts=T0 + timedelta(hours=1))]) == {"r-1"}


def test_ingest_marks_only_move_forward(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        bulk.advance_ingest_marks(conn, {("agent-1", 1): 10, ("agent-1", 2): 3, ("agent-2", 1): 0})
    with engine.begin() as conn:
        bulk.advance_ingest_marks(conn, {("agent-1", 1): 7, ("agent-1", 2): 4})
        bulk.advance_ingest_marks(conn, {})
    with engine.connect() as conn:
        marks = {(r.agent_id, r.session): r.max_seq for r in conn.execute(sa.select(ingest_marks))}
    assert marks == {("agent-1", 1): 10, ("agent-1", 2): 4, ("agent-2", 1): 0}


def test_enroll_agents_registers_many_into_one_node(engine: sa.Engine) -> None:
    tenant, store = _fleet(engine, [])
    with engine.begin() as conn:
        repo.revoke_agent(conn, "agent-1")
        bulk.enroll_agents(conn, ["agent-3", "agent-1", "agent-2"], tenant_id=tenant, node_id=store, enrolled_at=T0)
        bulk.enroll_agents(conn, [], tenant_id=tenant, node_id=store, enrolled_at=T0)
    with engine.connect() as conn:
        rows = {r.agent_id: r for r in conn.execute(sa.select(agents))}
    assert sorted(rows) == ["agent-1", "agent-2", "agent-3"]
    assert all(r.node_id == store and r.tenant_id == tenant and not r.revoked for r in rows.values())


def test_enroll_agents_refuses_a_node_of_another_tenant(engine: sa.Engine) -> None:
    tenant, store = _fleet(engine, [])
    with engine.connect() as conn, pytest.raises(UnknownNode):
        bulk.enroll_agents(conn, ["agent-9"], tenant_id=tenant + 1, node_id=store, enrolled_at=T0)


def test_admitting_newcomers_leaves_an_agent_registered_meanwhile_as_it_is(engine: sa.Engine) -> None:
    tenant, store = _fleet(engine, [])
    with engine.begin() as conn:
        repo.revoke_agent(conn, "agent-1")  # e.g. revoked since another collector admitted it
        bulk.enroll_agents(conn, ["agent-1", "agent-2"], tenant_id=tenant, node_id=store, enrolled_at=T0, rebind=False)
    with engine.connect() as conn:
        revoked = {r.agent_id: r.revoked for r in conn.execute(sa.select(agents.c.agent_id, agents.c.revoked))}
    assert revoked == {"agent-1": True, "agent-2": False}


def test_last_seen_skips_an_agent_row_another_transaction_holds_instead_of_waiting(engine: sa.Engine) -> None:
    tenant, store = _fleet(engine, [])
    with engine.begin() as conn:
        bulk.enroll_agents(conn, ["agent-2"], tenant_id=tenant, node_id=store, enrolled_at=T0)
    seen = {"agent-1": (T0 + timedelta(minutes=1), 1), "agent-2": (T0 + timedelta(minutes=1), 1)}
    if engine.dialect.name != "postgresql":  # one writer at a time: nothing can be held meanwhile
        with engine.begin() as conn:
            assert bulk.mark_agents_seen(conn, seen) == ({"agent-1", "agent-2"}, {"agent-1", "agent-2"})
        return
    with engine.connect() as other, other.begin():
        other.execute(sa.update(agents).where(agents.c.agent_id == "agent-1").values(online=True))  # holds the row
        with engine.connect() as conn, conn.begin():
            conn.execute(sa.text("SET LOCAL lock_timeout = '2s'"))  # waiting would fail the test, not hang it
            assert bulk.mark_agents_seen(conn, seen) == ({"agent-2"}, {"agent-2"})
    with engine.connect() as conn:
        last_seen = {r.agent_id: r.last_seen for r in conn.execute(sa.select(agents.c.agent_id, agents.c.last_seen))}
    assert last_seen == {"agent-1": None, "agent-2": T0 + timedelta(minutes=1)}


def test_ensure_registers_keeps_identity_semantics_and_refuses_another_tenants_register(engine: sa.Engine) -> None:
    tenant, store = _fleet(engine, ["r-1"])
    later = T0 + timedelta(minutes=5)
    with engine.begin() as conn:
        bulk.ensure_registers(conn, [
            (RegisterIdentity("r-1", "atol", serial="S-1", rnm="0001", model='ШТРИХ "М" \\ 01Ф'), "agent-1", later),
            (RegisterIdentity("r-2", "shtrih", serial="S-2"), "agent-1", later),
            (RegisterIdentity("r-2", "shtrih", rnm="0002"), "agent-1", T0),  # the same register twice
        ])  # fmt: skip
    with engine.begin() as conn:  # an older sighting, identity fields unknown: nothing moves back
        bulk.ensure_registers(conn, [(RegisterIdentity("r-1", "atol"), "agent-1", T0)])
    with engine.connect() as conn:
        rows = {r.register_id: r for r in conn.execute(sa.select(registers))}
    assert (rows["r-1"].protocol, rows["r-1"].serial, rows["r-1"].rnm, rows["r-1"].model) == (
        "atol", "S-1", "0001", 'ШТРИХ "М" \\ 01Ф',
    )
    assert (rows["r-1"].first_seen, rows["r-1"].last_seen) == (T0, later)
    assert (rows["r-2"].serial, rows["r-2"].rnm, rows["r-2"].first_seen, rows["r-2"].last_seen) == ("S-2", "0002", later, later)
    assert {(r.tenant_id, r.node_id) for r in rows.values()} == {(tenant, store)}
    with engine.begin() as conn:  # an agent of another tenant claims r-2
        other = repo.create_tenant(conn, "Other", created_at=T0)
        elsewhere = repo.create_node(conn, other, parent_id=None, kind="store", name="X")
        repo.enroll_agent(conn, "agent-x", tenant_id=other, node_id=elsewhere, enrolled_at=T0)
    with engine.connect() as conn, pytest.raises(RegisterOwnedElsewhere, match="'r-2'"):
        bulk.ensure_registers(conn, [(RegisterIdentity("r-2", "shtrih"), "agent-x", later),
                                     (RegisterIdentity("r-9", "shtrih"), "agent-x", later)])  # fmt: skip
    with engine.connect() as conn, pytest.raises(InvalidValue, match=r"registers\.serial"):
        bulk.ensure_registers(conn, [(RegisterIdentity("r-3", "shtrih", serial="x" * 41), "agent-1", later)])
    with engine.connect() as conn, pytest.raises((ValueError, sa.exc.StatementError), match="naive"):
        bulk.ensure_registers(conn, [(RegisterIdentity("r-3", "shtrih"), "agent-1", datetime(2026, 1, 1))])


def test_last_seen_only_moves_forward_and_a_newer_session_brings_an_agent_online(engine: sa.Engine) -> None:
    tenant, store = _fleet(engine, [])
    with engine.begin() as conn:
        bulk.enroll_agents(conn, ["agent-2", "agent-3"], tenant_id=tenant, node_id=store, enrolled_at=T0)
        repo.revoke_agent(conn, "agent-3")
        conn.execute(sa.update(agents).where(agents.c.agent_id == "agent-1").values(status_session=5, online=False))
    later = T0 + timedelta(minutes=2)
    with engine.begin() as conn:
        marked = bulk.mark_agents_seen(conn, {"agent-1": (later, 4), "agent-2": (later, 3), "agent-3": (later, 9)})
    assert marked == ({"agent-1", "agent-2", "agent-3"}, {"agent-2"})  # only agent-2 came online
    with engine.begin() as conn:  # older news: nothing moves back
        assert bulk.mark_agents_seen(conn, {"agent-1": (T0, 2), "agent-2": (T0, 1)}) == ({"agent-1", "agent-2"}, set())
        assert bulk.mark_agents_seen(conn, {}) == (set(), set())
    with engine.connect() as conn:
        rows = {r.agent_id: r for r in conn.execute(sa.select(agents))}
    seen = {a: (r.last_seen, r.last_session, r.online, r.status_session) for a, r in rows.items()}
    assert seen == {
        "agent-1": (later, 4, False, 5),  # session 4 is not newer than its status session 5
        "agent-2": (later, 3, True, 3),
        "agent-3": (later, 9, False, None),  # revoked: never brought online
    }


def test_latest_state_documents_survive_the_transport_as_they_are(engine: sa.Engine) -> None:
    _fleet(engine, ["r-1", "r-2"])
    odd = {"model": 'ШТРИХ "М" \\ 01Ф', "nested": {"list": [1, None, "\\u0416"]}, "empty": {}}
    with engine.begin() as conn:
        bulk.upsert_latest_states(conn, [_latest(1, state=odd), _latest(1, "r-2", state=JsonText('{"a": [1,  2]}'))])
    with engine.connect() as conn:
        stored = {r.register_id: r.state for r in conn.execute(sa.select(register_state.c.register_id, register_state.c.state))}
    assert stored == {"r-1": odd, "r-2": {"a": [1, 2]}}
