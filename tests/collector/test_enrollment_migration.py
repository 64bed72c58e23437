"""Revision 0003 (branch "enrollment") creates exactly the tables of ``collector.enrollment.schema``
on SQLite and PostgreSQL, and downgrades cleanly."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: the helper next to us
import enrollment_testkit as kit

from collector.enrollment.schema import ENROLLMENT_TABLES
from collector.storage import metadata
from collector.storage.migrations import alembic_config

OURS = {table.name for table in ENROLLMENT_TABLES}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    with kit.migrated_engine(request.param, tmp_path) as eng:
        yield eng


def _ours(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    # Other branches' tables may or may not be in this process's metadata; compare only ours.
    table = name if type_ == "table" else obj.table.name
    return table in OURS


def test_the_enrollment_branch_matches_the_schema_module(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        assert set(sa.inspect(conn).get_table_names()) >= OURS
        context = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": _ours})
        assert compare_metadata(context, metadata) == []
        # 0003 is applied: the database is at it, or at a later revision built on it (0004 merges).
        current = MigrationContext.configure(conn).get_current_heads()
        script = ScriptDirectory.from_config(alembic_config())
        assert current and all("0003" in {r.revision for r in script.iterate_revisions(head, "base")} for head in current)


def test_downgrade_removes_only_the_enrollment_tables(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0001")
    with engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    assert not OURS & tables and {"agents", "nodes", "tenants"} <= tables
