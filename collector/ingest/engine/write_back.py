"""Stored alert rows ↔ lifecycle records, history rows, and the verdict columns an evaluation writes back."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from collector.alerts import AlertChange, AlertRecord, AlertStatus, RuleId, SellStatus, Severity, Verdict
from collector.storage.rows import AlertChangeRow, AlertRow, RegisterEvaluation

# Lifecycle fields AlertRow has no column for; kept in the alert's details.
_LIFECYCLE_KEYS = ("occurrence", "blocks_at")


def record_from_row(row: AlertRow) -> AlertRecord | None:
    try:
        rule = RuleId(row.rule)
    except ValueError:
        return None
    details = dict(row.details)
    occurrence = int(details.pop("occurrence", 1) or 1)
    blocks_raw = details.pop("blocks_at", None)
    return AlertRecord(
        register_id=row.register_id,
        rule=rule,
        occurrence=occurrence,
        severity=Severity.parse(row.severity),
        status=AlertStatus(row.status),
        acknowledged=row.acknowledged,
        acked_by=row.acked_by,
        acked_at=row.acked_at,
        assignee=row.assignee,
        started_at=row.started_at,
        updated_at=row.updated_at,
        cleared_at=row.cleared_at,
        silenced_until=row.silenced_until,
        message=row.message,
        details=details,
        blocks_at=datetime.fromisoformat(blocks_raw) if isinstance(blocks_raw, str) else None,
        history=[],
    )


def row_from_record(record: AlertRecord) -> AlertRow:
    return AlertRow(
        register_id=record.register_id,
        rule=record.rule.value,
        severity=record.severity.label,
        status=record.status.value,
        started_at=record.started_at,
        updated_at=record.updated_at,
        acknowledged=record.acknowledged,
        acked_by=record.acked_by,
        acked_at=record.acked_at,
        assignee=record.assignee,
        cleared_at=record.cleared_at,
        silenced_until=record.silenced_until,
        message=record.message,
        details={
            **record.details,
            "occurrence": record.occurrence,
            "blocks_at": record.blocks_at.isoformat() if record.blocks_at else None,
        },
    )


def register_evaluation(
    verdict: Verdict, worst: Severity | None, now: datetime, verdict_key: str | None = None
) -> RegisterEvaluation:
    """What lists sort and show: the verdict, and its stop (or since when it cannot sell) as ``blocks_at``."""
    floor = verdict.least_severity
    if floor is not None and (worst is None or worst < floor):
        worst = floor
    return RegisterEvaluation(
        worst_severity=None if worst is None else worst.label,
        time_to_block_seconds=None if verdict.at is None else int((verdict.at - now).total_seconds()),
        blocks_at=verdict.at,
        evaluated_at=now,
        sell_status=verdict.status.value,
        sell_rank=verdict.rank,
        verdict=verdict.model_dump(mode="json"),
        verdict_key=verdict_key,
    )


def change_row(alert_id: int, change: AlertChange) -> AlertChangeRow:
    return AlertChangeRow(
        alert_id=alert_id,
        at=change.at,
        action=change.kind.value,
        actor=change.actor,
        details={"from": change.from_value, "to": change.to_value, "text": change.text},
    )


def same_outcome(stored: RegisterEvaluation | None, new: RegisterEvaluation) -> bool:
    """Whether ``new`` tells readers nothing ``stored`` does not, so the row need not be rewritten.

    Not compared: the evaluation time and ``time_to_block_seconds`` (read as ``blocks_at`` − now,
    see ``web.shared.present``); the verdict's ``last_data_at`` unless it is unknown (the only
    verdict that shows it: every register sending would otherwise be rewritten by every sweep);
    and the verdict key's times. Those are the ages of the inputs at the stored evaluation, and
    the stored verdict is still the verdict of the inputs they describe; the digest (what the
    inputs were, thresholds included) must be equal, so another collector compares its inputs
    with a key of the inputs that gave this very verdict."""
    if stored is None:
        return False
    return (
        stored.worst_severity == new.worst_severity
        and stored.blocks_at == new.blocks_at
        and stored.sell_status == new.sell_status
        and stored.sell_rank == new.sell_rank
        and _digest(stored.verdict_key) == _digest(new.verdict_key)
        and _same_shown(stored.verdict, new.verdict)
    )


_UNKNOWN = SellStatus.UNKNOWN.value
_ABSENT = object()


def _same_shown(stored: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> bool:
    """Whether two stored verdicts (``Verdict`` as JSON) read the same: equal, or equal but for
    the last data time of a verdict that is not unknown. Compared in place: a sweep asks this of
    every register, most of them with only that time moved."""
    if stored is None or new is None:
        return stored is new
    if stored.get("status") == _UNKNOWN or len(stored) != len(new):
        return stored == new
    return all(name == "last_data_at" or stored.get(name, _ABSENT) == value for name, value in new.items())


def _digest(key: str | None) -> str | None:
    return None if key is None else key.partition(";")[0]
