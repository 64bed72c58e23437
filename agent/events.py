"""Discrete events derived from two consecutive polls of one register (pure, no I/O).

``derive_events(prev, cur)`` compares snapshots; link lost/regained come from the runtime, which
knows about failed polls. Unknown values (``None``, ``ShiftStatus.UNKNOWN``) on either side never
produce an event: a poll that could not read something must not look like a change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from protocol.kkt.fn import FN_WARNING_MEANINGS, FnWarning, warning_names
from protocol.kkt.vocabulary import ShiftStatus
from protocol.mqtt.rules import EventKind
from protocol.mqtt.wire import RegisterState, ShiftState

_OPEN = (ShiftStatus.OPEN, ShiftStatus.EXPIRED)


@dataclass(frozen=True, slots=True)
class DerivedEvent:
    kind: EventKind
    message: str  # Russian, shown to operators as is
    data: dict[str, Any] = field(default_factory=dict)  # JSON-ready values only


def derive_events(prev: RegisterState | None, cur: RegisterState) -> list[DerivedEvent]:
    """Events between two polls of the same register, in a stable order; none for the first poll."""
    if prev is None:
        return []
    events: list[DerivedEvent] = []
    for rule in _RULES:
        events.extend(rule(prev, cur))
    return events


def _shift_events(prev: RegisterState, cur: RegisterState) -> list[DerivedEvent]:
    before, after = prev.shift, cur.shift
    if ShiftStatus.UNKNOWN in (before.status, after.status):
        return []
    was_open, is_open = before.status in _OPEN, after.status in _OPEN
    if was_open and not is_open:
        return [_closed(before.number if before.number is not None else after.number)]
    if not was_open and is_open:
        return [_opened(after)]
    if before.number is None or after.number is None or before.number == after.number:
        return []  # OPEN → EXPIRED alone is not an event; alerts watch the shift's age
    if was_open:
        # Closed and reopened between two polls.
        return [_closed(before.number), _opened(after)]
    if after.number > before.number:
        # A whole shift opened and closed between two polls. A lower number means a new ФН
        # restarted the count, which is reported as fn_replaced instead.
        return [_opened(after, inferred=True), _closed(after.number, inferred=True)]
    return []


def _opened(shift: ShiftState, *, inferred: bool = False) -> DerivedEvent:
    data: dict[str, Any] = {"number": shift.number}
    if shift.opened_at is not None and not inferred:
        data["opened_at"] = shift.opened_at.isoformat()
    if inferred:
        data["inferred"] = True
    return DerivedEvent(EventKind.SHIFT_OPENED, f"Смена {_number(shift.number)} открыта", data)


def _closed(number: int | None, *, inferred: bool = False) -> DerivedEvent:
    data: dict[str, Any] = {"number": number}
    if inferred:
        data["inferred"] = True
    return DerivedEvent(EventKind.SHIFT_CLOSED, f"Смена {_number(number)} закрыта", data)


def _number(number: int | None) -> str:
    return f"№{number}" if number is not None else "(номер неизвестен)"


def _fn_replaced(prev: RegisterState, cur: RegisterState) -> list[DerivedEvent]:
    old, new = prev.fn.serial, cur.fn.serial
    if not old or not new or old == new:
        return []
    return [DerivedEvent(EventKind.FN_REPLACED, f"ФН заменён: {old} → {new}", {"old_serial": old, "new_serial": new})]


def _ofd_backlog(prev: RegisterState, cur: RegisterState) -> list[DerivedEvent]:
    before, after = prev.ofd.unsent_count, cur.ofd.unsent_count
    if before is None or after is None:
        return []
    if before == 0 and after > 0:
        first_at = cur.ofd.first_unsent_at
        data = {
            "unsent_count": after,
            "first_unsent_number": cur.ofd.first_unsent_number,
            "first_unsent_at": first_at.isoformat() if first_at else None,
        }
        return [DerivedEvent(EventKind.OFD_BACKLOG_STARTED, f"Появились неотправленные в ОФД документы: {after}", data)]
    if before > 0 and after == 0:
        return [
            DerivedEvent(
                EventKind.OFD_BACKLOG_CLEARED, "Все документы переданы в ОФД", {"previous_unsent_count": before}
            )
        ]
    return []


def _warning_set(state: RegisterState) -> set[str] | None:
    """Names of the set ФН warning bits, or None when the poll did not read them."""
    if state.fn.warning_flags is None and not state.fn.warnings:
        return None
    names = set(state.fn.warnings)
    if state.fn.warning_flags is not None:
        names |= set(warning_names(state.fn.warning_flags))
    return names


def _warning_order(name: str) -> tuple[int, str]:
    # Known bits in bit order, then names this code does not know (tolerated, sorted).
    member = FnWarning.__members__.get(name)
    return (int(member), name) if member is not None else (1 << 16, name)


def _warning_meaning(name: str) -> str:
    member = FnWarning.__members__.get(name)
    return FN_WARNING_MEANINGS.get(member, name) if member is not None else name


def _fn_warnings(prev: RegisterState, cur: RegisterState) -> list[DerivedEvent]:
    before, after = _warning_set(prev), _warning_set(cur)
    if before is None or after is None:
        return []
    events = []
    for name in sorted(after - before, key=_warning_order):
        meaning = _warning_meaning(name)
        events.append(
            DerivedEvent(EventKind.FN_WARNING_RAISED, f"Предупреждение ФН: {meaning}", {"warning": name, "meaning": meaning})
        )
    for name in sorted(before - after, key=_warning_order):
        meaning = _warning_meaning(name)
        events.append(
            DerivedEvent(EventKind.FN_WARNING_CLEARED, f"Снято предупреждение ФН: {meaning}", {"warning": name, "meaning": meaning})
        )
    return events


_RULES: tuple[Callable[[RegisterState, RegisterState], list[DerivedEvent]], ...] = (
    _fn_replaced,
    _shift_events,
    _ofd_backlog,
    _fn_warnings,
)
