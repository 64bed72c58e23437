"""User actions on stored alerts: acknowledge, comment, silence — with who/when in the history.

Each action runs in the caller's write transaction: lock the alert row (PostgreSQL
``FOR UPDATE``; SQLite serialises writers anyway), check it is inside the caller's scope, apply
the pure lifecycle function from ``collector.alerts`` and write back only the columns the action
owns, so a concurrent rule evaluation changing severity or message is not overwritten.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from datetime import datetime

import sqlalchemy as sa
from pydantic import ValidationError

from collector.alerts import AlertActionError, AlertChange, AlertRecord, Severity
from collector.alerts import acknowledge as lifecycle_acknowledge
from collector.alerts import comment as lifecycle_comment
from collector.alerts import silence as lifecycle_silence
from collector.security import Principal
from collector.storage import repository as repo
from collector.storage.rows import AlertChangeRow, AlertRow
from collector.storage.schema import alerts
from collector.web.problems import Problem, not_found

Action = Callable[[AlertRecord], tuple[AlertRecord, list[AlertChange]]]
# The columns user actions may change; everything else belongs to the rule engine.
_USER_COLUMNS = ("acknowledged", "acked_by", "acked_at", "silenced_until", "assignee")


def as_record(alert: AlertRow) -> AlertRecord:
    """The stored row as the lifecycle's record (its history is in the table; actions only append)."""
    values = {field.name: getattr(alert, field.name) for field in fields(alert)}
    try:
        return AlertRecord.model_validate(
            {**values, "severity": Severity.parse(alert.severity), "details": dict(alert.details), "history": []}
        )
    except (ValidationError, ValueError) as exc:
        raise Problem(422, "alert-action-refused", "Alert action refused", f"alert cannot be acted on: {exc}") from None


def _history_row(alert_id: int, change: AlertChange) -> AlertChangeRow:
    details = {"from": change.from_value, "to": change.to_value, "text": change.text}
    return AlertChangeRow(
        alert_id=alert_id,
        at=change.at,
        action=change.kind.value,
        actor=change.actor,
        details={key: value for key, value in details.items() if value is not None},
    )


def _locked_alert(conn: sa.Connection, principal: Principal, alert_id: int) -> AlertRow:
    conn.execute(sa.select(alerts.c.id).where(alerts.c.id == alert_id).with_for_update())
    alert = repo.get_alert(conn, principal.scope, alert_id)
    if alert is None:
        raise not_found(f"alert {alert_id}")
    if principal.action_scope is not None and repo.get_alert(conn, principal.action_scope, alert_id) is None:
        raise Problem(403, "forbidden", "Forbidden", f"you may see alert {alert_id} but not act on it")
    return alert


def perform(conn: sa.Connection, principal: Principal, alert_id: int, action: Action) -> tuple[AlertRow, list[AlertChange]]:
    """Apply ``action`` to the alert and persist it; returns the stored alert and the changes made."""
    alert = _locked_alert(conn, principal, alert_id)
    before = as_record(alert)
    try:
        after, changes = action(before)
    except AlertActionError as exc:
        raise Problem(422, "alert-action-refused", "Alert action refused", str(exc)) from None
    if changes:
        values = {name: getattr(after, name) for name in _USER_COLUMNS if getattr(after, name) != getattr(before, name)}
        conn.execute(sa.update(alerts).where(alerts.c.id == alert_id).values(**values, updated_at=after.updated_at))
        for change in changes:
            repo.add_alert_history(conn, _history_row(alert_id, change))
        alert = repo.get_alert(conn, principal.scope, alert_id) or alert
    return alert, changes


def acknowledge(user: str, now: datetime) -> Action:
    return lambda record: lifecycle_acknowledge(record, user, now)


def silence(until: datetime | None, user: str, now: datetime) -> Action:
    return lambda record: lifecycle_silence(record, until, user, now)


def add_comment(conn: sa.Connection, principal: Principal, alert_id: int, text: str, now: datetime) -> int:
    """Comment on the alert (history entry + comment row); returns the comment id."""
    _, changes = perform(conn, principal, alert_id, lambda record: lifecycle_comment(record, principal.user, text, now))
    stored = changes[0].text or text  # the lifecycle keeps the stripped text
    return repo.add_comment(conn, alert_id, principal.user, stored, at=now)
