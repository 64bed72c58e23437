"""Writers to one SQLite file take turns through a kernel lock next to it, not SQLite's busy loop.

SQLite makes a second writer poll with growing sleeps (up to 100 ms) until the busy timeout, with
no queue: with several collector processes (``$share``) and their alert evaluators all writing, a
writer could lose every round for the whole 5 s and fail with "database is locked". A blocking
``flock`` on ``<db>-writers.lock`` wakes the next writer as soon as the lock is released, so write
transactions queue instead of starving. Threads of one process take turns too (one open file per
turn). Without ``fcntl`` (not POSIX) or for an in-memory database, only the busy timeout applies.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: the collector's supported hosts are POSIX
    fcntl = None  # type: ignore[assignment]


def turn_file(engine: sa.Engine) -> str | None:
    """The lock file of a file-backed SQLite engine, or None when turns do not apply."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or fcntl is None or not database or database == ":memory:":
        return None
    return f"{database}-writers.lock"


@contextmanager
def writer_turn(engine: sa.Engine) -> Iterator[None]:
    """Hold this engine's writer turn (a no-op where turns do not apply)."""
    path = turn_file(engine)
    if path is None:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released by close, also when the process dies
        yield
    finally:
        os.close(fd)
