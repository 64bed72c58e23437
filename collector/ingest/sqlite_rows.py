"""SQLite forms of the hot ingest writes: fixed SQL text and prebuilt tuples through the driver's
``executemany``, counted with ``rowcount`` instead of ``RETURNING``.

Why: SQLAlchemy spends more Python per row (parameter dicts, bind processors, result rows) than
SQLite needs to store it. Same semantics as ``pg_rows`` and the per-row storage functions
(``bulk`` calls these on SQLite only): duplicates of (agent, session, seq) are skipped, the
latest state is only replaced by a newer one, rows go in the caller's (lock) order. Values are
bound the way the columns' SQLAlchemy types would store them: instants as naive UTC text
``YYYY-MM-DD HH:MM:SS.ffffff``, dates as ``YYYY-MM-DD``, the state document as its JSON text.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

from collector.ingest.row_values import (
    LATEST_COLUMNS,
    NEWER,
    REGISTER_COLUMNS,
    REGISTER_UPSERT,
    document,
    instant,
    seen_assignments,
    seqs,
)
from collector.storage.rows import HistoryRow, LatestState, check_seq

_HISTORY = (
    "INSERT INTO state_history (agent_id, session, seq, register_id, ts, received_at, state, reason)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (agent_id, session, seq) DO NOTHING"
)
_LATEST_NAMES = [name for name, _ in LATEST_COLUMNS]
_LATEST = (
    f"INSERT INTO register_state ({', '.join(_LATEST_NAMES)}) VALUES ({', '.join('?' * len(_LATEST_NAMES))})"
    " ON CONFLICT (register_id) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in _LATEST_NAMES if name not in ("register_id", "link_up"))
    + ", link_up = coalesce(excluded.link_up, register_state.link_up)"
    + f" WHERE {NEWER}"
)
_REGISTERS = (
    f"INSERT INTO registers ({', '.join(name for name, _ in REGISTER_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(REGISTER_COLUMNS))}) {REGISTER_UPSERT}"
)
_SEEN = f"UPDATE agents SET {seen_assignments('?2', '?3', true='1', false='0')} WHERE agent_id = ?1"
_MARKS = (
    "INSERT INTO ingest_marks (agent_id, session, max_seq) VALUES (?, ?, ?)"
    " ON CONFLICT (agent_id, session) DO UPDATE SET max_seq = excluded.max_seq"
    " WHERE excluded.max_seq > ingest_marks.max_seq"
)


def utc_text(value: datetime) -> str:
    """An instant as ``UtcDateTime`` stores it on SQLite."""
    if value.tzinfo is not UTC:  # the collector's own clock reads UTC: the common case is one call
        value = instant(value).astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:-6]  # without "+00:00"


def _local_text(value: datetime | None) -> str | None:
    """A naive register-clock time as ``sa.DateTime`` stores it on SQLite."""
    return None if value is None else value.replace(tzinfo=None).isoformat(" ", "microseconds")


def _date_text(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def _executemany(conn: sa.Connection, sql: str, rows: list[tuple[Any, ...]]) -> int:
    return conn.exec_driver_sql(sql, rows).rowcount  # a list of tuples: executemany


def insert_history(conn: sa.Connection, rows: Sequence[HistoryRow]) -> int:
    """Append states to ``state_history``, skipping stored (agent, session, seq); count the new ones."""
    values = []
    for r in rows:
        made = utc_text(r.ts)
        received = made if r.received_at is r.ts else utc_text(r.received_at)  # a live state: one time
        values.append((r.agent_id, *seqs(r.session, r.seq), r.register_id, made, received, document(r.state), r.reason))
    return _executemany(conn, _HISTORY, values)


def upsert_latest_states(conn: sa.Connection, rows: Sequence[LatestState]) -> int:
    """Write each register's row unless the stored one is newer; returns how many were written."""
    values = []
    for r in rows:
        made = utc_text(r.agent_ts)
        received = made if r.received_at is r.agent_ts else utc_text(r.received_at)  # a live state: one time
        values.append((
            r.register_id, r.agent_id, *seqs(r.session, r.seq), made, received, document(r.state), r.shift_status,
            r.unsent_count, _local_text(r.oldest_unsent_at), _date_text(r.fn_valid_until), r.link_up,
        ))  # fmt: skip
    return _executemany(conn, _LATEST, values)


def advance_ingest_marks(conn: sa.Connection, marks: Sequence[tuple[str, int, int]]) -> None:
    """Raise each (agent, session)'s committed mark to ``max_seq``; never lowers one."""
    values = [(agent, *seqs(session, seq)) for agent, session, seq in marks]
    _executemany(conn, _MARKS, values)


def upsert_registers(conn: sa.Connection, rows: Sequence[tuple[Any, ...]]) -> int:
    """Upsert register identities (``REGISTER_COLUMNS`` order, instants aware); returns how many
    were written — a register of another tenant is not."""
    values = [(*row[:9], utc_text(row[9]), utc_text(row[10])) for row in rows]
    return _executemany(conn, _REGISTERS, values)


def mark_agents_seen(conn: sa.Connection, seen: Sequence[tuple[str, datetime, int]]) -> None:
    """Move each (agent, last seen, session) forward, in the caller's (lock) order."""
    _executemany(conn, _SEEN, [(agent, utc_text(at), check_seq("session", session)) for agent, at, session in seen])
