"""How lists rank registers: by the sell verdict first, then by severity (shared by the reads and
the register summary that keeps these keys)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from collector.storage.rows import SEVERITY_LEVELS

# Rank of a register with no verdict yet (never reported): sorts with the unknown. Storage does not
# import the alert model; tests/collector/test_sell_order.py checks it equals alerts.UNKNOWN_RANK.
UNKNOWN_SELL_RANK = 1
CANNOT_SELL = "cannot_sell"  # register_state.sell_status of a register that cannot sell now
# "No stop ahead" sorts after every real stop; an instant no register will reach.
NO_BLOCK = datetime(9999, 1, 1, tzinfo=UTC)


def severity_rank(column: ColumnElement[Any]) -> ColumnElement[int]:
    """0 for no severity, then 1 … len(SEVERITY_LEVELS) from the mildest to the worst."""
    return sa.case({label: rank for rank, label in enumerate(SEVERITY_LEVELS, start=1)}, value=column, else_=0)
