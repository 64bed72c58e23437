"""Engines for the two supported backends: SQLite (default, one file) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from collector.storage.sqlite_turns import writer_turn

SQLITE_BUSY_TIMEOUT_MS = 5000
SQLITE_MMAP_BYTES = 256 * 2**20  # address space, not memory: pages are the OS's file cache
SQLITE_CHECKPOINT_PAGES = 10_000
_IMMEDIATE_OPTION = "kassa_sqlite_begin_immediate"


class UnsupportedDatabaseUrl(ValueError):
    """The URL names a database we do not run on (only sqlite and postgresql)."""


def normalise_url(url: str | URL) -> URL:
    """``postgresql://`` and ``postgres://`` → ``postgresql+psycopg://``; sqlite URLs unchanged."""
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as exc:
        raise UnsupportedDatabaseUrl(f"not a database URL: {url!s}") from exc
    backend = parsed.get_backend_name()
    if backend == "postgres":  # the libpq spelling; SQLAlchemy only knows "postgresql"
        backend = "postgresql"
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and parsed.get_driver_name() == "pysqlite":
        return parsed
    raise UnsupportedDatabaseUrl(
        f"unsupported database {parsed.drivername!r}: use sqlite:///path.db or postgresql://user@host/db"
    )


def create_engine_from_url(url: str | URL, **engine_kwargs: Any) -> sa.Engine:
    """An engine with our connection settings applied to every new connection."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "postgresql":
        engine_kwargs.setdefault("pool_pre_ping", True)
        return sa.create_engine(parsed, **engine_kwargs)
    engine = sa.create_engine(parsed, **engine_kwargs)
    _configure_sqlite(engine)
    return engine


@contextmanager
def begin_write(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A transaction that will write: commits on success, rolls back on error.

    On SQLite it starts with BEGIN IMMEDIATE, taking the write lock up front (waiting up to the
    busy timeout). A deferred transaction that reads first and writes later fails at once with
    "database is locked" when another connection wrote in between, busy timeout or not. Writers
    to one SQLite file queue for their turn first (``sqlite_turns``), so none starves.
    """
    with writer_turn(engine), engine.connect() as conn, conn.execution_options(**{_IMMEDIATE_OPTION: True}).begin():
        yield conn


def _configure_sqlite(engine: sa.Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        # pysqlite opens transactions lazily (only before DML), so reads at the start of a
        # transaction ran outside it and SAVEPOINT misbehaved. Take transaction control back
        # and emit BEGIN ourselves (the recipe from SQLAlchemy's SQLite dialect docs).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        try:
            # WAL: readers do not block the ingest writer; NORMAL is durable across app
            # crashes in WAL mode (an OS crash may lose the last commits, never corrupt).
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            # Pages read through a memory map, not copied into each connection's cache: a
            # connection drops its whole cache whenever another one committed (every batch of
            # every collector and evaluator), and re-reading by copy was most of the extra CPU
            # per message of three collectors sharing one file (bench/ingest.py --collectors 3).
            cursor.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
            # Checkpoint every ~40 MB of WAL instead of 4 MB: the hot pages (latest states, their
            # indexes) are rewritten by every batch and copied once per checkpoint, so fewer
            # checkpoints copy them fewer times (one collector: −10 % CPU per message).
            cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_CHECKPOINT_PAGES}")
        finally:
            cursor.close()
        # SQLite's own lower() folds ASCII only; search over Cyrillic store names needs Unicode.
        dbapi_conn.create_function("lower", 1, _unicode_lower, deterministic=True)

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        immediate = conn.get_execution_options().get(_IMMEDIATE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _unicode_lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value
