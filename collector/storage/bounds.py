"""Bounds on what reaches the database: a value too long for its column, or text PostgreSQL cannot
store (NUL), is refused here with a clear ``InvalidValue`` — or, for dead letters, which must
always be storable, clipped — instead of failing a whole transaction inside the driver."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from collector.storage.errors import InvalidValue

CLIPPED_MARK = "…"


def column_limit(column: sa.Column[Any]) -> int | None:
    length = getattr(column.type, "length", None)
    return length if isinstance(length, int) else None


def check_fits(table: sa.Table, values: Mapping[str, Any]) -> None:
    """Raise ``InvalidValue`` naming the column when a text value does not fit it as it is."""
    for name, value in values.items():
        if not isinstance(value, str):
            continue
        if "\x00" in value:
            raise InvalidValue(f"{table.name}.{name} contains a NUL character")
        limit = column_limit(table.c[name])
        if limit is not None and len(value) > limit:
            raise InvalidValue(f"{table.name}.{name} is {len(value)} characters long; at most {limit} fit")


def clip(text: str, limit: int | None) -> str:
    """``text`` without NULs, cut to ``limit`` characters with a visible mark when it was longer."""
    cleaned = text.replace("\x00", "\ufffd")
    if limit is None or len(cleaned) <= limit:
        return cleaned
    return cleaned[: limit - len(CLIPPED_MARK)] + CLIPPED_MARK
