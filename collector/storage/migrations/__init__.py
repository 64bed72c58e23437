"""Alembic migrations, run programmatically: ``migrate(url)`` upgrades to every head, no alembic.ini.

Other packages of the collector may put their tables on the storage ``metadata`` (accounts
does) and their revisions in ``versions/``, possibly on a branch of their own; list their
schema modules in ``TABLE_MODULES`` so autogenerate and the schema check see every table.

A new revision is drafted the same way, against a database at heads, then reviewed by hand
(``head`` names the revision it follows, needed while there are several branches)::

    with engine.begin() as conn:
        alembic.command.revision(alembic_config(conn), message="...", autogenerate=True, head="0001")
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL

from collector.storage import partitions
from collector.storage.engine import begin_write, create_engine_from_url
from collector.storage.schema import metadata

MIGRATIONS_DIR = Path(__file__).resolve().parent
TABLE_MODULES: tuple[str, ...] = (
    "collector.storage.schema",
    "collector.accounts.schema",
    "collector.enrollment.schema",
    "collector.notify.schema",
)
_MIGRATION_LOCK_ID = 0x6B61_7373_6100  # "kassa" — any constant shared by all collector processes


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """An in-memory Alembic config; with a connection, env.py runs on it instead of opening one."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def full_metadata() -> sa.MetaData:
    """The storage ``MetaData`` with the tables of every module in ``TABLE_MODULES`` added."""
    for module in TABLE_MODULES:
        importlib.import_module(module)
    return metadata


def comparable(dialect: str) -> Callable[..., bool]:
    """``include_object`` for autogenerate and the schema check: a day partition is part of its
    table, not a table of its own, and what the schema declares for another dialect only
    (``ddl_if``, see ``schema._history_keys``) does not exist on this one."""

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        if type_ == "table" and name is not None and partitions.is_partition(name):
            return False
        condition = getattr(obj, "_ddl_if", None) or getattr(compare_to, "_ddl_if", None)
        return condition is None or condition.dialect in (None, dialect)

    return include


def head_revisions() -> tuple[str, ...]:
    heads = tuple(sorted(ScriptDirectory.from_config(alembic_config()).get_heads()))
    if not heads:
        raise RuntimeError(f"no Alembic revisions found in {MIGRATIONS_DIR}")
    return heads


def head_revision() -> str:
    """The single head; raises while branches are unmerged (use ``head_revisions``)."""
    heads = head_revisions()
    if len(heads) != 1:
        raise RuntimeError(f"several Alembic heads: {', '.join(heads)}")
    return heads[0]


def migrate(target: str | URL | sa.Engine, revision: str = "heads") -> None:
    """Upgrade the database at ``target`` (URL or engine) to ``revision`` in one transaction."""
    engine, owned = _engine_for(target)
    try:
        with begin_write(engine) as conn:
            if conn.dialect.name == "postgresql":
                # Several collector processes may start at once; the first migrates, the others
                # wait here and then find the database at head. Released at commit.
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK_ID)))
            command.upgrade(alembic_config(conn), revision)
            if revision == "heads":  # the history's day partitions, from today on (PostgreSQL)
                partitions.maintain(conn, datetime.now(UTC).date())
    finally:
        if owned:
            engine.dispose()


def current_revisions(target: str | URL | sa.Engine) -> tuple[str, ...]:
    """The revisions the database is at (one per branch); empty for a never-migrated database."""
    engine, owned = _engine_for(target)
    try:
        with engine.connect() as conn:
            return tuple(sorted(MigrationContext.configure(conn).get_current_heads()))
    finally:
        if owned:
            engine.dispose()


def current_revision(target: str | URL | sa.Engine) -> str | None:
    """The revision the database is at; None for an empty database; raises if it is at several."""
    revisions = current_revisions(target)
    if len(revisions) > 1:
        raise RuntimeError(f"the database is at several revisions: {', '.join(revisions)}")
    return revisions[0] if revisions else None


def _engine_for(target: str | URL | sa.Engine) -> tuple[sa.Engine, bool]:
    if isinstance(target, sa.Engine):
        return target, False
    return create_engine_from_url(target), True
