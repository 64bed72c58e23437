from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.alerts.lifecycle import (
    SYSTEM_ACTOR,
    AlertActionError,
    AlertChange,
    AlertRecord,
    AlertStatus,
    ChangeKind,
    acknowledge,
    apply,
    apply_conditions,
    assign,
    comment,
    silence,
)
from collector.alerts.rules import Condition
from collector.alerts.severity import RuleId, Severity
from collector.alerts.thresholds import Thresholds

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
REG = "shtrih-42"
W, M, C = Severity.WARNING, Severity.MAJOR, Severity.CRITICAL


def at(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute)


def cond(severity: Severity, rule: RuleId = RuleId.OFD_BACKLOG, message: str = "") -> Condition:
    return Condition(rule=rule, severity=severity, message=message or f"{severity.label}", details={"n": 1})


def evaluated(
    record: AlertRecord | None, condition: Condition | None, minute: int
) -> tuple[AlertRecord, list[AlertChange]]:
    """``apply`` where the test expects an alert to remain."""
    result, changes = apply(record, condition, at(minute), register_id=REG)
    assert result is not None
    return result, changes


def raised(severity: Severity = M, minute: int = 0) -> AlertRecord:
    return evaluated(None, cond(severity), minute)[0]


# (action, argument, minute) → (state after the step, change kinds the step logged)
Step = tuple[str, Any, int]
Expect = tuple[str | None, list[str]]

TRANSITIONS: dict[str, tuple[int, list[Step], list[Expect]]] = {
    "nothing stays nothing": (0, [("eval", None, 0)], [(None, [])]),
    "raise": (0, [("eval", M, 0)], [("active_unack", ["raised"])]),
    "same severity logs nothing": (
        0,
        [("eval", M, 0), ("eval", M, 1)],
        [("active_unack", ["raised"]), ("active_unack", [])],
    ),
    "escalation resets the acknowledgement": (
        0,
        [("eval", M, 0), ("ack", "ops", 1), ("eval", C, 2)],
        [("active_unack", ["raised"]), ("active_ack", ["acknowledged"]), ("active_unack", ["escalated"])],
    ),
    "de-escalation keeps the acknowledgement": (
        0,
        [("eval", C, 0), ("ack", "ops", 1), ("eval", W, 2)],
        [("active_unack", ["raised"]), ("active_ack", ["acknowledged"]), ("active_ack", ["deescalated"])],
    ),
    "clear keeps the acknowledgement": (
        0,
        [("eval", M, 0), ("ack", "ops", 1), ("eval", None, 2)],
        [("active_unack", ["raised"]), ("active_ack", ["acknowledged"]), ("cleared_ack", ["cleared"])],
    ),
    "a cleared alert can still be acknowledged": (
        0,
        [("eval", M, 0), ("eval", None, 1), ("eval", None, 2), ("ack", "ops", 3)],
        [("active_unack", ["raised"]), ("cleared_unack", ["cleared"]), ("cleared_unack", []), ("cleared_ack", ["acknowledged"])],
    ),
    "re-raise after clear is a fresh occurrence": (
        0,
        [("eval", M, 0), ("ack", "ops", 1), ("eval", None, 2), ("eval", W, 3)],
        [("active_unack", ["raised"]), ("active_ack", ["acknowledged"]), ("cleared_ack", ["cleared"]), ("active_unack", ["raised"])],
    ),
    "pending period before raising": (
        5,
        [("eval", M, 0), ("eval", C, 4), ("eval", C, 5), ("eval", C, 6)],
        [("pending", []), ("pending", []), ("active_unack", ["raised"]), ("active_unack", [])],
    ),
    "a flap inside the pending period is dropped and the clock restarts": (
        5,
        [("eval", M, 0), ("eval", None, 2), ("eval", M, 3), ("eval", M, 7), ("eval", M, 8)],
        [("pending", []), (None, []), ("pending", []), ("pending", []), ("active_unack", ["raised"])],
    ),
    "re-raise after clear also waits for the pending period": (
        5,
        [("eval", M, 0), ("eval", M, 5), ("eval", None, 6), ("eval", M, 7), ("eval", None, 8), ("eval", M, 9), ("eval", M, 14)],
        [
            ("pending", []),
            ("active_unack", ["raised"]),
            ("cleared_unack", ["cleared"]),
            ("cleared_unack", []),
            ("cleared_unack", []),
            ("cleared_unack", []),
            ("active_unack", ["raised"]),
        ],
    ),
}


def run(pending_minutes: int, steps: list[Step]) -> tuple[AlertRecord | None, list[Expect]]:
    record: AlertRecord | None = None
    seen: list[Expect] = []
    for action, arg, minute in steps:
        if action == "eval":
            condition = None if arg is None else cond(arg)
            record, changes = apply(
                record, condition, at(minute), register_id=REG, pending=timedelta(minutes=pending_minutes)
            )
        else:
            assert record is not None
            record, changes = acknowledge(record, arg, at(minute))
        seen.append((None if record is None else record.state_label, [change.kind.value for change in changes]))
    return record, seen


@pytest.mark.parametrize("name", list(TRANSITIONS))
def test_transition_table(name: str) -> None:
    pending, steps, expected = TRANSITIONS[name]
    _, seen = run(pending, steps)
    assert seen == expected


def test_re_raise_counts_occurrences_and_forgets_ack_and_assignee() -> None:
    record, _ = run(0, [("eval", M, 0), ("ack", "ops", 1), ("eval", None, 2), ("eval", W, 3)])
    assert record is not None
    assert (record.occurrence, record.severity, record.started_at) == (2, W, at(3))
    assert (record.acknowledged, record.acked_by, record.cleared_at) == (False, None, None)
    assert [c.kind for c in record.history] == [ChangeKind.RAISED]


def test_pending_raise_starts_when_the_condition_was_first_seen() -> None:
    record, _ = run(5, [("eval", M, 0), ("eval", C, 5)])
    assert record is not None
    assert (record.started_at, record.updated_at, record.severity, record.occurrence) == (at(0), at(5), C, 1)
    record, _ = run(5, [("eval", M, 0), ("eval", M, 5), ("eval", None, 6), ("eval", M, 7), ("eval", M, 12)])
    assert record is not None and (record.occurrence, record.started_at) == (2, at(7))


def test_change_entries_say_who_when_and_from_to() -> None:
    record = raised(C)
    record, _ = acknowledge(record, "anna", at(1))
    record, changes = evaluated(record, cond(M, message="новый текст"), 2)
    assert changes == [record.history[-1]]
    change = changes[0]
    assert (change.at, change.actor, change.kind) == (at(2), SYSTEM_ACTOR, ChangeKind.DEESCALATED)
    assert (change.from_value, change.to_value, change.text) == ("critical", "major", "новый текст")
    assert (record.acked_by, record.acked_at, record.message) == ("anna", at(1), "новый текст")
    record, changes = evaluated(record, None, 3)
    assert (changes[0].kind, changes[0].from_value, record.cleared_at) == (ChangeKind.CLEARED, "major", at(3))
    assert [c.kind for c in record.history] == [
        ChangeKind.RAISED,
        ChangeKind.ACKNOWLEDGED,
        ChangeKind.DEESCALATED,
        ChangeKind.CLEARED,
    ]


def test_message_updates_are_not_history() -> None:
    record = raised(M)
    same, changes = apply(record, cond(M), at(1), register_id=REG)
    assert same is record and changes == []
    updated, changes = apply(record, cond(M, message="ещё 5 дн."), at(2), register_id=REG)
    assert updated is not None and changes == []
    assert (updated.message, updated.updated_at, len(updated.history)) == ("ещё 5 дн.", at(2), 1)


def test_acknowledge_twice_changes_nothing() -> None:
    record, _ = acknowledge(raised(), "anna", at(1))
    again, changes = acknowledge(record, "boris", at(2))
    assert again is record and changes == [] and again.acked_by == "anna"


def test_comment() -> None:
    record, changes = comment(raised(), "anna", "  выехал техник  ", at(1))
    assert (changes[0].kind, changes[0].actor, changes[0].text) == (ChangeKind.COMMENTED, "anna", "выехал техник")
    assert record.history[-1] == changes[0] and record.status is AlertStatus.ACTIVE
    with pytest.raises(AlertActionError, match="text"):
        comment(record, "anna", "   ", at(2))


def test_silence_and_lift() -> None:
    record, changes = silence(raised(), at(60), "anna", at(1))
    assert record.is_silenced(at(59)) and not record.is_silenced(at(60))
    assert (changes[0].kind, changes[0].to_value) == (ChangeKind.SILENCED, at(60).isoformat())
    same, changes = silence(record, at(60), "anna", at(2))
    assert same is record and changes == []
    record, changes = silence(record, None, "boris", at(3))
    assert record.silenced_until is None
    assert (changes[0].kind, changes[0].from_value, changes[0].actor) == (ChangeKind.UNSILENCED, at(60).isoformat(), "boris")
    assert silence(record, at(2), "boris", at(4)) == (record, [])  # a past end on an unsilenced alert: nothing


def test_a_running_silence_survives_a_re_raise() -> None:
    record, _ = silence(raised(), at(120), "anna", at(1))
    record, _ = evaluated(record, None, 2)
    record, _ = evaluated(record, cond(M), 3)
    assert record.occurrence == 2 and record.silenced_until == at(120)
    record, _ = evaluated(record, None, 121)
    record, _ = evaluated(record, cond(M), 122)
    assert record.silenced_until is None


def test_assign() -> None:
    record, changes = assign(raised(), "tech-1", "anna", at(1))
    assert (record.assignee, changes[0].from_value, changes[0].to_value) == ("tech-1", None, "tech-1")
    assert assign(record, "tech-1", "anna", at(2)) == (record, [])
    record, changes = assign(record, None, "anna", at(3))
    assert record.assignee is None and changes[0].from_value == "tech-1"


@pytest.mark.parametrize(
    "action",
    [
        lambda r: acknowledge(r, "anna", at(1)),
        lambda r: comment(r, "anna", "x", at(1)),
        lambda r: silence(r, at(9), "anna", at(1)),
        lambda r: assign(r, "tech", "anna", at(1)),
    ],
)
def test_user_actions_refuse_pending_alerts(action: Any) -> None:
    pending, _ = apply(None, cond(M), at(0), register_id=REG, pending=timedelta(minutes=5))
    assert pending is not None and pending.status is AlertStatus.PENDING
    with pytest.raises(AlertActionError, match="pending"):
        action(pending)


def test_bad_calls_get_typed_errors() -> None:
    record = raised()
    with pytest.raises(AlertActionError, match="naive"):
        apply(record, None, datetime(2026, 1, 1), register_id=REG)
    with pytest.raises(AlertActionError, match="register"):
        apply(record, None, at(1), register_id="other")
    with pytest.raises(AlertActionError, match="fn_memory"):
        apply(record, cond(M, rule=RuleId.FN_MEMORY), at(1), register_id=REG)
    with pytest.raises(AlertActionError, match="user"):
        acknowledge(record, " ", at(1))


def test_apply_conditions_uses_per_rule_pending_periods() -> None:
    thresholds = Thresholds().merged({"pending": {"paper_out": 600}})
    existing = {RuleId.COVER_OPEN: raised(W).model_copy(update={"rule": RuleId.COVER_OPEN})}
    results = apply_conditions(
        existing,
        [cond(W, RuleId.PAPER_OUT), cond(M, RuleId.OFD_BACKLOG)],
        at(1),
        register_id=REG,
        thresholds=thresholds,
    )
    assert set(results) == {RuleId.COVER_OPEN, RuleId.PAPER_OUT, RuleId.OFD_BACKLOG}
    labels = {rule: (rec.state_label if rec else None) for rule, (rec, _) in results.items()}
    assert labels == {
        RuleId.COVER_OPEN: "cleared_unack",
        RuleId.PAPER_OUT: "pending",
        RuleId.OFD_BACKLOG: "active_unack",
    }


@given(st.lists(st.sampled_from([None, *Severity]), min_size=1, max_size=30))
def test_lifecycle_invariants(severities: list[Severity | None]) -> None:
    record: AlertRecord | None = None
    occurrences = 0
    previous: Severity | None = None
    for minute, severity in enumerate(severities):
        if record is not None and record.status is AlertStatus.ACTIVE and minute % 3 == 0:
            record, _ = acknowledge(record, "ops", at(minute))
        record, _ = apply(record, None if severity is None else cond(severity), at(minute), register_id=REG)
        if severity is not None and previous is None:
            occurrences += 1
        if severity is None:
            assert record is None or record.status is AlertStatus.CLEARED
        else:
            assert record is not None and record.status is AlertStatus.ACTIVE and record.severity is severity
            assert record.occurrence == occurrences
            if previous is None or severity > previous:
                assert not record.acknowledged
        previous = severity


def test_record_round_trips_through_json() -> None:
    record, _ = acknowledge(raised(C), "anna", at(1))
    record, _ = comment(record, "anna", "ФН заказан", at(2))
    restored = AlertRecord.model_validate_json(record.model_dump_json())
    assert restored == record
    assert restored.severity is Severity.CRITICAL and restored.history[-1].kind is ChangeKind.COMMENTED
