"""Retention: delete what is older than the configured horizon, by when the collector received it.

Never by the agent's timestamps: an agent whose clock is 200 days behind would otherwise have its
fresh rows deleted by the next run.

Each ``purge_*`` takes an optional ``limit``: the retention job deletes in chunks of that many
rows, one short transaction each, so a first purge of months of history never holds the write
lock (SQLite) or a long row lock (PostgreSQL) while ingest is waiting to commit.

On PostgreSQL, state history and register events are partitioned by day of ``ts``
(``collector.storage.partitions``): whole days before the horizon are dropped, and only the rows
of the default partition are deleted. ``ts`` is on the collector's clock there too.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from collector.storage.partitions import DEFAULT_SUFFIX, drop_days_before
from collector.storage.schema import agent_events, dead_letters, events, state_history


def _purge(conn: sa.Connection, table: sa.Table, when: sa.Column[datetime], older_than: datetime, limit: int | None) -> int:
    if limit is None:
        return conn.execute(sa.delete(table).where(when < older_than)).rowcount
    oldest = sa.select(table.c.id).where(when < older_than).order_by(when).limit(limit).scalar_subquery()
    return conn.execute(sa.delete(table).where(table.c.id.in_(oldest))).rowcount


def _purge_partitioned(conn: sa.Connection, table: sa.Table, older_than: datetime, limit: int | None) -> int:
    if conn.dialect.name != "postgresql":
        return _purge(conn, table, table.c.received_at, older_than, limit)
    default = sa.table(table.name + DEFAULT_SUFFIX, sa.column("ctid"), sa.column("ts"))
    old = sa.select(default.c.ctid).where(default.c.ts < older_than)
    if limit is not None:
        old = old.limit(limit)
    deleted = conn.execute(sa.delete(default).where(default.c.ctid.in_(old.scalar_subquery()))).rowcount
    return deleted + drop_days_before(conn, table.name, older_than)


def purge_history(conn: sa.Connection, older_than: datetime, *, limit: int | None = None) -> int:
    """Delete state history older than ``older_than``; returns rows deleted.

    Latest state, alerts and the ingest marks (the agents' acks) are untouched.
    """
    return _purge_partitioned(conn, state_history, older_than, limit)


def purge_events(conn: sa.Connection, older_than: datetime, *, limit: int | None = None) -> int:
    """Register and agent events received before ``older_than``; returns rows deleted (with
    ``limit``, at most that many of each)."""
    deleted = _purge_partitioned(conn, events, older_than, limit)
    return deleted + _purge(conn, agent_events, agent_events.c.received_at, older_than, limit)


def purge_dead_letters(conn: sa.Connection, older_than: datetime, *, limit: int | None = None) -> int:
    return _purge(conn, dead_letters, dead_letters.c.received_at, older_than, limit)
