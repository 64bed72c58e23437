"""Ingest writes: dedup on (agent, session, seq), latest-state ordering, marks, agent status,
registers, dead letters and retention — on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.storage import AgentRevoked, InvalidValue, RegisterOwnedElsewhere, UnknownAgent
from collector.storage import repository as repo
from collector.storage.rows import EventRow, HistoryRow, LatestState, RegisterEvaluation, RegisterIdentity
from collector.storage.schema import events, register_state, registers, state_history
from protocol.kkt.state import RegisterState

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
DB_SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def register(conn: sa.Connection) -> str:
    """A tenant, a store, an enrolled agent ``agent-1`` and its register ``shtrih-1``."""
    tenant = repo.create_tenant(conn, "T", created_at=T0)
    store = repo.create_node(conn, tenant, parent_id=None, kind="store", name="S")
    repo.enroll_agent(conn, "agent-1", tenant_id=tenant, node_id=store, enrolled_at=T0)
    repo.ensure_register(
        conn, RegisterIdentity("shtrih-1", "shtrih", serial="1"), agent_id="agent-1", seen_at=T0
    )
    return "shtrih-1"


def history(agent: str, session: int, seq: int, register: str = "shtrih-1", minutes: int = 0) -> HistoryRow:
    ts = T0 + timedelta(minutes=minutes)
    return HistoryRow(
        agent, session, seq, register, ts=ts, received_at=ts, state={"seq": seq, "session": session}
    )


def latest(
    session: int, seq: int, *, agent: str = "agent-1", minutes: int = 0, **extra: object
) -> LatestState:
    ts = T0 + timedelta(minutes=minutes)
    return LatestState(
        "shtrih-1",
        agent,
        session,
        seq,
        agent_ts=ts,
        received_at=ts,
        state={"session": session, "seq": seq},
        **extra,
    )


def stored_latest(conn: sa.Connection) -> sa.Row:
    return conn.execute(sa.select(register_state).where(register_state.c.register_id == "shtrih-1")).one()


def test_same_history_record_twice_is_stored_once(
    conn: sa.Connection, register: str, count_rows: Callable
) -> None:
    assert repo.insert_history(conn, [history("agent-1", 1, 1), history("agent-1", 1, 2)]) == 2
    assert repo.insert_history(conn, [history("agent-1", 1, 2), history("agent-1", 1, 3)]) == 1
    assert repo.insert_history(conn, [history("agent-1", 1, 1)]) == 0
    assert count_rows(state_history) == 3


def test_duplicates_inside_one_batch_count_once(
    conn: sa.Connection, register: str, count_rows: Callable
) -> None:
    batch = [history("agent-1", 2, 5), history("agent-1", 2, 5), history("agent-1", 3, 5)]
    assert repo.insert_history(conn, batch) == 2
    assert count_rows(state_history) == 2


def test_empty_batch_writes_nothing(conn: sa.Connection, register: str) -> None:
    assert repo.insert_history(conn, []) == 0 and repo.insert_events(conn, []) == 0


@DB_SETTINGS
@given(keys=st.lists(st.tuples(st.integers(1, 3), st.integers(0, 6)), max_size=30), split=st.integers(0, 30))
def test_history_dedup_keeps_exactly_the_distinct_keys(
    conn: sa.Connection, register: str, keys: list[tuple[int, int]], split: int
) -> None:
    agent = f"agent-{uuid.uuid4().hex[:8]}"  # a fresh key space per example in the shared transaction
    rows = [history(agent, session, seq) for session, seq in keys]
    new = repo.insert_history(conn, rows[:split]) + repo.insert_history(conn, rows[split:])
    stored = conn.execute(
        sa.select(state_history.c.session, state_history.c.seq).where(state_history.c.agent_id == agent)
    ).all()
    assert new == len(set(keys)) == len(stored)
    assert set(map(tuple, stored)) == set(keys)


def test_events_deduplicate_on_the_same_key(conn: sa.Connection, register: str, count_rows: Callable) -> None:
    event = EventRow(
        "agent-1", 4, 9, "shtrih-1", kind="shift_opened", ts=T0, received_at=T0, data={"shift": 7}
    )
    assert repo.insert_events(conn, [event]) == 1
    assert repo.insert_events(conn, [event]) == 0
    assert count_rows(events) == 1
    assert conn.execute(sa.select(events.c.data)).scalar_one() == {"shift": 7}


def test_out_of_range_sequence_numbers_are_refused(conn: sa.Connection, register: str) -> None:
    with pytest.raises(InvalidValue):
        repo.insert_history(conn, [history("agent-1", 1, 2**63)])
    with pytest.raises(InvalidValue):
        repo.upsert_latest_state(conn, latest(-1, 0))


def test_latest_state_ignores_older_and_takes_newer(conn: sa.Connection, register: str) -> None:
    assert repo.upsert_latest_state(conn, latest(5, 10))
    assert not repo.upsert_latest_state(conn, latest(5, 9, minutes=99)), (
        "an earlier seq must not win by its clock"
    )
    assert not repo.upsert_latest_state(conn, latest(4, 500)), "a replayed record of an older session"
    assert not repo.upsert_latest_state(conn, latest(5, 10)), "the same record again"
    assert (stored_latest(conn).session, stored_latest(conn).seq) == (5, 10)
    assert repo.upsert_latest_state(conn, latest(5, 11))
    assert repo.upsert_latest_state(conn, latest(6, 0))
    assert stored_latest(conn).state == {"session": 6, "seq": 0}


def test_register_moved_to_another_agent_is_ordered_by_agent_time(conn: sa.Connection, register: str) -> None:
    assert repo.upsert_latest_state(conn, latest(9, 100, minutes=10))
    assert not repo.upsert_latest_state(conn, latest(1, 1, agent="agent-2", minutes=5))
    assert repo.upsert_latest_state(conn, latest(1, 2, agent="agent-2", minutes=11))
    assert stored_latest(conn).agent_id == "agent-2"


@DB_SETTINGS
@given(keys=st.lists(st.tuples(st.integers(1, 4), st.integers(0, 20)), min_size=1, max_size=15))
def test_latest_state_ends_at_the_greatest_session_and_seq_in_any_order(
    conn: sa.Connection, register: str, keys: list[tuple[int, int]]
) -> None:
    conn.execute(sa.delete(register_state))
    for session, seq in keys:
        repo.upsert_latest_state(conn, latest(session, seq))
    row = stored_latest(conn)
    assert (row.session, row.seq) == max(keys)


def test_link_up_and_evaluation_left_none_keep_what_is_stored(conn: sa.Connection, register: str) -> None:
    evaluation = RegisterEvaluation("major", 3600, T0 + timedelta(hours=1), T0)
    repo.upsert_latest_state(conn, latest(1, 1, link_up=False, evaluation=evaluation))
    repo.upsert_latest_state(conn, latest(1, 2))
    row = stored_latest(conn)
    assert row.link_up is False and row.worst_severity == "major" and row.blocks_at == T0 + timedelta(hours=1)
    assert repo.set_link_up(conn, "shtrih-1", True)
    assert repo.set_register_evaluation(conn, "shtrih-1", RegisterEvaluation(None, None, None, T0))
    row = stored_latest(conn)
    assert row.link_up is True and row.worst_severity is None and row.blocks_at is None


def test_unknown_severity_is_refused(conn: sa.Connection, register: str) -> None:
    with pytest.raises(InvalidValue, match="severity"):
        repo.upsert_latest_state(conn, latest(1, 1, evaluation=RegisterEvaluation("fatal", None, None, T0)))


def test_latest_state_columns_come_from_the_register_state(
    conn: sa.Connection, register: str, make_state: Callable[..., RegisterState]
) -> None:
    state = make_state("1", unsent=4, fn_valid_until=date(2027, 1, 31))
    row = LatestState.from_register_state(
        "shtrih-1", state, agent_id="agent-1", session=1, seq=1, agent_ts=T0, received_at=T0
    )
    repo.upsert_latest_state(conn, row)
    stored = stored_latest(conn)
    assert (stored.shift_status, stored.unsent_count, stored.fn_valid_until) == ("open", 4, date(2027, 1, 31))
    assert stored.oldest_unsent_at == datetime(2026, 11, 25, 12, 0)  # register local time, naive
    assert RegisterState.model_validate(stored.state) == state


def test_ingest_mark_only_moves_up(conn: sa.Connection) -> None:
    assert repo.advance_ingest_mark(conn, "agent-1", 3, 100)
    assert not repo.advance_ingest_mark(conn, "agent-1", 3, 40)
    assert repo.advance_ingest_mark(conn, "agent-1", 4, 1)
    assert repo.advance_ingest_mark(conn, "agent-1", 3, 101)
    assert repo.ingest_marks(conn, "agent-1") == {3: 101, 4: 1}
    assert repo.ingest_marks(conn, "agent-other") == {}


def test_death_of_an_older_session_is_ignored(conn: sa.Connection, register: str) -> None:
    outcome = repo.StatusOutcome
    assert repo.upsert_agent_status(conn, "agent-1", online=True, session=7, at=T0) is outcome.APPLIED
    assert repo.upsert_agent_status(conn, "agent-1", online=False, session=6, at=T0) is outcome.STALE
    assert repo.get_agent(conn, "agent-1").online is True
    assert repo.upsert_agent_status(conn, "agent-1", online=False, session=7, at=T0) is outcome.APPLIED
    assert repo.get_agent(conn, "agent-1").online is False
    # A late "online" of the session that already died does not revive it; a new session does.
    assert repo.upsert_agent_status(conn, "agent-1", online=True, session=7, at=T0) is outcome.STALE
    assert repo.upsert_agent_status(conn, "agent-1", online=True, session=8, at=T0) is outcome.APPLIED
    agent = repo.get_agent(conn, "agent-1")
    assert (agent.online, agent.status_session) == (True, 8)
    assert repo.upsert_agent_status(conn, "nobody", online=True, session=1, at=T0) is outcome.UNKNOWN_AGENT


def test_agent_seen_only_moves_forward(conn: sa.Connection, register: str) -> None:
    repo.mark_agent_seen(conn, "agent-1", session=3, at=T0 + timedelta(minutes=5))
    repo.mark_agent_seen(conn, "agent-1", session=2, at=T0)
    agent = repo.get_agent(conn, "agent-1")
    assert (agent.last_session, agent.last_seen) == (3, T0 + timedelta(minutes=5))


def test_ensure_register_places_it_under_the_agents_store_and_keeps_known_identity(
    conn: sa.Connection, register: str
) -> None:
    later = T0 + timedelta(hours=1)
    repo.ensure_register(
        conn,
        RegisterIdentity("shtrih-1", "shtrih", rnm="0001", fn_serial=None),
        agent_id="agent-1",
        seen_at=later,
    )
    repo.ensure_register(conn, RegisterIdentity("shtrih-1", "shtrih"), agent_id="agent-1", seen_at=T0)
    row = conn.execute(sa.select(registers)).one()
    agent = repo.get_agent(conn, "agent-1")
    assert (row.tenant_id, row.node_id) == (agent.tenant_id, agent.node_id)
    assert (row.serial, row.rnm, row.first_seen, row.last_seen) == ("1", "0001", T0, later)


def test_ensure_register_refuses_unknown_revoked_and_foreign_agents(
    conn: sa.Connection, register: str
) -> None:
    identity = RegisterIdentity("shtrih-1", "shtrih")
    with pytest.raises(UnknownAgent):
        repo.ensure_register(conn, identity, agent_id="ghost", seen_at=T0)
    other = repo.create_tenant(conn, "Other", created_at=T0)
    store = repo.create_node(conn, other, parent_id=None, kind="store", name="X")
    repo.enroll_agent(conn, "agent-x", tenant_id=other, node_id=store, enrolled_at=T0)
    with pytest.raises(RegisterOwnedElsewhere):
        repo.ensure_register(conn, identity, agent_id="agent-x", seen_at=T0)
    assert repo.revoke_agent(conn, "agent-x")
    with pytest.raises(AgentRevoked):
        repo.ensure_register(conn, RegisterIdentity("atol-9", "atol"), agent_id="agent-x", seen_at=T0)
    assert conn.execute(sa.select(registers.c.tenant_id)).scalar_one() != other


def test_dead_letters_keep_the_exact_bytes(conn: sa.Connection) -> None:
    raw = b"\x00\xff{not json\x80" + bytes(range(256))
    letter_id = repo.dead_letter(conn, "kassa/v1/a/state/r", "invalid_json", "line 1", raw, received_at=T0)
    [letter] = repo.list_dead_letters(conn)
    assert (letter.id, letter.raw, letter.topic, letter.reason, letter.received_at) == (
        letter_id,
        raw,
        "kassa/v1/a/state/r",
        "invalid_json",
        T0,
    )


def test_retention_deletes_only_what_is_older(
    conn: sa.Connection, register: str, count_rows: Callable
) -> None:
    repo.insert_history(conn, [history("agent-1", 1, seq, minutes=seq) for seq in range(10)])
    # Received a minute apart, timed 200 days earlier. Ingest never stores an agent's raw clock as
    # ts (collector/ingest/agent_clock.py re-bases it on the arrival), so on PostgreSQL, whose
    # history is partitioned by day of ts, ts decides; SQLite deletes by received_at.
    made = T0 - timedelta(days=200)
    repo.insert_events(conn, [EventRow("agent-1", 1, 100 + m, "shtrih-1", "x", made, T0 + timedelta(minutes=m)) for m in range(4)])
    repo.dead_letter(conn, "t", "r", "", b"old", received_at=T0 - timedelta(days=40))
    repo.dead_letter(conn, "t", "r", "", b"new", received_at=T0)
    cutoff = T0 + timedelta(minutes=6)
    assert repo.purge_history(conn, cutoff) == 6
    purged_events = 4 if conn.dialect.name == "postgresql" else 1
    assert repo.purge_events(conn, T0 + timedelta(minutes=1)) == purged_events
    assert repo.purge_dead_letters(conn, T0 - timedelta(days=30)) == 1
    assert count_rows(state_history) == 4 and count_rows(events) == 4 - purged_events
    remaining = conn.execute(sa.select(sa.func.min(state_history.c.ts))).scalar_one()
    assert remaining == cutoff
