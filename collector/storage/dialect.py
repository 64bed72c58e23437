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
