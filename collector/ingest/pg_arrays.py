"""PostgreSQL forms of the hot ingest writes: one ``INSERT … SELECT FROM unnest(arrays)`` per batch.

Why: SQLAlchemy sends a RETURNING batch as one multi-row ``VALUES`` statement whose text differs
with every batch size, and psycopg parses such a statement in Python on every call (its query
cache only keeps short texts) — ~140 µs per message, more than the database needed. Here the
statement text is fixed and short (cached, then server-prepared by psycopg) and each column
travels as one array parameter.

Semantics are those of ``collector.storage.ingest`` and of ``bulk`` (which calls these on
PostgreSQL only): duplicates of (agent, session, seq) are skipped, the latest state is only
replaced by a newer one, rows are written in the caller's order (``WITH ORDINALITY``), so lock
order stays the one ``bulk`` documents. Bound values get the checks the column types would
apply (uint64 range, aware instants), since driver-level SQL bypasses SQLAlchemy's types.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

import sqlalchemy as sa

from collector.storage.partitions import REDELIVERY_WINDOW
from collector.storage.rows import HistoryRow, JsonText, LatestState, check_seq

# (column, PostgreSQL element type); json and jsonb travel as text and are cast per element.
_DOCUMENTS = ("json", "jsonb")
_HISTORY_COLUMNS = (
    ("agent_id", "text"), ("session", "bigint"), ("seq", "bigint"), ("register_id", "text"),
    ("ts", "timestamptz"), ("received_at", "timestamptz"), ("state", "json"), ("reason", "text"),
)
_LATEST_COLUMNS = (
    ("register_id", "text"), ("agent_id", "text"), ("session", "bigint"), ("seq", "bigint"),
    ("agent_ts", "timestamptz"), ("received_at", "timestamptz"), ("state", "jsonb"),
    ("shift_status", "text"), ("unsent_count", "integer"), ("oldest_unsent_at", "timestamp"),
    ("fn_valid_until", "date"), ("link_up", "boolean"),
)
# The partitioned history has no unique key (collector.storage.partitions): a stored duplicate is
# looked for near the row's ts, which prunes the lookup to a few day partitions.
_HISTORY_UNSEEN = (
    "WHERE NOT EXISTS (SELECT 1 FROM state_history h WHERE h.agent_id = u.agent_id AND h.session = u.session"
    " AND h.seq = u.seq AND h.ts BETWEEN u.ts - %(window)s::interval AND u.ts + %(window)s::interval)"
)
_NEWER = (
    "(excluded.agent_id = register_state.agent_id AND (excluded.session > register_state.session"
    " OR (excluded.session = register_state.session AND excluded.seq > register_state.seq)))"
    " OR (excluded.agent_id <> register_state.agent_id AND excluded.agent_ts > register_state.agent_ts)"
)


@cache
def _insert_select(table: str, columns: tuple[tuple[str, str], ...], tail: str, where: str = "") -> str:
    names = ", ".join(name for name, _ in columns)
    arrays = ", ".join(
        f"%({name})b::{'text' if kind in _DOCUMENTS else kind}[]" for name, kind in columns
    )
    picked = ", ".join(f"u.{name}::{kind}" if kind in _DOCUMENTS else f"u.{name}" for name, kind in columns)
    return (
        f"INSERT INTO {table} ({names}) SELECT {picked} FROM unnest({arrays}) WITH ORDINALITY"
        f" AS u({names}, ord) {where} ORDER BY u.ord {tail}"
    )


def _instant(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()} given for a UTC instant column")
    return value


def _document(state: Any) -> str:
    if isinstance(state, JsonText):
        return state.text  # serialized once by ingest for both the history and the latest row
    return json.dumps(dict(state), separators=(",", ":"), ensure_ascii=False)


def _columns(columns: tuple[tuple[str, str], ...], rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {name: [row[name] for row in rows] for name, _ in columns}


def insert_history(conn: sa.Connection, rows: Sequence[HistoryRow]) -> int:
    """Append states to ``state_history``, skipping stored (agent, session, seq); count the new ones."""
    if not rows:
        return 0
    values = [
        {
            "agent_id": r.agent_id, "session": check_seq("session", r.session), "seq": check_seq("seq", r.seq),
            "register_id": r.register_id, "ts": _instant(r.ts), "received_at": _instant(r.received_at),
            "state": _document(r.state), "reason": r.reason,
        }
        for r in rows
    ]
    keys: set[tuple[str, int, int]] = set()
    unique = []  # the first of each (agent, session, seq): NOT EXISTS cannot see the batch's own rows
    for value in values:
        key = (value["agent_id"], value["session"], value["seq"])
        if key not in keys:
            keys.add(key)
            unique.append(value)
    sql = _insert_select("state_history", _HISTORY_COLUMNS, "RETURNING id", _HISTORY_UNSEEN)
    return len(conn.exec_driver_sql(sql, {**_columns(_HISTORY_COLUMNS, unique), "window": REDELIVERY_WINDOW}).all())


def upsert_latest_states(conn: sa.Connection, rows: Sequence[LatestState]) -> set[str]:
    """Write each register's row unless the stored one is newer; returns the registers written.

    ``rows`` must hold one row per register, in lock order (the caller sorts them).
    """
    if not rows:
        return set()
    values = [
        {
            "register_id": r.register_id, "agent_id": r.agent_id, "session": check_seq("session", r.session),
            "seq": check_seq("seq", r.seq), "agent_ts": _instant(r.agent_ts),
            "received_at": _instant(r.received_at), "state": _document(r.state), "shift_status": r.shift_status,
            "unsent_count": r.unsent_count, "oldest_unsent_at": r.oldest_unsent_at,
            "fn_valid_until": r.fn_valid_until, "link_up": r.link_up,
        }
        for r in rows
    ]
    updates = ", ".join(
        f"{name} = excluded.{name}" for name, _ in _LATEST_COLUMNS if name not in ("register_id", "link_up")
    )
    tail = (
        f"ON CONFLICT (register_id) DO UPDATE SET {updates},"
        " link_up = coalesce(excluded.link_up, register_state.link_up)"
        f" WHERE {_NEWER} RETURNING register_id"
    )
    sql = _insert_select("register_state", _LATEST_COLUMNS, tail)
    return {row[0] for row in conn.exec_driver_sql(sql, _columns(_LATEST_COLUMNS, values))}


_MARK_COLUMNS = (("agent_id", "text"), ("session", "bigint"), ("max_seq", "bigint"))


def advance_ingest_marks(conn: sa.Connection, marks: Sequence[tuple[str, int, int]]) -> None:
    """Raise each (agent, session)'s committed mark to ``max_seq``; never lowers one.

    ``marks`` must hold each (agent, session) once, in lock order (the caller sorts them).
    """
    if not marks:
        return
    columns = {
        "agent_id": [agent for agent, _, _ in marks],
        "session": [check_seq("session", session) for _, session, _ in marks],
        "max_seq": [check_seq("seq", seq) for _, _, seq in marks],
    }
    tail = (
        "ON CONFLICT (agent_id, session) DO UPDATE SET max_seq = excluded.max_seq"
        " WHERE excluded.max_seq > ingest_marks.max_seq"
    )
    conn.exec_driver_sql(_insert_select("ingest_marks", _MARK_COLUMNS, tail), columns)
