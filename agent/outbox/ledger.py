"""The remote-action ledger in the outbox file: which command ids were answered, and how.

The agent records a command id *before* it touches the register (committed, fsynced), so a
repeat — a second delivery, a replay after a reconnect, a restart — finds it and is answered
with the stored result instead of running the action again. Rows older than the keep period
go; the collector's deadline (minutes) is far shorter, so an id that old is never delivered live.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any

from agent.outbox.records import ActionRecord
from agent.outbox.schema import timestamp

_COLUMNS = "command_id, action, register_id, result, final, received_at"


def _record(row: tuple[Any, ...]) -> ActionRecord:
    command_id, action, register_id, result, final, received_at = row
    return ActionRecord(command_id, action, register_id, result, bool(final), datetime.fromtimestamp(received_at, UTC))


def claim(db: sqlite3.Connection, record: ActionRecord, prune_before: datetime) -> ActionRecord | None:
    """Store ``record`` unless its command id is known; returns the known one (then nothing is stored)."""
    db.execute("DELETE FROM action_ledger WHERE received_at < ?", (timestamp(prune_before),))
    row = db.execute(f"SELECT {_COLUMNS} FROM action_ledger WHERE command_id = ?", (record.command_id,)).fetchone()
    if row is not None:
        return _record(row)
    db.execute(
        f"INSERT INTO action_ledger ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
        (record.command_id, record.action, record.register_id, record.result, int(record.final),
         timestamp(record.received_at)),
    )  # fmt: skip
    return None


def finish(db: sqlite3.Connection, command_id: str, result: str) -> None:
    """The action's final result replaces "accepted"."""
    db.execute("UPDATE action_ledger SET result = ?, final = 1 WHERE command_id = ?", (result, command_id))


def unfinished(db: sqlite3.Connection) -> list[ActionRecord]:
    """Actions started but never finished: the agent stopped while one ran."""
    rows = db.execute(f"SELECT {_COLUMNS} FROM action_ledger WHERE final = 0 ORDER BY received_at").fetchall()
    return [_record(row) for row in rows]
