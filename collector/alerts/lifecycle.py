"""Alert lifecycle as a pure reducer (ThingsBoard's model): one alert per (register, rule).

States are active/cleared × acknowledged/not, plus ``pending`` for a condition still inside its
rule's pending period (the flapping guard; Grafana's "For"). A pending record was never raised:
it is not shown or notified, and if the condition goes away it is dropped (``apply`` returns None).

* a new condition raises an alert (after the pending period, if any);
* a severity rise escalates and resets the acknowledgement, a fall de-escalates and keeps it;
* the condition disappearing clears the alert (acknowledgement kept: cleared-acked / cleared-unacked);
* the condition returning after a clear raises a new occurrence (fresh acknowledgement and assignee;
  a silence still running carries over, because maintenance windows outlive flapping conditions).

Every user-visible change is an ``AlertChange`` (who, when, what, from → to) for the history table;
message/detail updates without a severity change are not history.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from collector.alerts.rules import Condition
from collector.alerts.severity import RuleId, Severity
from collector.alerts.thresholds import Thresholds

SYSTEM_ACTOR = "system"
_ZERO = timedelta(0)


class AlertActionError(ValueError):
    """An action that does not make sense for this alert (acknowledging a pending one, empty comment …)."""


class AlertStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    CLEARED = "cleared"


class ChangeKind(StrEnum):
    RAISED = "raised"
    ESCALATED = "escalated"
    DEESCALATED = "deescalated"
    CLEARED = "cleared"
    ACKNOWLEDGED = "acknowledged"
    COMMENTED = "commented"
    ASSIGNED = "assigned"
    SILENCED = "silenced"
    UNSILENCED = "unsilenced"


# The changes people are told about; acknowledgements, comments and silences are not news.
NOTIFIED_CHANGES = frozenset({ChangeKind.RAISED, ChangeKind.ESCALATED, ChangeKind.DEESCALATED, ChangeKind.CLEARED})


class AlertChange(BaseModel):
    model_config = ConfigDict(frozen=True)

    at: datetime
    actor: str  # a user id, or SYSTEM_ACTOR for rule-driven changes
    kind: ChangeKind
    from_value: str | None = None
    to_value: str | None = None
    text: str | None = None


class AlertRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    register_id: str
    rule: RuleId
    occurrence: int = 1  # +1 each time the alert is raised again after a clear
    severity: Severity
    status: AlertStatus
    acknowledged: bool = False
    acked_by: str | None = None
    acked_at: datetime | None = None
    assignee: str | None = None
    started_at: datetime  # when the condition was first seen (the pending period counts)
    updated_at: datetime
    cleared_at: datetime | None = None
    silenced_until: datetime | None = None
    pending_since: datetime | None = None  # condition seen but its pending period not yet over
    message: str
    details: dict[str, Any]
    blocks_at: datetime | None = None
    history: list[AlertChange]

    @property
    def state_label(self) -> str:
        """ThingsBoard's four states (``active_unack`` …), or ``pending``."""
        if self.status is AlertStatus.PENDING:
            return "pending"
        return f"{self.status.value}_{'ack' if self.acknowledged else 'unack'}"

    def is_silenced(self, now: datetime) -> bool:
        return self.silenced_until is not None and self.silenced_until > _utc(now)


def _utc(value: datetime) -> datetime:
    if value.utcoffset() is None:
        raise AlertActionError(f"times must be aware datetimes, got naive {value!r}")
    return value.astimezone(UTC)


def _actor(user: str) -> str:
    if not user or not user.strip():
        raise AlertActionError("an alert action needs the acting user")
    return user.strip()


def _record_change(record: AlertRecord, change: AlertChange, **update: Any) -> AlertRecord:
    return record.model_copy(update={**update, "updated_at": change.at, "history": [*record.history, change]})


def _from_condition(condition: Condition) -> dict[str, Any]:
    return {
        "severity": condition.severity,
        "message": condition.message,
        "details": condition.details,
        "blocks_at": condition.blocks_at,
    }


# --- rule-driven transitions ---------------------------------------------------------------------


def apply(
    record: AlertRecord | None,
    condition: Condition | None,
    now: datetime,
    *,
    register_id: str,
    pending: timedelta = _ZERO,
) -> tuple[AlertRecord | None, list[AlertChange]]:
    """Fold one evaluation of a rule into its alert. Returns the new record and the changes to log.

    A None record in the result means "no alert": none existed, or a pending one was dropped
    (the storage deletes it). ``pending`` is how long the condition must persist before raising.
    """
    now = _utc(now)
    if record is not None:
        if record.register_id != register_id:
            raise AlertActionError(f"alert of {record.register_id} applied to register {register_id}")
        if condition is not None and condition.rule != record.rule:
            raise AlertActionError(f"{condition.rule.value} condition applied to a {record.rule.value} alert")
    if condition is None:
        return _condition_gone(record, now)
    if record is None or record.status is not AlertStatus.ACTIVE:
        return _condition_seen(record, condition, now, register_id, pending)
    return _update_active(record, condition, now)


def _condition_gone(record: AlertRecord | None, now: datetime) -> tuple[AlertRecord | None, list[AlertChange]]:
    if record is None or record.status is AlertStatus.PENDING:
        return None, []
    if record.status is AlertStatus.CLEARED:
        # A re-raise that was still pending is called off; the cleared alert stays as it was.
        return (record if record.pending_since is None else record.model_copy(update={"pending_since": None})), []
    change = AlertChange(
        at=now, actor=SYSTEM_ACTOR, kind=ChangeKind.CLEARED, from_value=record.severity.label, text=record.message
    )
    return _record_change(record, change, status=AlertStatus.CLEARED, cleared_at=now), [change]


def _condition_seen(
    record: AlertRecord | None, condition: Condition, now: datetime, register_id: str, pending: timedelta
) -> tuple[AlertRecord, list[AlertChange]]:
    since = record.pending_since if record is not None and record.pending_since is not None else now
    if now - since >= pending:
        return _raise(record, condition, now, since, register_id)
    if record is None:
        fresh = AlertRecord(
            register_id=register_id,
            rule=condition.rule,
            status=AlertStatus.PENDING,
            started_at=now,
            updated_at=now,
            pending_since=now,
            history=[],
            **_from_condition(condition),
        )
        return fresh, []
    if record.status is AlertStatus.PENDING:
        return record.model_copy(update=_from_condition(condition)), []
    # cleared: keep showing the old occurrence until the new one is due
    return (record if record.pending_since is not None else record.model_copy(update={"pending_since": now})), []


def _raise(
    previous: AlertRecord | None, condition: Condition, now: datetime, since: datetime, register_id: str
) -> tuple[AlertRecord, list[AlertChange]]:
    occurrence = 1
    silenced_until = None
    if previous is not None:
        occurrence = previous.occurrence + (1 if previous.status is AlertStatus.CLEARED else 0)
        if previous.is_silenced(now):
            silenced_until = previous.silenced_until
    change = AlertChange(
        at=now,
        actor=SYSTEM_ACTOR,
        kind=ChangeKind.RAISED,
        to_value=condition.severity.label,
        text=condition.message,
    )
    raised = AlertRecord(
        register_id=register_id,
        rule=condition.rule,
        occurrence=occurrence,
        status=AlertStatus.ACTIVE,
        started_at=since,
        updated_at=now,
        silenced_until=silenced_until,
        history=[change],
        **_from_condition(condition),
    )
    return raised, [change]


def _update_active(record: AlertRecord, condition: Condition, now: datetime) -> tuple[AlertRecord, list[AlertChange]]:
    update = _from_condition(condition)
    if condition.severity == record.severity:
        if all(getattr(record, key) == value for key, value in update.items()):
            return record, []
        return record.model_copy(update={**update, "updated_at": now}), []
    rising = condition.severity > record.severity
    change = AlertChange(
        at=now,
        actor=SYSTEM_ACTOR,
        kind=ChangeKind.ESCALATED if rising else ChangeKind.DEESCALATED,
        from_value=record.severity.label,
        to_value=condition.severity.label,
        text=condition.message,
    )
    if rising:  # a worse problem needs a fresh look, so an earlier acknowledgement no longer covers it
        update.update(acknowledged=False, acked_by=None, acked_at=None)
    return _record_change(record, change, **update), [change]


def apply_conditions(
    records: Mapping[RuleId, AlertRecord],
    conditions: Iterable[Condition],
    now: datetime,
    *,
    register_id: str,
    thresholds: Thresholds,
) -> dict[RuleId, tuple[AlertRecord | None, list[AlertChange]]]:
    """One register's evaluation against its stored alerts: every rule that has a record or a
    condition gets a result; rules without either are absent. Pending periods come from ``thresholds``."""
    found = {condition.rule: condition for condition in conditions}
    results: dict[RuleId, tuple[AlertRecord | None, list[AlertChange]]] = {}
    for rule in (*records, *(rule for rule in found if rule not in records)):
        results[rule] = apply(
            records.get(rule), found.get(rule), now, register_id=register_id, pending=thresholds.pending_for(rule)
        )
    return results


# --- user actions --------------------------------------------------------------------------------


def _raised(record: AlertRecord, action: str) -> None:
    if record.status is AlertStatus.PENDING:
        raise AlertActionError(f"cannot {action} a pending alert: it has not been raised yet")


def acknowledge(record: AlertRecord, user: str, now: datetime) -> tuple[AlertRecord, list[AlertChange]]:
    """Active or cleared alerts can be acknowledged; acknowledging twice changes nothing."""
    actor, now = _actor(user), _utc(now)
    _raised(record, "acknowledge")
    if record.acknowledged:
        return record, []
    change = AlertChange(at=now, actor=actor, kind=ChangeKind.ACKNOWLEDGED, from_value="unack", to_value="ack")
    return _record_change(record, change, acknowledged=True, acked_by=actor, acked_at=now), [change]


def comment(record: AlertRecord, user: str, text: str, now: datetime) -> tuple[AlertRecord, list[AlertChange]]:
    actor, now = _actor(user), _utc(now)
    _raised(record, "comment on")
    if not text.strip():
        raise AlertActionError("a comment needs text")
    change = AlertChange(at=now, actor=actor, kind=ChangeKind.COMMENTED, text=text.strip())
    return _record_change(record, change), [change]


def silence(
    record: AlertRecord, until: datetime | None, user: str, now: datetime
) -> tuple[AlertRecord, list[AlertChange]]:
    """Mute notifications until ``until``; None (or a time already past) lifts a running silence."""
    actor, now = _actor(user), _utc(now)
    _raised(record, "silence")
    previous = record.silenced_until.isoformat() if record.is_silenced(now) and record.silenced_until else None
    if until is None or _utc(until) <= now:
        if previous is None:
            return record, []
        change = AlertChange(at=now, actor=actor, kind=ChangeKind.UNSILENCED, from_value=previous)
        return _record_change(record, change, silenced_until=None), [change]
    until = _utc(until)
    if until == record.silenced_until:
        return record, []
    change = AlertChange(
        at=now, actor=actor, kind=ChangeKind.SILENCED, from_value=previous, to_value=until.isoformat()
    )
    return _record_change(record, change, silenced_until=until), [change]


def assign(
    record: AlertRecord, assignee: str | None, user: str, now: datetime
) -> tuple[AlertRecord, list[AlertChange]]:
    """Assign to a user (None unassigns); assigning to the current assignee changes nothing."""
    actor, now = _actor(user), _utc(now)
    _raised(record, "assign")
    target = assignee.strip() if assignee and assignee.strip() else None
    if target == record.assignee:
        return record, []
    change = AlertChange(at=now, actor=actor, kind=ChangeKind.ASSIGNED, from_value=record.assignee, to_value=target)
    return _record_change(record, change, assignee=target), [change]
