"""Which of several collectors sharing a database runs the periodic sweep: one, not all of them.

Each collector (``$share``) evaluates what its own batches changed, but the sweep (every register
every period, then the company-level rules) gives the same answers whoever runs it: run by N
collectors it costs N times the CPU and database work. A collector leads while it holds a lock
that dies with it: a session advisory lock on a connection of its own on PostgreSQL, an ``flock``
on ``<db>-sweeper.lock`` next to a SQLite file. The others try again every period, so a new leader
takes over within a period after the leader stops, dies or loses its database connection.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any

import sqlalchemy as sa

from collector.storage.sqlite_turns import fcntl

log = logging.getLogger(__name__)

SWEEPER_LOCK = "kassa:alert-sweeper"


def _lock_key() -> Any:
    return sa.func.hashtext(SWEEPER_LOCK)


class SweepLeadership:
    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._conn: sa.Connection | None = None  # PostgreSQL: the session that holds the lock
        self._fd: int | None = None  # SQLite: the open lock file
        self.held = False

    def leading(self) -> bool:
        """Whether this collector should sweep now; takes the lead when it is free."""
        if self._engine.dialect.name == "postgresql":
            self.held = self._lead_postgresql()
        else:
            self.held = self._lead_sqlite()
        return self.held

    def release(self) -> None:
        if self._conn is not None:
            # At once: a closed session frees it only when its backend exits. A session the server
            # ended (failover, restart) raises here — a driver error, or SQLAlchemy's "rollback
            # first" once it saw the disconnect — and holds no lock any more.
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                self._conn.execute(sa.select(sa.func.pg_advisory_unlock(_lock_key())))
            # Closed for good, not returned to the pool: the session (and its lock) must end.
            self._conn.invalidate()
            self._conn.close()
            self._conn = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.held = False

    def _lead_postgresql(self) -> bool:
        if self._conn is not None:
            try:
                self._conn.execute(sa.select(1))  # the lock lives as long as this session does
                return True
            except sa.exc.SQLAlchemyError:  # the session ended: its lock went with it
                log.warning("lost the connection that held the sweep lead; trying to take it again")
                self.release()
        conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")  # never idle in a transaction
        try:
            taken = bool(conn.execute(sa.select(sa.func.pg_try_advisory_lock(_lock_key()))).scalar())
        except BaseException:
            conn.close()
            raise
        if not taken:
            conn.close()
            return False
        self._conn = conn
        return True

    def _lead_sqlite(self) -> bool:
        database = self._engine.url.database
        if self._fd is not None or fcntl is None or not database or database == ":memory:":
            return True  # held already, or nobody else can share this database
        fd = os.open(f"{database}-sweeper.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True
