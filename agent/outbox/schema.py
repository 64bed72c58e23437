"""The outbox's SQLite file: schema, opening, transactions, the ``meta`` key/value table and
how times and rows are stored."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.outbox.records import OutboxError, OutboxRecord

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY,
    session INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('state', 'event')),
    register_id TEXT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at REAL NOT NULL,
    published_in INTEGER,
    gap_report TEXT,  -- on an outbox_gap event: the counts it reports, restored if it is folded
    UNIQUE (session, seq)
);
CREATE INDEX IF NOT EXISTS records_by_age ON records (created_at);
CREATE INDEX IF NOT EXISTS records_by_register ON records (kind, register_id, session, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value NOT NULL);
-- Remote actions this outbox has answered (agent.outbox.ledger): one row per command id, so an
-- id is carried out at most once however often it is delivered. Pruned by age.
CREATE TABLE IF NOT EXISTS action_ledger (
    command_id TEXT PRIMARY KEY,
    action TEXT NOT NULL,
    register_id TEXT,
    result TEXT NOT NULL,  -- the latest ActionResult as JSON: "accepted" while it runs, then final
    final INTEGER NOT NULL,
    received_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS action_ledger_by_age ON action_ledger (received_at);
CREATE TABLE IF NOT EXISTS totals (kind TEXT PRIMARY KEY, records INTEGER NOT NULL, bytes INTEGER NOT NULL);
INSERT OR IGNORE INTO totals VALUES ('state', 0, 0), ('event', 0, 0);
CREATE TRIGGER IF NOT EXISTS records_added AFTER INSERT ON records BEGIN
    UPDATE totals SET records = records + 1, bytes = bytes + length(NEW.payload) WHERE kind = NEW.kind;
END;
CREATE TRIGGER IF NOT EXISTS records_removed AFTER DELETE ON records BEGIN
    UPDATE totals SET records = records - 1, bytes = bytes - length(OLD.payload) WHERE kind = OLD.kind;
END;
"""
CACHE_KIB = 512
RECORD_COLUMNS = "kind, register_id, session, seq, topic, payload, created_at, published_in"
# meta keys: the session counter and installation epoch (agent.outbox.sessions), pending gap and
# lifetime drop counters (agent.outbox.gaps), the collector's refusal (agent.refusal).


def open_database(path: Path) -> sqlite3.Connection:
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    db = None
    try:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10.0)
        db.execute("PRAGMA journal_mode=WAL")
        # FULL: each group commit fsyncs the WAL, so a durable append survives power loss too;
        # grouping keeps that to ~20 fsyncs/s.
        db.execute("PRAGMA synchronous=FULL")
        # 512 KiB of page cache, not SQLite's 2 MB: appends and replay touch the tail of the
        # outbox, and a backlog of days must not grow the agent past its memory target.
        db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise OutboxError(f"{path} has outbox schema {version}, newer than this agent ({SCHEMA_VERSION})")
        db.executescript(_SCHEMA)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    except (sqlite3.Error, OutboxError) as exc:
        if db is not None:
            db.close()
        if isinstance(exc, OutboxError):
            raise
        raise OutboxError(f"cannot open outbox {path}: {exc}") from exc
    return db


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def meta_int(db: sqlite3.Connection, key: str) -> int:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return int(row[0]) if row else 0


def meta_float(db: sqlite3.Connection, key: str) -> float | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return float(row[0]) if row else None


def meta_json(db: sqlite3.Connection, key: str) -> dict[str, Any] | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else dict(json.loads(row[0]))


def set_meta(db: sqlite3.Connection, key: str, value: int | float | str) -> None:
    db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))


def timestamp(value: datetime) -> float:
    if value.tzinfo is None:
        raise ValueError("created_at must be an aware datetime (the agent's UTC clock)")
    return value.timestamp()


def from_timestamp(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def record_from_row(row: tuple[Any, ...]) -> OutboxRecord:
    """An ``OutboxRecord`` from a row selected as ``RECORD_COLUMNS``."""
    kind, register_id, session, seq, topic, payload, created_at, published_in = row
    return OutboxRecord(
        kind=kind,
        register_id=register_id,
        session=session,
        seq=seq,
        topic=topic,
        payload=bytes(payload),
        created_at=datetime.fromtimestamp(created_at, UTC),
        published_in=published_in,
    )
