"""tests/dbkit.py: a fresh PostgreSQL database is usable, private and gone afterwards (even with a
connection left open), and an unreachable server skips locally but fails under ``CI=true``."""

from __future__ import annotations

import re
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: tests/dbkit.py
import dbkit


def _database_exists(name: str) -> bool:
    import psycopg

    with psycopg.connect(dbkit.pg_admin_url(), autocommit=True, connect_timeout=3) as admin:
        return admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


@pytest.mark.postgres
def test_fresh_database_is_new_usable_and_dropped_despite_an_open_connection() -> None:
    with dbkit.fresh_pg_database("kassa_dbkit") as url, dbkit.fresh_pg_database("kassa_dbkit") as other_url:
        name = sa.make_url(url).database
        assert name is not None and name.startswith("kassa_dbkit_")
        assert sa.make_url(other_url).database != name
        engine = sa.create_engine(sa.make_url(url).set(drivername="postgresql+psycopg"))
        lingering = engine.connect()  # left open on purpose: WITH (FORCE) must still drop the database
        assert lingering.execute(sa.text("SELECT current_database()")).scalar_one() == name
        tables = lingering.execute(sa.text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"))
        assert tables.scalar_one() == 0
    assert not _database_exists(name)
    lingering.invalidate()
    engine.dispose()


@pytest.fixture
def refused_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point the override at a loopback port that is bound but not listening: connects are refused."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        url = f"postgresql://postgres@127.0.0.1:{holder.getsockname()[1]}/test"
        monkeypatch.setenv(dbkit.PG_URL_ENV, url)
        yield url


def test_unreachable_server_skips_outside_ci(refused_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    skipped = pytest.raises(
        pytest.skip.Exception, match=re.escape(f"PostgreSQL not reachable at {refused_url}")
    )
    with skipped, dbkit.fresh_pg_database("kassa_dbkit"):
        pytest.fail("entered a database on a refused port")


@pytest.mark.parametrize("ci", ["true", "True"])
def test_unreachable_server_fails_under_ci(
    refused_url: str, monkeypatch: pytest.MonkeyPatch, ci: str
) -> None:
    monkeypatch.setenv("CI", ci)
    failed = pytest.raises(
        pytest.fail.Exception, match=re.escape(f"PostgreSQL not reachable at {refused_url}")
    )
    with failed, dbkit.fresh_pg_database("kassa_dbkit"):
        raise AssertionError("entered a database on a refused port")
