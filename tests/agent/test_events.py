"""derive_events: table of (previous poll, current poll) → expected event kinds and data."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from msgspec.structs import replace

from agent.events import DerivedEvent, derive_events
from protocol.kkt.fn import FnWarning, warning_names
from protocol.kkt.vocabulary import ShiftStatus, Vendor
from protocol.mqtt.rules import EventKind
from protocol.mqtt.wire import FnState, OfdState, RegisterState, ShiftState

E = EventKind
OPENED_AT = datetime(2026, 11, 28, 9, 0)
FIRST_UNSENT = datetime(2026, 11, 28, 10, 30)


def state(
    shift: ShiftStatus = ShiftStatus.OPEN,
    number: int | None = 7,
    fn_serial: str | None = "9999078900012345",
    unsent: int | None = 0,
    flags: int | None = 0,
) -> RegisterState:
    return RegisterState(
        vendor=Vendor.SHTRIH,
        protocol="shtrih",
        serial="0012345678901234",
        shift=ShiftState(status=shift, number=number, opened_at=OPENED_AT if shift is ShiftStatus.OPEN else None),
        fn=FnState(serial=fn_serial, warning_flags=flags, warnings=warning_names(flags) if flags is not None else []),
        ofd=OfdState(
            unsent_count=unsent,
            first_unsent_number=101 if unsent else None,
            first_unsent_at=FIRST_UNSENT if unsent else None,
        ),
    )


OPEN, X, C, U = ShiftStatus.OPEN, ShiftStatus.EXPIRED, ShiftStatus.CLOSED, ShiftStatus.UNKNOWN
WARN = FnWarning.REPLACE_SOON | FnWarning.OFD_TIMEOUT

CASES: list[tuple[str, RegisterState, RegisterState, list[tuple[EventKind, dict[str, Any]]]]] = [
    ("nothing changed", state(), state(), []),
    ("shift opened", state(C, 6), state(OPEN, 7), [(E.SHIFT_OPENED, {"number": 7, "opened_at": "2026-11-28T09:00:00"})]),
    ("shift closed", state(OPEN, 7), state(C, 7), [(E.SHIFT_CLOSED, {"number": 7})]),
    ("expired shift closed", state(X, 7), state(C, 7), [(E.SHIFT_CLOSED, {"number": 7})]),
    ("shift ran past 24 h: alert, not event", state(OPEN, 7), state(X, 7), []),
    ("closed and reopened between polls", state(OPEN, 7), state(OPEN, 8),
     [(E.SHIFT_CLOSED, {"number": 7}), (E.SHIFT_OPENED, {"number": 8, "opened_at": "2026-11-28T09:00:00"})]),
    ("whole shift between polls", state(C, 7), state(C, 8),
     [(E.SHIFT_OPENED, {"number": 8, "inferred": True}), (E.SHIFT_CLOSED, {"number": 8, "inferred": True})]),
    ("shift status unknown before", state(U, None), state(OPEN, 7), []),
    ("shift status unknown now", state(OPEN, 7), state(U, None), []),
    ("closed with number unknown", state(OPEN, None), state(C, 7), [(E.SHIFT_CLOSED, {"number": 7})]),
    ("open, number unread", state(OPEN, 7), state(OPEN, None), []),
    ("ФН replaced, count restarts", state(C, 120, fn_serial="A1"), state(C, 0, fn_serial="B2"),
     [(E.FN_REPLACED, {"old_serial": "A1", "new_serial": "B2"})]),
    ("ФН serial unread", state(fn_serial="A1"), state(fn_serial=None), []),
    ("OFD backlog started", state(unsent=0), state(unsent=3),
     [(E.OFD_BACKLOG_STARTED, {"unsent_count": 3, "first_unsent_number": 101, "first_unsent_at": "2026-11-28T10:30:00"})]),
    ("OFD backlog grows", state(unsent=3), state(unsent=9), []),
    ("OFD backlog cleared", state(unsent=9), state(unsent=0), [(E.OFD_BACKLOG_CLEARED, {"previous_unsent_count": 9})]),
    ("OFD count unread", state(unsent=None), state(unsent=4), []),
    ("warnings raised, bit order", state(flags=0), state(flags=int(WARN)),
     [(E.FN_WARNING_RAISED, {"warning": "REPLACE_SOON"}), (E.FN_WARNING_RAISED, {"warning": "OFD_TIMEOUT"})]),
    ("one warning cleared, one raised", state(flags=int(WARN)), state(flags=int(FnWarning.REPLACE_SOON | FnWarning.URGENT_REPLACEMENT)),
     [(E.FN_WARNING_RAISED, {"warning": "URGENT_REPLACEMENT"}), (E.FN_WARNING_CLEARED, {"warning": "OFD_TIMEOUT"})]),
    ("warnings unread", state(flags=int(WARN)), state(flags=None), []),
]


@pytest.mark.parametrize(("prev", "cur", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_derive_events(prev: RegisterState, cur: RegisterState, expected: list[tuple[EventKind, dict[str, Any]]]) -> None:
    events = derive_events(prev, cur)
    assert [e.kind for e in events] == [kind for kind, _ in expected]
    for event, (_, data) in zip(events, expected, strict=True):
        assert data.items() <= event.data.items(), event.data
        assert event.message


def test_first_poll_has_no_baseline() -> None:
    assert derive_events(None, state(OPEN, 7, unsent=5, flags=int(WARN))) == []


def test_several_changes_in_one_poll_come_in_a_stable_order() -> None:
    prev = state(OPEN, 7, fn_serial="A1", unsent=2, flags=int(FnWarning.REPLACE_SOON))
    cur = state(C, 7, fn_serial="B2", unsent=0, flags=0)
    assert [e.kind for e in derive_events(prev, cur)] == [
        E.FN_REPLACED, E.SHIFT_CLOSED, E.OFD_BACKLOG_CLEARED, E.FN_WARNING_CLEARED
    ]


def test_messages_are_russian_and_name_the_warning() -> None:
    (event,) = derive_events(state(flags=0), state(flags=int(FnWarning.CRITICAL_ERROR)))
    assert event == DerivedEvent(
        E.FN_WARNING_RAISED,
        "Предупреждение ФН: критическая ошибка ФН",
        {"warning": "CRITICAL_ERROR", "meaning": "критическая ошибка ФН"},
    )
    assert derive_events(state(C, 6), state(OPEN, 7))[0].message == "Смена №7 открыта"


def test_unknown_warning_names_are_tolerated() -> None:
    prev = replace(state(flags=None), fn=FnState(warnings=["FUTURE_BIT"]))
    cur = state(flags=0)
    (event,) = derive_events(prev, cur)
    assert event.kind is E.FN_WARNING_CLEARED and event.data["warning"] == "FUTURE_BIT"


def test_event_data_is_json_ready() -> None:
    for _, prev, cur, _ in CASES:
        for event in derive_events(prev, cur):
            json.dumps(event.data)
