"""What the driver-level ingest writes (``pg_rows`` on PostgreSQL, ``sqlite_rows`` on SQLite)
share: the latest-state columns, the newer-only condition, and the checks SQLAlchemy's column
types would otherwise apply to bound values (driver-level SQL bypasses them)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from collector.storage.rows import JsonText

# (column, PostgreSQL type) of register_state as ingest writes it.
LATEST_COLUMNS = (
    ("register_id", "text"), ("agent_id", "text"), ("session", "bigint"), ("seq", "bigint"),
    ("agent_ts", "timestamptz"), ("received_at", "timestamptz"), ("state", "jsonb"),
    ("shift_status", "text"), ("unsent_count", "integer"), ("oldest_unsent_at", "timestamp"),
    ("fn_valid_until", "date"), ("link_up", "boolean"),
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


def document(state: Any) -> str:
    if isinstance(state, JsonText):
        return state.text  # serialized once by ingest for both the history and the latest row
    return json.dumps(dict(state), separators=(",", ":"), ensure_ascii=False)
