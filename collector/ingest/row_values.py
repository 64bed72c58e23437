"""What the driver-level ingest writes (``pg_rows`` on PostgreSQL, ``sqlite_rows`` on SQLite)
share: the latest-state columns, the newer-only condition, and the checks SQLAlchemy's column
types would otherwise apply to bound values (driver-level SQL bypasses them)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from collector.storage.rows import JsonText, check_seq

# (column, PostgreSQL type) of register_state as ingest writes it.
LATEST_COLUMNS = (
    ("register_id", "text"), ("agent_id", "text"), ("session", "bigint"), ("seq", "bigint"),
    ("agent_ts", "timestamptz"), ("received_at", "timestamptz"), ("state", "jsonb"),
    ("shift_status", "text"), ("unsent_count", "integer"), ("oldest_unsent_at", "timestamp"),
    ("fn_valid_until", "date"), ("link_up", "boolean"),
)
# (column, PostgreSQL type) of registers as ingest upserts an identity.
REGISTER_COLUMNS = (
    ("register_id", "text"), ("tenant_id", "integer"), ("node_id", "integer"), ("agent_id", "text"),
    ("protocol", "text"), ("serial", "text"), ("rnm", "text"), ("fn_serial", "text"), ("model", "text"),
    ("first_seen", "timestamptz"), ("last_seen", "timestamptz"),
)
# An identity upsert (``bulk.ensure_registers``): unknown identity fields keep what is stored,
# last_seen only moves forward, and a register of another tenant is left alone (not counted).
REGISTER_UPSERT = (
    "ON CONFLICT (register_id) DO UPDATE SET node_id = excluded.node_id, agent_id = excluded.agent_id,"
    " protocol = excluded.protocol, serial = coalesce(excluded.serial, registers.serial),"
    " rnm = coalesce(excluded.rnm, registers.rnm), fn_serial = coalesce(excluded.fn_serial, registers.fn_serial),"
    " model = coalesce(excluded.model, registers.model),"
    " last_seen = CASE WHEN excluded.last_seen > registers.last_seen THEN excluded.last_seen ELSE registers.last_seen END"
    " WHERE registers.tenant_id = excluded.tenant_id"
)


def seen_assignments(at: str, session: str, *, true: str, false: str) -> str:
    """SET clause of ``bulk.mark_agents_seen`` given the SQL of its instant and session values
    (and of the backend's booleans):
    last_seen/last_session only move forward, and a live message of a newer session brings a
    non-revoked agent online (its status session follows): that message proves the connection is
    up, and on a cluster the agent's «online» may be lost with the node it reached first, with no
    will to follow it."""
    newer = f"agents.revoked IS {false} AND (agents.status_session IS NULL OR agents.status_session < {session})"
    return (
        f"last_session = CASE WHEN agents.last_session IS NULL OR agents.last_session < {session} THEN {session}"
        " ELSE agents.last_session END,"
        f" last_seen = CASE WHEN agents.last_seen IS NULL OR agents.last_seen < {at} THEN {at} ELSE agents.last_seen END,"
        f" online = CASE WHEN {newer} THEN {true} ELSE agents.online END,"
        f" status_session = CASE WHEN {newer} THEN {session} ELSE agents.status_session END"
    )


# The stored latest state is replaced only by a later message of its agent, or a later one of another agent.
NEWER = (
    "(excluded.agent_id = register_state.agent_id AND (excluded.session > register_state.session"
    " OR (excluded.session = register_state.session AND excluded.seq > register_state.seq)))"
    " OR (excluded.agent_id <> register_state.agent_id AND excluded.agent_ts > register_state.agent_ts)"
)


def instant(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()} given for a UTC instant column")
    return value


_INT64_MAX = 2**63 - 1


def seqs(session: int, seq: int) -> tuple[int, int]:
    """``check_seq`` of a row's session and seq, without its two calls in the common case."""
    if 0 <= session <= _INT64_MAX and 0 <= seq <= _INT64_MAX:
        return session, seq
    return check_seq("session", session), check_seq("seq", seq)


def document(state: Any) -> str:
    if isinstance(state, JsonText):
        return state.text  # serialized once by ingest for both the history and the latest row
    return json.dumps(dict(state), separators=(",", ":"), ensure_ascii=False)
