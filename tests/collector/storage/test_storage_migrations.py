"""Engine settings, URL mapping and Alembic migrations on SQLite and PostgreSQL."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateTable

from collector.storage import (
    UnsupportedDatabaseUrl,
    begin_write,
    create_engine_from_url,
    current_revisions,
    full_metadata,
    head_revisions,
    migrate,
    normalise_url,
)
from collector.storage.engine import SQLITE_CHECKPOINT_PAGES, SQLITE_MMAP_BYTES
from collector.storage.migrations import comparable
from collector.storage.schema import REWRITTEN_FILLFACTOR, dead_letters

sys.path.insert(0, str(Path(__file__).parents[2]))  # importlib mode: tests/dbkit.py
import dbkit


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("postgresql://postgres@127.0.0.1:5432/test", "postgresql+psycopg"),
        ("postgres://u:p@db/kassa", "postgresql+psycopg"),
        ("postgresql+psycopg://u@db/kassa", "postgresql+psycopg"),
        ("sqlite:///collector.db", "sqlite"),
        ("sqlite://", "sqlite"),
    ],
)
def test_urls_map_to_our_drivers(given: str, driver: str) -> None:
    assert normalise_url(given).drivername == driver


def test_postgres_url_keeps_host_credentials_and_database() -> None:
    url = normalise_url("postgresql://user:secret@db.example:6432/kassa")
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "user",
        "secret",
        "db.example",
        6432,
        "kassa",
    )


@pytest.mark.parametrize("bad", ["mysql://u@h/db", "sqlite+aiosqlite:///x.db", "not a url"])
def test_unsupported_urls_are_refused_with_a_typed_error(bad: str) -> None:
    with pytest.raises(UnsupportedDatabaseUrl):
        create_engine_from_url(bad)


def test_sqlite_connections_get_wal_normal_sync_foreign_keys_busy_timeout_mmap_and_checkpoint_interval(tmp_path) -> None:
    engine = create_engine_from_url(f"sqlite:///{tmp_path}/c.db")
    try:
        with engine.connect() as conn:
            pragmas = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout", "mmap_size", "wal_autocheckpoint")
            }
            lowered = conn.execute(sa.select(sa.func.lower("ЛЮТИК Центр"))).scalar()
    finally:
        engine.dispose()
    assert pragmas == {
        "journal_mode": "wal", "synchronous": 1, "foreign_keys": 1, "busy_timeout": 5000, "mmap_size": SQLITE_MMAP_BYTES,
        "wal_autocheckpoint": SQLITE_CHECKPOINT_PAGES,
    }  # fmt: skip
    assert lowered == "лютик центр"


def test_migrate_takes_an_empty_database_to_head_matching_the_metadata(empty_database_url: str) -> None:
    assert current_revisions(empty_database_url) == ()
    migrate(empty_database_url)
    assert current_revisions(empty_database_url) == head_revisions()
    engine = create_engine_from_url(empty_database_url)
    try:
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            opts = {"compare_type": True, "include_object": comparable(conn.dialect.name)}
            context = MigrationContext.configure(conn, opts=opts)
            differences = compare_metadata(context, full_metadata())
    finally:
        engine.dispose()
    assert set(full_metadata().tables) <= tables
    assert differences == []


@pytest.mark.postgres
def test_rows_every_message_rewrites_leave_room_on_their_postgresql_pages() -> None:
    """Migrated and created alike (``schema.REWRITTEN_FILLFACTOR``): room for HOT updates."""
    with dbkit.fresh_pg_database("kassa_fillfactor") as url:
        migrate(url)
        engine = create_engine_from_url(url)
        try:
            with engine.connect() as conn:
                options = dict(conn.execute(sa.text(
                    "SELECT relname, reloptions FROM pg_class WHERE relname = ANY(:names) AND relkind = 'r'"
                ), {"names": list(REWRITTEN_FILLFACTOR)}).all())  # fmt: skip
        finally:
            engine.dispose()
    assert options == {table: [f"fillfactor={percent}"] for table, percent in REWRITTEN_FILLFACTOR.items()}
    created = str(CreateTable(full_metadata().tables["register_state"]).compile(dialect=postgresql.dialect()))
    assert f"WITH (fillfactor = {REWRITTEN_FILLFACTOR['register_state']})" in created


def test_migrate_again_is_a_no_op(engine: sa.Engine) -> None:
    migrate(engine)
    assert current_revisions(engine) == head_revisions()


def test_instants_come_back_as_the_same_utc_instant(conn: sa.Connection) -> None:
    moscow = timezone(timedelta(hours=3))
    local = datetime(2026, 11, 28, 12, 0, tzinfo=moscow)
    conn.execute(sa.insert(dead_letters).values(received_at=local, topic="t", reason="r", detail="", raw=b""))
    stored = conn.execute(sa.select(dead_letters.c.received_at)).scalar_one()
    assert stored == local and stored.tzinfo == UTC and stored.hour == 9


def test_naive_instants_are_refused(conn: sa.Connection) -> None:
    with pytest.raises(sa.exc.StatementError, match="naive datetime"):
        conn.execute(
            sa.insert(dead_letters).values(
                received_at=datetime(2026, 1, 1), topic="t", reason="r", detail="", raw=b""
            )
        )


def test_collectors_starting_together_migrate_once(empty_database_url: str) -> None:
    engines = [create_engine_from_url(empty_database_url) for _ in range(3)]
    try:
        with ThreadPoolExecutor(len(engines)) as pool:
            list(pool.map(migrate, engines))  # re-raises any thread's error
    finally:
        for engine in engines:
            engine.dispose()
    assert current_revisions(empty_database_url) == head_revisions()


def test_begin_write_takes_the_sqlite_write_lock_up_front(tmp_path) -> None:
    engine = create_engine_from_url(f"sqlite:///{tmp_path}/w.db", connect_args={"timeout": 0})
    try:
        migrate(engine)
        with begin_write(engine) as writer:
            writer.execute(sa.select(dead_letters.c.id)).all()  # only read so far, yet the lock is held
            with engine.connect() as other, pytest.raises(sa.exc.OperationalError, match="locked"):
                other.exec_driver_sql("PRAGMA busy_timeout=0")
                other.execute(sa.delete(dead_letters))
    finally:
        engine.dispose()
