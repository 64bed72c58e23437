"""The one place that picks dialect-specific SQL: INSERT … ON CONFLICT for SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from collector.storage.errors import UnsupportedDialect

Upsert = sqlite.Insert | postgresql.Insert


def upsert_insert(conn: sa.Connection, table: sa.Table) -> Upsert:
    """An INSERT that supports ``on_conflict_do_nothing``/``on_conflict_do_update`` on this backend.

    Both dialects spell the clause the same way (``index_elements``, ``set_``, ``where`` and
    ``.excluded``), so the callers stay dialect-free.
    """
    name = conn.dialect.name
    if name == "sqlite":
        return sqlite.insert(table)
    if name == "postgresql":
        return postgresql.insert(table)
    raise UnsupportedDialect(f"no ON CONFLICT support for database dialect {name!r}")


def serialize_creation(conn: sa.Connection, what: str) -> None:
    """Hold a transaction-scoped lock named ``what`` until commit, so that find-or-create of a
    singleton (e.g. a company's «Новые кассы» node) by several collectors creates it once.

    PostgreSQL: an advisory lock; SQLite: nothing to do, a write transaction already excludes
    every other writer (``begin_write`` starts with BEGIN IMMEDIATE).
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(what))))
