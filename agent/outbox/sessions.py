"""The durable session counter and the installation epoch, both kept in the outbox's ``meta``.

``next_session`` +1 per MQTT connection and never goes backwards, even after kill -9; sequence
numbers are not persisted (every session restarts at seq 0), so a (session, seq) pair is never
handed out twice. The epoch is the file's random installation id: a new file restarts sessions at
1 under a new epoch, so the collector can tell its records from a lost outbox's.
"""

from __future__ import annotations

import secrets
import sqlite3

from agent.outbox.schema import meta_int, set_meta


def take_next_session(db: sqlite3.Connection) -> int:
    """Increment the stored counter (inside the caller's transaction); the first session is 1."""
    session = meta_int(db, "session") + 1
    set_meta(db, "session", session)
    return session


def installation_epoch(db: sqlite3.Connection) -> tuple[str, int]:
    """``(epoch, first session)`` (inside the caller's transaction); made on first use."""
    row = db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
    if row is None:
        set_meta(db, "epoch", secrets.token_hex(16))
        set_meta(db, "epoch_since", meta_int(db, "session") + 1)
    epoch = str(db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()[0])
    return epoch, meta_int(db, "epoch_since")
