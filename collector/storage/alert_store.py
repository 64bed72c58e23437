"""Persistence for the alert engine: one row per (register, rule), its history and comments."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from collector.storage.dialect import member_of, upsert_insert
from collector.storage.errors import InvalidValue
from collector.storage.register_summary import refresh_registers
from collector.storage.rows import ALERT_STATUSES, AlertChangeRow, AlertRow, CommentRow, check_severity
from collector.storage.schema import alert_comments, alert_history, alerts

_ALERT_FIELDS = (
    "severity",
    "status",
    "acknowledged",
    "acked_by",
    "acked_at",
    "assignee",
    "started_at",
    "updated_at",
    "cleared_at",
    "silenced_until",
    "message",
    "details",
)


def check_alert_status(status: str | None) -> str | None:
    if status is not None and status not in ALERT_STATUSES:
        raise InvalidValue(f"unknown alert status {status!r}; expected one of {', '.join(ALERT_STATUSES)}")
    return status


def upsert_alert(conn: sa.Connection, alert: AlertRow, *, refresh_summary: bool = True) -> int:
    """Write the current occurrence of (register, rule), creating or overwriting it; returns its id.

    ``refresh_summary=False``: the caller refreshes the register summary itself, once, for all the
    registers of its transaction in one sorted pass (the alert engine) — a refresh per alert locked
    summary and node-total rows out of order and deadlocked with the ingest writer on PostgreSQL."""
    check_severity(alert.severity)
    check_alert_status(alert.status)
    values: dict[str, Any] = {name: getattr(alert, name) for name in _ALERT_FIELDS}
    values["details"] = dict(alert.details)
    stmt = upsert_insert(conn, alerts).values(register_id=alert.register_id, rule=alert.rule, **values)
    upsert = stmt.on_conflict_do_update(
        index_elements=[alerts.c.register_id, alerts.c.rule],
        set_={name: stmt.excluded[name] for name in _ALERT_FIELDS},
    ).returning(alerts.c.id)
    alert_id = int(conn.execute(upsert).scalar_one())
    if refresh_summary:
        refresh_registers(conn, [alert.register_id])
    return alert_id


def alert_from_row(row: sa.Row[Any]) -> AlertRow:
    data = row._mapping
    return AlertRow(
        id=data["id"],
        register_id=data["register_id"],
        rule=data["rule"],
        **{name: data[name] for name in _ALERT_FIELDS},
    )


def load_alert(conn: sa.Connection, register_id: str, rule: str) -> AlertRow | None:
    row = conn.execute(
        sa.select(alerts).where(alerts.c.register_id == register_id, alerts.c.rule == rule)
    ).first()
    return None if row is None else alert_from_row(row)


def load_alerts(
    conn: sa.Connection,
    *,
    register_ids: Collection[str] | None = None,
    status: str | None = None,
) -> list[AlertRow]:
    """Unscoped load for the alert engine (e.g. every active alert at start-up)."""
    query = sa.select(alerts).order_by(alerts.c.id)
    if register_ids is not None:
        query = query.where(member_of(conn, alerts.c.register_id, register_ids))
    if status is not None:
        query = query.where(alerts.c.status == check_alert_status(status))
    return [alert_from_row(r) for r in conn.execute(query)]


def add_alert_history(conn: sa.Connection, change: AlertChangeRow) -> int:
    stmt = (
        sa.insert(alert_history)
        .values(
            alert_id=change.alert_id,
            at=change.at,
            action=change.action,
            actor=change.actor,
            details=dict(change.details),
        )
        .returning(alert_history.c.id)
    )
    return int(conn.execute(stmt).scalar_one())


def load_alert_history(conn: sa.Connection, alert_id: int) -> list[AlertChangeRow]:
    """Oldest first."""
    rows = conn.execute(
        sa.select(alert_history)
        .where(alert_history.c.alert_id == alert_id)
        .order_by(alert_history.c.at, alert_history.c.id)
    )
    return [
        AlertChangeRow(alert_id=r.alert_id, at=r.at, action=r.action, actor=r.actor, details=r.details)
        for r in rows
    ]


def add_comment(
    conn: sa.Connection, alert_id: int, author: str, text: str, *, at: datetime | None = None
) -> int:
    if not text.strip():
        raise InvalidValue("an empty comment")
    stmt = (
        sa.insert(alert_comments)
        .values(alert_id=alert_id, author=author, text=text, at=at or datetime.now(UTC))
        .returning(alert_comments.c.id)
    )
    return int(conn.execute(stmt).scalar_one())


def list_comments(conn: sa.Connection, alert_id: int) -> list[CommentRow]:
    """Oldest first."""
    rows = conn.execute(
        sa.select(alert_comments)
        .where(alert_comments.c.alert_id == alert_id)
        .order_by(alert_comments.c.at, alert_comments.c.id)
    )
    return [CommentRow(**r._asdict()) for r in rows]
