"""A single-company install for tests whose agents report without enrollment (the collector's
``company`` setting needs the company to exist before it starts)."""

from __future__ import annotations

from datetime import UTC, datetime

from collector.accounts.audit import Actor
from collector.accounts.errors import NotFound
from collector.accounts.tree import create_company, find_company
from collector.storage import create_engine_from_url, migrate

COMPANY = "Тестовая сеть"
INN = "7707083893"  # a valid ИНН (control digit); one company per test database


def single_company(db_url: str, name: str = COMPANY) -> str:
    """Migrate ``db_url`` and create the company unless it exists; returns the name to pass as ``company``."""
    migrate(db_url)
    engine = create_engine_from_url(db_url)
    try:
        with engine.begin() as conn:
            try:
                find_company(conn, name)
            except NotFound:
                create_company(conn, Actor.cli(), name=name, inn=INN, at=datetime.now(UTC))
    finally:
        engine.dispose()
    return name
