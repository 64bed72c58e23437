"""The collector's storage: SQLAlchemy Core tables, engines for SQLite/PostgreSQL, Alembic
migrations, and the repository of queries (``collector.storage.repository``).

Typical use::

    engine = create_engine_from_url("sqlite:///collector.db")
    migrate(engine)
    with engine.begin() as conn:
        repository.insert_history(conn, rows)
"""

from __future__ import annotations

from collector.storage.engine import (
    UnsupportedDatabaseUrl,
    begin_write,
    create_engine_from_url,
    normalise_url,
)
from collector.storage.errors import (
    AgentRevoked,
    InvalidValue,
    RegisterOwnedElsewhere,
    StorageError,
    UnknownAgent,
    UnknownNode,
    UnsupportedDialect,
)
from collector.storage.migrations import (
    current_revision,
    current_revisions,
    full_metadata,
    head_revision,
    head_revisions,
    migrate,
)
from collector.storage.schema import metadata
from collector.storage.scope import Scope

__all__ = [
    "AgentRevoked",
    "InvalidValue",
    "RegisterOwnedElsewhere",
    "Scope",
    "StorageError",
    "UnknownAgent",
    "UnknownNode",
    "UnsupportedDatabaseUrl",
    "UnsupportedDialect",
    "begin_write",
    "create_engine_from_url",
    "current_revision",
    "current_revisions",
    "full_metadata",
    "head_revision",
    "head_revisions",
    "metadata",
    "migrate",
    "normalise_url",
]
