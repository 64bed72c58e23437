"""Which states become history rows (collector/ingest/history_policy.py, history_keeper.py): every
change that matters to monitoring, the link coming back, one sample per 15 minutes while the
charted values move (6 h while flat); and the writer applying it, on both backends."""

from __future__ import annotations

import json
import random
import sys
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))
import ingest_testkit as kit

from collector.ingest.batcher import IngestWriter
from collector.ingest.history_keeper import HistoryKeeper
from collector.ingest.history_policy import (
    FIRST,
    LINK,
    REPLAY,
    SAMPLE,
    HistoryPolicy,
    history_document,
    reference_history_document,
)
from collector.storage import repository as repo
from collector.storage.rows import HistoryRow
from collector.storage.schema import state_history
from collector.storage.scope import Scope
from collector.web.shared.present import history_point
from protocol.kkt.significance import Aspect, significant, significant_aspects
from protocol.kkt.state import DeviceState, OfdLinkCheck, RegisterState, ShiftStatus
from protocol.mqtt import wire
from protocol.mqtt.models import EventKind

engine = kit.engine
T0 = kit.T0
BASE = kit.register_state(unsent=2, oldest_unsent_age=timedelta(hours=1))


def _with(part: str, **changes: object) -> RegisterState:
    return BASE.model_copy(update={part: getattr(BASE, part).model_copy(update=changes)})


def _keeper(*kept: tuple[RegisterState, datetime]) -> HistoryKeeper:
    keeper = HistoryKeeper(HistoryPolicy())
    for state, at in kept:
        keeper.keep("kkt-1", "agent-a", state, at)
    return keeper


CHANGES = {
    "shift": _with("shift", status=ShiftStatus.CLOSED),
    "fn": _with("fn", valid_until=date(2027, 1, 1)),
    "backlog": _with("ofd", unsent_count=10),
    "device": _with("device", last_error="0x4E"),
    "identity": _with("fn", serial="9999-new"),
}


@pytest.mark.parametrize("aspect", sorted(CHANGES))
def test_a_change_that_matters_is_kept_at_once_and_named(aspect: str) -> None:
    keeper = _keeper((BASE, T0))
    assert keeper.keep("kkt-1", "agent-a", CHANGES[aspect], T0 + timedelta(seconds=10)) == aspect


def test_the_aspects_hashed_are_the_significant_projection_in_aspect_order() -> None:
    for state in (BASE, *CHANGES.values()):
        projection = significant(state)
        assert significant_aspects(state) == tuple(getattr(projection, aspect.value) for aspect in Aspect)


def test_ф_н_flags_and_phase_are_changes_too() -> None:
    keeper = _keeper((BASE, T0))
    assert keeper.keep("kkt-1", "agent-a", _with("fn", warning_flags=2, warnings=["memory_full"]), T0 + timedelta(seconds=5)) == "fn"
    assert keeper.keep("kkt-1", "agent-a", _with("fn", phase=4, fiscal=False), T0 + timedelta(seconds=9)) == "fn"


def test_counters_moving_are_sampled_every_15_minutes_and_a_flat_register_every_6_hours() -> None:
    keeper = _keeper((BASE, T0))
    moved = _with("ofd", unsent_count=5)  # within the 1–9 band: a counter, not a change
    assert keeper.keep("kkt-1", "agent-a", moved, T0 + timedelta(minutes=14, seconds=59)) is None
    assert keeper.keep("kkt-1", "agent-a", moved, T0 + timedelta(minutes=15)) == SAMPLE
    flat = T0 + timedelta(minutes=15)
    assert keeper.keep("kkt-1", "agent-a", moved, flat + timedelta(hours=5, minutes=59)) is None
    assert keeper.keep("kkt-1", "agent-a", moved, flat + timedelta(hours=6)) == SAMPLE


def test_the_first_state_after_a_lost_link_or_an_offline_agent_is_kept() -> None:
    keeper = _keeper((BASE, T0))
    keeper.link_lost("kkt-1")
    assert keeper.keep("kkt-1", "agent-a", BASE, T0 + timedelta(minutes=1)) == LINK
    assert keeper.keep("kkt-1", "agent-a", BASE, T0 + timedelta(minutes=2)) is None
    keeper.agent_offline("agent-a")
    assert keeper.keep("kkt-1", "agent-a", BASE, T0 + timedelta(minutes=3)) == LINK


def test_replayed_records_older_than_the_newest_are_thinned_among_themselves() -> None:
    keeper = _keeper((BASE, T0 + timedelta(hours=3)))
    replayed = [keeper.keep("kkt-1", "agent-a", BASE, T0 + timedelta(minutes=m)) for m in range(0, 40, 5)]
    assert replayed == [REPLAY, None, None, None, None, None, None, None]
    assert keeper.keep("kkt-1", "agent-a", CHANGES["shift"], T0 + timedelta(minutes=41)) == "shift"


def test_a_restarted_collector_keeps_each_register_s_next_state_as_first() -> None:
    keeper = _keeper((BASE, T0))
    keeper.clear()  # what a rolled-back batch or a restart leaves
    assert keeper.keep("kkt-1", "agent-a", BASE, T0 + timedelta(seconds=1)) == FIRST


def test_the_slim_history_document_gives_the_history_api_and_charts_the_same_points() -> None:
    def point(document: dict[str, object]) -> object:
        return history_point(HistoryRow("agent-a", 1, 1, "kkt-1", T0, T0, document))

    full = BASE.model_copy(update={"device": BASE.device.model_copy(update={"last_error": "0x4E"})})
    slim = json.loads(history_document(full))
    assert point(slim) == point(full.model_dump(mode="json"))
    assert RegisterState.model_validate(slim).device.last_error == "0x4E"  # the change it was kept for
    assert len(history_document(full)) < len(full.model_dump_json()) / 2


# (part, field, value): each a way a state can differ from the defaults, listed field or not.
_SLIM_CHANGES: list[tuple[str | None, str, object]] = [
    (None, "schema_version", 1), (None, "schema_version", 99), (None, "register_clock", None),
    (None, "register_clock", datetime(2026, 1, 2, 3, 4, 5, 6)), (None, "read_at", None), (None, "serial", "x"),
    (None, "firmware", None), ("shift", "status", ShiftStatus.UNKNOWN), ("shift", "status", ShiftStatus.EXPIRED),
    ("shift", "opened_at", None), ("shift", "number", None), ("shift", "receipts", 0),
    ("fn", "phase", None), ("fn", "phase", 4), ("fn", "valid_until", None), ("fn", "warnings", ["memory_full"]),
    ("fn", "warnings", []), ("fn", "documents_left", 5), ("fn", "serial", None),
    ("ofd", "unsent_count", None), ("ofd", "unsent_count", 0), ("ofd", "first_unsent_at", None),
    ("ofd", "server_host", "ofd.example"), ("ofd", "link_check", OfdLinkCheck(
        host="ofd.example", port=7777, resolved=True, connected=False, checked_at=T0)),
    ("device", "last_error", "0x4E"), ("device", "fn_errors", [0x15]), ("device", "mode", 5),
    ("device", "paper_present", False),
]  # fmt: skip


class _OtherDevice(DeviceState):
    """Another class with the same fields: never the default, whatever its values."""


def _changed(state: RegisterState, changes: list[tuple[str | None, str, object]]) -> RegisterState:
    for part, name, value in changes:
        if part is None:
            state = state.model_copy(update={name: value})
        else:
            state = state.model_copy(update={part: getattr(state, part).model_copy(update={name: value})})
    return state


def test_the_slim_document_is_pydantic_s_exclude_defaults_text() -> None:
    empty = RegisterState(vendor=BASE.vendor, protocol="atol")
    states = [BASE, empty, BASE.model_copy(update={"device": _OtherDevice()})]
    for base in (BASE, empty):
        states += [_changed(base, [change]) for change in _SLIM_CHANGES]
    pick = random.Random(11)
    states += [_changed(BASE, pick.sample(_SLIM_CHANGES, 6)) for _ in range(300)]
    for state in states:
        assert history_document(state) == reference_history_document(state), state
        if isinstance(state.device, _OtherDevice):
            continue  # a subclass only pydantic can hold
        # The collector decodes states as the msgspec mirror: the same text from it.
        mirror = wire.decode_as(wire.RegisterState, state.model_dump_json().encode())
        assert history_document(mirror) == reference_history_document(state), state


def _day_of_traffic() -> list[tuple[datetime, tuple[str, bytes]]]:
    """One state a minute for a day; while the shift is open (09–21) receipts every minute and the
    unsent count moving inside its band, the backlog crossing 10 at noon, the link lost at 15:00."""
    messages: list[tuple[datetime, tuple[str, bytes]]] = []
    seq = 0
    for minute in range(24 * 60):
        seq += 1
        at = T0 + timedelta(minutes=minute)
        open_now = 9 * 60 <= minute < 21 * 60
        unsent = (12 if minute >= 12 * 60 else 1) + (minute % 7 if open_now else 0)
        state = kit.register_state(receipts=minute if open_now else 0, unsent=unsent, oldest_unsent_age=timedelta(hours=1))
        if not open_now:
            state = state.model_copy(update={"shift": state.shift.model_copy(update={"status": ShiftStatus.CLOSED})})
        if minute == 15 * 60:
            messages.append((at, kit.event_msg("agent-a", "kkt-1", 1, seq, EventKind.LINK_LOST)))
            seq += 1
        messages.append((at, kit.state_msg("agent-a", "kkt-1", 1, seq, state)))
    return messages


def test_a_day_at_one_state_a_minute_keeps_the_changes_and_the_samples(engine: sa.Engine) -> None:
    writer = IngestWriter(engine, kit.FakeDownlink())  # the default settings: the history policy on
    for at, (topic, payload) in _day_of_traffic():
        writer.process([kit.inbound(topic, payload, at=at)])
    with engine.connect() as conn:
        reasons = Counter(conn.execute(sa.select(state_history.c.reason)).scalars())
        latest = repo.get_register(conn, Scope.admin(), "kkt-1")
        points = repo.state_history(conn, Scope.admin(), "kkt-1", T0, T0 + timedelta(days=1))
    assert reasons[FIRST] == 1 and reasons["shift"] == 2 and reasons["backlog"] == 1 and reasons[LINK] == 1
    assert 40 <= reasons[SAMPLE] <= 50  # 12 h of a moving unsent count at 15 min, flat hours at 6 h
    assert sum(reasons.values()) < 60  # of 1 440 states
    assert latest is not None and latest.state_received_at == T0 + timedelta(minutes=24 * 60 - 1)  # latest always current
    assert [p.ts for p in points] == sorted(p.ts for p in points) and len(points) == sum(reasons.values())
