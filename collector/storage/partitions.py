"""Daily partitions of the history tables on PostgreSQL (native declarative partitioning).

``state_history`` and ``events`` are ``PARTITION BY RANGE (ts)``: one partition per UTC day,
``<table>_pYYYYMMDD``, created ``DAYS_AHEAD`` days ahead by :func:`maintain` (after every
migration and on every retention run), plus ``<table>_default`` for rows outside them (a record
replayed from a long outage, days no partition was made for). Retention drops whole days
(:func:`drop_days_before`, milliseconds whatever the day's size) and deletes old rows of the
default partition in chunks. Reads by register and time (history, charts, event lists) touch only
the days they ask for.

Why native partitioning and not pg_partman (in Debian as postgresql-15-partman): it needs an
extension installed by a superuser and a background worker configured in postgresql.conf; the
collector already runs an hourly job and connects as the table owner, so it manages partitions
itself with plain DDL, on any PostgreSQL ≥ 11 including managed ones.

``ts`` is the record time on the collector's clock (``collector.ingest.agent_clock``), so an agent
with a wrong clock cannot put its rows into a day retention is about to drop. SQLite keeps one
table per kind and DELETE retention.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa

PARTITIONED = ("state_history", "events")
# A partitioned table cannot have a unique key without ``ts``, and a redelivered message gets a
# new ``ts`` (a live one is timed by its arrival), so duplicates of (agent, session, seq) are
# looked for within this distance of the row's ``ts``: the broker's redelivery after a collector
# restart, or the outbox's replay (re-timed to when the record was made, see agent_clock).
REDELIVERY_WINDOW = timedelta(days=2)
DAYS_AHEAD = 7
DEFAULT_SUFFIX = "_default"
_LOCK_ID = 0x6B617373_70617274  # "kasspart": one collector at a time creates or drops partitions
_DAY_NAME = re.compile(r"^(?P<table>[a-z_]+)_p(?P<day>\d{8})$")


def _serialize(conn: sa.Connection) -> None:
    """Several collectors run the retention job: they take turns (released at commit)."""
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_LOCK_ID)))


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def is_partition(name: str) -> bool:
    """A partition's table name (compared with the schema, partitions are not tables of their own)."""
    match = _DAY_NAME.match(name)
    if match is not None:
        return match["table"] in PARTITIONED
    return any(name == table + DEFAULT_SUFFIX for table in PARTITIONED)


def _start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def day_partitions(conn: sa.Connection, table: str) -> dict[date, str]:
    """The table's day partitions, by day (the default partition is not one)."""
    names = conn.exec_driver_sql(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %(table)s",
        {"table": table},
    ).scalars()
    found: dict[date, str] = {}
    for name in names:
        match = _DAY_NAME.match(name)
        if match is not None:
            found[datetime.strptime(match["day"], "%Y%m%d").date()] = name
    return found


def create_day(conn: sa.Connection, table: str, day: date) -> str:
    """Create the day's partition. Rows of that day already in the default partition are moved
    into it first, since PostgreSQL refuses a partition that the default's rows would belong to."""
    name, default = partition_name(table, day), table + DEFAULT_SUFFIX
    bounds = {"lo": _start(day), "hi": _start(day + timedelta(days=1))}
    conn.exec_driver_sql(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    strays = f"FROM {default} WHERE ts >= %(lo)s AND ts < %(hi)s"
    if conn.exec_driver_sql(f"SELECT EXISTS (SELECT 1 {strays})", bounds).scalar():
        conn.exec_driver_sql(f"INSERT INTO {name} SELECT * {strays}", bounds)
        conn.exec_driver_sql(f"DELETE {strays}", bounds)
    # DDL takes no parameters; the bounds are ISO instants made from a date here, never input.
    attach = f"FOR VALUES FROM ('{bounds['lo'].isoformat()}') TO ('{bounds['hi'].isoformat()}')"
    conn.exec_driver_sql(f"ALTER TABLE {table} ATTACH PARTITION {name} {attach}")
    return name


def maintain(conn: sa.Connection, today: date, days_ahead: int = DAYS_AHEAD) -> list[str]:
    """Create the partitions of ``today`` and the ``days_ahead`` days after it that are missing;
    returns their names. A no-op on SQLite."""
    if conn.dialect.name != "postgresql":
        return []
    _serialize(conn)
    created = []
    for table in PARTITIONED:
        existing = day_partitions(conn, table)
        for offset in range(days_ahead + 1):
            day = today + timedelta(days=offset)
            if day not in existing:
                created.append(create_day(conn, table, day))
    return created


def drop_days_before(conn: sa.Connection, table: str, cutoff: datetime) -> int:
    """Drop the day partitions wholly before ``cutoff``; returns the rows they held: autovacuum's
    count from its last ANALYZE (a day at the horizon was analyzed months ago; counting millions of
    rows would take longer than dropping them), an exact count for one never analyzed (small)."""
    _serialize(conn)
    dropped = 0
    for day, name in sorted(day_partitions(conn, table).items()):
        if _start(day + timedelta(days=1)) > cutoff:
            break
        rows = conn.exec_driver_sql("SELECT reltuples FROM pg_class WHERE oid = %(n)s::regclass", {"n": name}).scalar_one()
        if rows < 0:
            rows = conn.exec_driver_sql(f"SELECT count(*) FROM {name}").scalar_one()
        dropped += int(rows)
        conn.exec_driver_sql(f"DROP TABLE {name}")
    return dropped


def _near(ts: datetime) -> tuple[datetime, datetime]:
    return ts - REDELIVERY_WINDOW, ts + REDELIVERY_WINDOW


def unseen(conn: sa.Connection, table: sa.Table, values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``values`` without the rows whose (agent, session, seq) is stored near their ``ts`` or came
    earlier in ``values`` (what ``ON CONFLICT DO NOTHING`` does on an unpartitioned table)."""
    first: dict[tuple[str, int, int], dict[str, Any]] = {}
    for row in values:
        first.setdefault((row["agent_id"], row["session"], row["seq"]), row)
    if not first:
        return []
    c = table.c
    near = [
        sa.and_(c.agent_id == agent, c.session == session, c.seq == seq, c.ts.between(*_near(row["ts"])))
        for (agent, session, seq), row in first.items()
    ]
    stored = {tuple(row) for row in conn.execute(sa.select(c.agent_id, c.session, c.seq).where(sa.or_(*near)))}
    return [row for key, row in first.items() if key not in stored]
