"""PostgreSQL forms of the hot ingest writes: one ``INSERT … SELECT FROM json_array_elements(rows)``
per batch, the whole batch in one JSON text parameter.

Why: SQLAlchemy sends a RETURNING batch as one multi-row ``VALUES`` statement whose text differs
with every batch size, and psycopg parses such a statement in Python on every call (its query
cache only keeps short texts) — ~140 µs per message. One array parameter per column fixed the
text but psycopg still dumps arrays element by element in Python. Here the statement text is
fixed (cached, then server-prepared by psycopg) and the rows travel as one JSON array of arrays,
encoded by ``json.dumps`` in C; the server does the parsing. The state documents (``JsonText``,
already serialized) travel as themselves in a second JSON array zipped to the first (``ROWS
FROM``): inside a row they were strings, which ``json.dumps`` escaped quote by quote.

Semantics are those of ``collector.storage.ingest`` and of ``bulk`` (which calls these on
PostgreSQL only): duplicates of (agent, session, seq) are skipped (in the partitioned history by a
lookup near the row's ``ts``, ``collector.storage.partitions``), the latest state is only
replaced by a newer one, rows are written in the caller's order (``WITH ORDINALITY``), so lock
order stays the one ``bulk`` documents. Bound values get the checks the column types would
apply (uint64 range, aware instants), since driver-level SQL bypasses SQLAlchemy's types.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime
from functools import cache
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
from collector.storage.partitions import REDELIVERY_WINDOW
from collector.storage.rows import HistoryRow, LatestState, check_seq

# (column, PostgreSQL type), in the order of each JSON row.
_HISTORY_COLUMNS = (
    ("agent_id", "text"), ("session", "bigint"), ("seq", "bigint"), ("register_id", "text"),
    ("ts", "timestamptz"), ("received_at", "timestamptz"), ("state", "json"), ("reason", "text"),
)
# The partitioned history has no unique key (collector.storage.partitions): a stored duplicate is
# looked for near the row's ts, which prunes the lookup to a few day partitions.
_WINDOW = f"interval '{int(REDELIVERY_WINDOW.total_seconds())} seconds'"
_HISTORY_UNSEEN = (
    "WHERE NOT EXISTS (SELECT 1 FROM state_history h WHERE h.agent_id = u.e->>0"
    " AND h.session = (u.e->>1)::bigint AND h.seq = (u.e->>2)::bigint"
    f" AND h.ts BETWEEN (u.e->>4)::timestamptz - {_WINDOW} AND (u.e->>4)::timestamptz + {_WINDOW})"
)
_MARK_COLUMNS = (("agent_id", "text"), ("session", "bigint"), ("max_seq", "bigint"))


_DOCUMENT = "state"  # the column whose values travel in the second array, as themselves


@cache
def _insert_select(table: str, columns: tuple[tuple[str, str], ...], tail: str, where: str = "") -> str:
    """``INSERT … SELECT`` of JSON rows (``u.e``, the columns but the document, in order); with a
    ``_DOCUMENT`` column, its values come from a second JSON array zipped to the first (``u.doc``)."""
    names = ", ".join(name for name, _ in columns)
    picked: list[str] = []
    index = 0  # in the JSON row, which has no document
    for name, kind in columns:
        if name == _DOCUMENT:
            picked.append(f"u.doc::{kind}")
            continue
        picked.append(f"u.e->>{index}" if kind == "text" else f"(u.e->>{index})::{kind}")
        index += 1
    source = (
        "ROWS FROM (json_array_elements(%s::json), json_array_elements(%s::json)) WITH ORDINALITY AS u(e, doc, ord)"
        if _DOCUMENT in dict(columns)
        else "json_array_elements(%s::json) WITH ORDINALITY AS u(e, ord)"
    )
    return f"INSERT INTO {table} ({names}) SELECT {', '.join(picked)} FROM {source} {where} ORDER BY u.ord {tail}"


def _text(value: datetime | date | None) -> str | None:
    return None if value is None else value.isoformat()


def _write(conn: sa.Connection, sql: str, rows: list[tuple[Any, ...]], documents: list[str] | None = None) -> int:
    """Run ``sql`` on the rows as one JSON array, and the documents (JSON texts) as another: spliced
    in as they are, since ``json.dumps`` of a row holding a document escapes every quote in it."""
    params: tuple[str, ...] = (json.dumps(rows, separators=(",", ":")),)
    if documents is not None:
        params += ("[" + ",".join(documents) + "]",)
    return conn.exec_driver_sql(sql, params).rowcount


def insert_history(conn: sa.Connection, rows: Sequence[HistoryRow]) -> int:
    """Append states to ``state_history``, skipping stored (agent, session, seq); count the new ones."""
    if not rows:
        return 0
    values: dict[tuple[str, int, int], tuple[Any, ...]] = {}
    documents: list[str] = []
    for r in rows:  # the first of each key: NOT EXISTS cannot see the batch's own rows
        key = (r.agent_id, *seqs(r.session, r.seq))
        if key not in values:
            values[key] = (*key, r.register_id, instant(r.ts).isoformat(), instant(r.received_at).isoformat(), r.reason)
            documents.append(document(r.state))
    sql = _insert_select("state_history", _HISTORY_COLUMNS, "", _HISTORY_UNSEEN)
    return _write(conn, sql, list(values.values()), documents)


def upsert_latest_states(conn: sa.Connection, rows: Sequence[LatestState]) -> int:
    """Write each register's row unless the stored one is newer; returns how many were written.

    ``rows`` must hold one row per register, in lock order (the caller sorts them).
    """
    values: list[tuple[Any, ...]] = []
    documents: list[str] = []
    for r in rows:
        made = instant(r.agent_ts).isoformat()
        received = made if r.received_at is r.agent_ts else instant(r.received_at).isoformat()  # a live state: one time
        values.append((
            r.register_id, r.agent_id, *seqs(r.session, r.seq), made, received, r.shift_status, r.unsent_count,
            _text(r.oldest_unsent_at), _text(r.fn_valid_until), r.link_up,
        ))  # fmt: skip
        documents.append(document(r.state))
    updates = ", ".join(
        f"{name} = excluded.{name}" for name, _ in LATEST_COLUMNS if name not in ("register_id", "link_up")
    )
    tail = (
        f"ON CONFLICT (register_id) DO UPDATE SET {updates},"
        " link_up = coalesce(excluded.link_up, register_state.link_up)"
        f" WHERE {NEWER}"
    )
    return _write(conn, _insert_select("register_state", LATEST_COLUMNS, tail), values, documents)


def advance_ingest_marks(conn: sa.Connection, marks: Sequence[tuple[str, int, int]]) -> None:
    """Raise each (agent, session)'s committed mark to ``max_seq``; never lowers one.

    ``marks`` must hold each (agent, session) once, in lock order (the caller sorts them).
    """
    if not marks:
        return
    values = [(agent, *seqs(session, seq)) for agent, session, seq in marks]
    tail = (
        "ON CONFLICT (agent_id, session) DO UPDATE SET max_seq = excluded.max_seq"
        " WHERE excluded.max_seq > ingest_marks.max_seq"
    )
    _write(conn, _insert_select("ingest_marks", _MARK_COLUMNS, tail), values)


def upsert_registers(conn: sa.Connection, rows: Sequence[tuple[Any, ...]]) -> int:
    """Upsert register identities (``REGISTER_COLUMNS`` order, instants aware); returns how many
    were written — a register of another tenant is not.

    ``rows`` must hold each register once, in lock order (the caller sorts them).
    """
    if not rows:
        return 0
    values = [(*row[:9], instant(row[9]).isoformat(), instant(row[10]).isoformat()) for row in rows]
    return _write(conn, _insert_select("registers", REGISTER_COLUMNS, REGISTER_UPSERT), values)


_SEEN = (
    f"UPDATE agents SET {seen_assignments('v.at', 'v.session', true='true', false='false')}"
    " FROM (SELECT u.e->>0 AS agent_id, (u.e->>1)::timestamptz AS at, (u.e->>2)::bigint AS session"
    " FROM json_array_elements(%s::json) AS u(e)) AS v WHERE agents.agent_id = v.agent_id"
)


def mark_agents_seen(conn: sa.Connection, seen: Sequence[tuple[str, datetime, int]]) -> None:
    """Move each (agent, last seen, session) forward. The caller has locked these agents' rows
    (in key order, ``bulk.lock_idle_agents``), so the join's order takes no new lock; each agent once."""
    if seen:
        _write(conn, _SEEN, [(agent, instant(at).isoformat(), check_seq("session", session)) for agent, at, session in seen])
