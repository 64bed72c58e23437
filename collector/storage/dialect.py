"""The one place that picks dialect-specific SQL: INSERT … ON CONFLICT for SQLite and PostgreSQL,
and a key-set membership test whose statement text does not depend on the number of keys."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

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
def member_of(conn: sa.Connection, column: sa.ColumnElement[Any], values: Iterable[str | int]) -> sa.ColumnElement[bool]:
    """``column IN values`` with the values in one parameter: ``= ANY(array)`` on PostgreSQL,
    ``IN (SELECT value FROM json_each(…))`` on SQLite.

    Why: an ``IN`` list renders one placeholder per value, so the statement text changes with
    every batch size; SQLAlchemy then renders it anew on every call and psycopg parses it in
    Python (its cache keeps short texts only), which cost more than the query for a batch's
    keys. One parameter keeps the text fixed: cached by both, prepared by the server.
    """
    dialect = conn.dialect.name
    return member_of_param(dialect, column, None, member_values(dialect, values))


def member_of_param(
    dialect: str, column: sa.ColumnElement[Any], name: str | None, value: Any = None
) -> sa.ColumnElement[bool]:
    """``member_of`` for a statement built once: the values go in at execution as the parameter
    ``name``, converted by ``member_values``."""
    if dialect == "postgresql":
        return column == sa.any_(sa.bindparam(name, value, type_=postgresql.ARRAY(column.type)))
    keys = sa.func.json_each(sa.bindparam(name, value, type_=sa.Text())).table_valued("value")
    return column.in_(sa.select(keys.c.value).scalar_subquery())


def member_values(dialect: str, values: Iterable[str | int]) -> list[str | int] | str:
    """The value of a ``member_of_param`` parameter: a list on PostgreSQL, its JSON text on SQLite."""
    listed = list(values)
    return listed if dialect == "postgresql" else json.dumps(listed)
