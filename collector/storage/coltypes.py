"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect


class UtcDateTime(sa.TypeDecorator[datetime]):
    """An instant: aware UTC ``datetime`` in and out, ``timestamptz`` on PostgreSQL.

    SQLite has no time zones and SQLAlchemy drops ``tzinfo`` when it formats the text, so an
    aware value in another zone would be stored as the wrong instant. Values are therefore
    normalised to UTC before binding and tagged UTC when read; naive values are refused
    because we cannot know which clock they came from (register local times use plain
    ``sa.DateTime`` columns instead).
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} given for a UTC instant column")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def json_document() -> sa.types.TypeEngine[Any]:
    """JSON on SQLite, JSONB on PostgreSQL (indexable, compact, no duplicate keys)."""
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
