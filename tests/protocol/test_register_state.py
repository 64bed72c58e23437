"""RegisterState: JSON round-trip, unknown stays unknown, ages on the register's own clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from protocol.kkt.state import FnState, OfdState, RegisterState, ShiftState, ShiftStatus, Vendor


def make_state() -> RegisterState:
    clock = datetime(2026, 11, 28, 12, 0)
    return RegisterState(
        vendor=Vendor.SHTRIH,
        protocol="shtrih",
        serial="0012345678901234",
        register_clock=clock,
        read_at=datetime(2026, 11, 28, 9, 0, tzinfo=UTC),
        shift=ShiftState(status=ShiftStatus.OPEN, number=7, receipts=3, opened_at=clock - timedelta(hours=23)),
        fn=FnState(serial="9999078900012345", valid_until=date(2027, 1, 1), warnings=["REPLACE_SOON"]),
        ofd=OfdState(unsent_count=5, first_unsent_number=100, first_unsent_at=clock - timedelta(days=2)),
    )


def test_json_round_trip_keeps_every_field() -> None:
    state = make_state()
    assert RegisterState.model_validate_json(state.model_dump_json()) == state


def test_unknown_fields_are_none_not_guesses() -> None:
    bare = RegisterState(vendor=Vendor.ATOL, protocol="atol")
    assert bare.shift.status is ShiftStatus.UNKNOWN
    assert bare.fn.valid_until is None and bare.device.paper_present is None
    assert bare.oldest_unsent_age() is None and bare.shift_age() is None
    assert bare.register_id == "atol-unknown"


def test_ages_use_the_register_clock() -> None:
    state = make_state()
    assert state.oldest_unsent_age() == timedelta(days=2)
    assert state.shift_age() == timedelta(hours=23)
    assert state.register_id == "shtrih-0012345678901234"
    empty_queue = state.model_copy(update={"ofd": OfdState(unsent_count=0)})
    assert empty_queue.oldest_unsent_age() is None


def test_newer_fields_from_a_future_agent_are_ignored() -> None:
    raw = make_state().model_dump(mode="json")
    raw["fn"]["some_future_field"] = 1
    raw["brand_new"] = {"x": 1}
    assert RegisterState.model_validate(raw) == make_state()
