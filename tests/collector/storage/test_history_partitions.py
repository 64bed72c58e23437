"""The history's partition lifecycle (collector/storage/partitions.py, revision 0017): a populated
database is converted with every row readable as before (also across a day boundary), day
partitions exist a week ahead, retention drops whole days, a day made late takes its rows out of
the default partition, and duplicates are still skipped without a unique key."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from collector.housekeeping import RetentionJob, RetentionPolicy
from collector.storage import begin_write, create_engine_from_url, migrate
from collector.storage import repository as repo
from collector.storage.partitions import DAYS_AHEAD, day_partitions, maintain, partition_name
from collector.storage.rows import EventRow, HistoryRow, RegisterIdentity
from collector.storage.schema import agents, events, registers, state_history
from collector.storage.scope import Scope

sys.path.insert(0, str(Path(__file__).parents[2]))  # importlib mode: tests/dbkit.py
import dbkit

BEFORE_PARTITIONS = "0013"
AGENT, REGISTER = "agent-p", "kkt-p"
TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
# Three days of history, every 2 hours, ending yesterday: rows on both sides of two midnights.
TIMES = [TODAY - timedelta(days=3) + timedelta(hours=2 * i) for i in range(36)]
BOUNDARY = (TODAY - timedelta(days=2, hours=3), TODAY - timedelta(days=2) + timedelta(hours=3))  # 21:00 → 03:00
_HISTORY = ("id", "agent_id", "session", "seq", "register_id", "ts", "received_at", "state")
_EVENTS = ("id", "agent_id", "session", "seq", "register_id", "kind", "ts", "received_at", "data")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/partitions.db"
    else:
        with dbkit.fresh_pg_database("kassa_partitions") as pg_url:
            yield pg_url


@pytest.fixture
def engine(url: str) -> Iterator[sa.Engine]:
    eng = create_engine_from_url(url)
    try:
        yield eng
    finally:
        eng.dispose()


def _populate_before_partitions(engine: sa.Engine) -> None:
    """History as revision 0013 stored it (full state documents, no reason column)."""
    migrate(engine, BEFORE_PARTITIONS)
    with begin_write(engine) as conn:
        tenant = repo.create_tenant(conn, "Ромашка")
        store = repo.create_node(conn, tenant, parent_id=None, kind="store", name="Тверская 1")
        # Raw rows: today's repository also keeps tables that revision did not have (register_summary).
        conn.execute(sa.insert(agents).values(agent_id=AGENT, tenant_id=tenant, node_id=store, enrolled_at=TIMES[0]))
        conn.execute(sa.insert(registers).values(
            register_id=REGISTER, tenant_id=tenant, node_id=store, agent_id=AGENT, protocol="shtrih",
            first_seen=TIMES[0], last_seen=TIMES[0],
        ))
        envelope = [{"agent_id": AGENT, "session": 1, "seq": seq, "register_id": REGISTER, "ts": at, "received_at": at}
                    for seq, at in enumerate(TIMES)]  # fmt: skip
        state = {"vendor": "shtrih", "protocol": "shtrih", "shift": {"status": "open"}, "ofd": {"unsent_count": 3}}
        conn.execute(sa.insert(state_history), [{**row, "state": state} for row in envelope])
        conn.execute(sa.insert(events), [{**row, "seq": 1000 + row["seq"], "kind": "shift_opened", "data": {}} for row in envelope])


def _rows(engine: sa.Engine, table: sa.Table, columns: tuple[str, ...]) -> list[tuple[object, ...]]:
    """The rows inside the boundary window, as the register's readers select them (by register and ts)."""
    with engine.connect() as conn:
        query = sa.select(*(table.c[name] for name in columns)).where(
            table.c.register_id == REGISTER, table.c.ts >= BOUNDARY[0], table.c.ts < BOUNDARY[1]
        )
        return [tuple(row) for row in conn.execute(query.order_by(table.c.ts, table.c.id))]


def test_a_populated_database_is_converted_and_reads_the_same_rows(engine: sa.Engine) -> None:
    _populate_before_partitions(engine)
    history_before, events_before = _rows(engine, state_history, _HISTORY), _rows(engine, events, _EVENTS)
    assert len(history_before) == 3 and len(events_before) == 3  # 22:00, 00:00, 02:00
    migrate(engine)
    assert _rows(engine, state_history, _HISTORY) == history_before
    assert _rows(engine, events, _EVENTS) == events_before
    with begin_write(engine) as conn:
        points = repo.state_history(conn, Scope.admin(), REGISTER, BOUNDARY[0], BOUNDARY[1])
        listed = repo.list_events(conn, Scope.admin(), REGISTER, since=BOUNDARY[0], until=BOUNDARY[1])
        assert [(p.seq, p.ts, p.reason, p.state["ofd"]) for p in points] == [
            (row[3], row[5], None, {"unsent_count": 3}) for row in history_before
        ]
        assert sorted(e.seq for e in listed) == [row[3] for row in events_before]
        # New rows continue the old ids, and the old rows are counted once.
        repo.insert_history(conn, [HistoryRow(AGENT, 2, 1, REGISTER, TODAY, TODAY, {})])
        ids = conn.execute(sa.select(state_history.c.id).order_by(state_history.c.id)).scalars().all()
        assert len(ids) == len(TIMES) + 1 and ids[-1] > ids[-2]
        if conn.dialect.name == "postgresql":
            days = {at.date() for at in TIMES} | {TODAY.date() + timedelta(days=d) for d in range(DAYS_AHEAD + 1)}
            for table in ("state_history", "events"):
                assert set(day_partitions(conn, table)) == days
            default_rows = conn.exec_driver_sql("SELECT count(*) FROM state_history_default").scalar_one()
            assert default_rows == 0  # every old row found its day


@pytest.mark.postgres
@pytest.mark.parametrize("url", ["postgresql"], indirect=True)
def test_partitions_exist_ahead_and_retention_drops_whole_days(engine: sa.Engine) -> None:
    migrate(engine)
    now = TODAY + timedelta(hours=12)
    old_days = [(TODAY - timedelta(days=d)).date() for d in (200, 199, 10)]
    with begin_write(engine) as conn:
        tenant = repo.create_tenant(conn, "Ромашка")
        store = repo.create_node(conn, tenant, parent_id=None, kind="store", name="Тверская 1")
        repo.enroll_agent(conn, AGENT, tenant_id=tenant, node_id=store, enrolled_at=now)
        repo.ensure_register(conn, RegisterIdentity(REGISTER, "shtrih"), agent_id=AGENT, seen_at=now)
        for day in old_days[:2]:
            maintain(conn, day, days_ahead=0)  # a day made for rows from long ago
        ages = [200, 200, 199, 190, 10, 0]  # 190: no day partition, in the default one
        repo.insert_history(conn, [HistoryRow(AGENT, 1, seq, REGISTER, now - timedelta(days=age), now, {})
                                   for seq, age in enumerate(ages)])  # fmt: skip
        before = set(day_partitions(conn, "state_history"))
    assert {TODAY.date() + timedelta(days=d) for d in range(DAYS_AHEAD + 1)} <= before
    job = RetentionJob(engine, RetentionPolicy(history_days=180), clock=lambda: now)
    assert job.run_once()["state_history"] == 4
    with engine.connect() as conn:
        after = set(day_partitions(conn, "state_history"))
        left = conn.execute(sa.select(state_history.c.seq).order_by(state_history.c.seq)).scalars().all()
        names = set(sa.inspect(conn).get_table_names())
    assert before - after == set(old_days[:2])  # whole days dropped, nothing else
    assert partition_name("state_history", old_days[0]) not in names
    assert left == [4, 5]


@pytest.mark.postgres
@pytest.mark.parametrize("url", ["postgresql"], indirect=True)
def test_a_day_created_late_takes_its_rows_from_the_default_partition(engine: sa.Engine) -> None:
    migrate(engine)
    far = TODAY + timedelta(days=DAYS_AHEAD + 3, hours=5)
    with begin_write(engine) as conn:
        tenant = repo.create_tenant(conn, "Ромашка")
        store = repo.create_node(conn, tenant, parent_id=None, kind="store", name="Тверская 1")
        repo.enroll_agent(conn, AGENT, tenant_id=tenant, node_id=store, enrolled_at=TODAY)
        repo.ensure_register(conn, RegisterIdentity(REGISTER, "shtrih"), agent_id=AGENT, seen_at=TODAY)
        repo.insert_events(conn, [EventRow(AGENT, 1, 1, REGISTER, "x", far, far)])
        created = maintain(conn, far.date() - timedelta(days=1), days_ahead=2)
        moved = conn.exec_driver_sql(f"SELECT count(*) FROM {partition_name('events', far.date())}").scalar_one()
        stays = conn.exec_driver_sql("SELECT count(*) FROM events_default").scalar_one()
    assert partition_name("events", far.date()) in created and (moved, stays) == (1, 0)


@pytest.mark.postgres
@pytest.mark.parametrize("url", ["postgresql"], indirect=True)
def test_a_redelivered_record_is_stored_once_without_a_unique_key(engine: sa.Engine) -> None:
    migrate(engine)
    with begin_write(engine) as conn:
        tenant = repo.create_tenant(conn, "Ромашка")
        store = repo.create_node(conn, tenant, parent_id=None, kind="store", name="Тверская 1")
        repo.enroll_agent(conn, AGENT, tenant_id=tenant, node_id=store, enrolled_at=TODAY)
        repo.ensure_register(conn, RegisterIdentity(REGISTER, "shtrih"), agent_id=AGENT, seen_at=TODAY)
        first = HistoryRow(AGENT, 1, 7, REGISTER, TODAY, TODAY, {})
        later = HistoryRow(AGENT, 1, 7, REGISTER, TODAY + timedelta(hours=20), TODAY + timedelta(hours=20), {})
        assert repo.insert_history(conn, [first, first]) == 1
        assert repo.insert_history(conn, [later]) == 0  # the next day's partition, within the window
        assert repo.insert_events(conn, [EventRow(AGENT, 1, 8, REGISTER, "x", TODAY, TODAY)] * 2) == 1
