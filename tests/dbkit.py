"""One way for tests to get a PostgreSQL database of their own (loaded by a ``sys.path`` insert of
``tests/``: pytest runs with --import-mode=importlib).

``fresh_pg_database("kassa_api")`` creates an empty, uniquely named database on the server named by
``KASSA_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``), yields its
SQLAlchemy URL and drops it afterwards with ``WITH (FORCE)``, so connections a failed test left open
cannot keep it alive. A server that is not reachable skips the test locally; under ``CI=true`` it
fails it, because CI must exercise the real PostgreSQL.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import pytest

PG_URL_ENV = "KASSA_TEST_POSTGRES_URL"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def pg_admin_url() -> str:
    """The server (and maintenance database) new databases are created from."""
    return os.environ.get(PG_URL_ENV, DEFAULT_PG_URL)


def in_ci() -> bool:
    # Case-insensitive, as tests/conftest.py decides the same for Mosquitto.
    return os.environ.get("CI", "").lower() == "true"


def postgres_unavailable(reason: str) -> NoReturn:
    """Skip the test locally; under ``CI=true`` fail it instead, so CI never silently loses PostgreSQL."""
    if in_ci():
        pytest.fail(reason)
    pytest.skip(reason)


@contextmanager
def fresh_pg_database(prefix: str) -> Iterator[str]:
    """Yield the URL of a new database ``<prefix>_<12 hex>``; it is dropped even when the test failed."""
    # Imported here so that SQLite-only runs do not pay for the PostgreSQL driver.
    import psycopg
    import sqlalchemy as sa
    from psycopg import sql

    admin_url = pg_admin_url()
    try:
        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        postgres_unavailable(f"PostgreSQL not reachable at {admin_url}: {exc}")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
