"""The outbox's size and age bounds: which records go when it is over them (see the
``agent.outbox`` package doc); every record dropped before it was published is a gap."""

from __future__ import annotations

import logging
import sqlite3
from datetime import datetime, timedelta

from agent.outbox.gaps import add_gap
from agent.outbox.records import RecordKind
from agent.outbox.schema import timestamp

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_AGE = timedelta(days=14)


def enforce_bounds(db: sqlite3.Connection, now: datetime, *, max_bytes: int, max_age: timedelta) -> None:
    cutoff = timestamp(now - max_age)
    oldest = db.execute("SELECT MIN(created_at) FROM records").fetchone()[0]
    if oldest is not None and oldest < cutoff:
        _drop_superseded_states(db, cutoff)
        old_events = (
            "SELECT id, created_at, published_in FROM records"
            " WHERE kind = 'event' AND created_at < ? AND gap_report IS NULL"
        )
        _drop_rows(db, "event", db.execute(old_events, (cutoff,)).fetchall())
    excess = _bytes(db) - max_bytes
    if excess <= 0:
        return
    _drop_superseded_states(db, None)
    for kind in ("event", "state"):
        excess = _bytes(db) - max_bytes
        if excess <= 0:
            return
        _drop_oldest(db, kind, excess)


def _bytes(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT SUM(bytes) FROM totals").fetchone()[0])


def _drop_superseded_states(db: sqlite3.Connection, older_than: float | None) -> None:
    """Drop state records that have a newer state of the same register (optionally only old ones)."""
    sql = (
        "SELECT r.id, r.created_at, r.published_in FROM records r WHERE r.kind = 'state'"
        + (" AND r.created_at < ?" if older_than is not None else "")
        + " AND EXISTS (SELECT 1 FROM records n WHERE n.kind = 'state' AND n.register_id IS r.register_id"
        " AND (n.session > r.session OR (n.session = r.session AND n.seq > r.seq)))"
    )
    params = (older_than,) if older_than is not None else ()
    _drop_rows(db, "state", db.execute(sql, params).fetchall())


def _drop_oldest(db: sqlite3.Connection, kind: RecordKind, excess: int) -> None:
    victims, freed = [], 0
    cursor = db.execute(
        "SELECT id, created_at, published_in, length(payload) FROM records"
        " WHERE kind = ? AND gap_report IS NULL ORDER BY session, seq",
        (kind,),
    )
    for row_id, created_at, published_in, size in cursor:
        victims.append((row_id, created_at, published_in))
        freed += size
        if freed >= excess:
            break
    cursor.close()
    _drop_rows(db, kind, victims)


def _drop_rows(db: sqlite3.Connection, kind: RecordKind, rows: list[tuple[int, float, int | None]]) -> None:
    """Delete ``(id, created_at, published_in)`` rows; those never published are a gap."""
    if not rows:
        return
    db.executemany("DELETE FROM records WHERE id = ?", [(row[0],) for row in rows])
    lost = [created_at for _, created_at, published_in in rows if published_in is None]
    if lost:
        count = len(lost)
        add_gap(db, count if kind == "state" else 0, count if kind == "event" else 0, min(lost), max(lost))
    log.warning(
        "outbox over its bounds: dropped %d %s record(s), %d of them never published", len(rows), kind, len(lost)
    )
