"""The agent's publishing policy: significant changes at once, counters at most once a minute,
a heartbeat otherwise (agent/runtime/publish_policy.py)."""

from __future__ import annotations

from datetime import date, datetime

import msgspec
import pytest
from msgspec.structs import replace

from agent.config import validate
from agent.runtime.publish_policy import PublishPolicy
from protocol.kkt.vocabulary import ShiftStatus
from protocol.mqtt.wire import RegisterState

POLICY = PublishPolicy(counter_interval=60.0, heartbeat=300.0)


def _state(**changes: object) -> RegisterState:
    base = msgspec.convert({
        "vendor": "shtrih", "protocol": "shtrih", "serial": "0001", "rnm": "R1", "last_fd_number": 100,
        "shift": {"status": "open", "number": 7, "receipts": 10},
        "fn": {"serial": "FN1", "phase": 3, "fiscal": True, "valid_until": "2027-05-01", "warnings": []},
        "ofd": {"unsent_count": 2, "first_unsent_at": "2026-12-06T10:00:00"},
    }, RegisterState)  # fmt: skip
    return replace(base, **changes)


def _with(part: str, **changes: object) -> RegisterState:
    state = _state()
    return replace(state, **{part: replace(getattr(state, part), **changes)})


SIGNIFICANT = {
    "shift closed": _with("shift", status=ShiftStatus.CLOSED),
    "new shift": _with("shift", number=8, receipts=0),
    "ФН phase": _with("fn", phase=4, fiscal=False),
    "ФН validity": _with("fn", valid_until=date(2028, 5, 1)),
    "ФН warning": _with("fn", warning_flags=1, warnings=["replace_urgent"]),
    "backlog crosses 10": _with("ofd", unsent_count=10),
    "backlog gone": _with("ofd", unsent_count=0, first_unsent_at=None),
    "device error": _with("device", last_error="0x4E: смена превысила 24 часа"),
    "ФН replaced": _with("fn", serial="FN2"),
}
COUNTERS = {
    "receipts": _with("shift", receipts=11),
    "document number": _state(last_fd_number=101),
    "backlog within its band": _with("ofd", unsent_count=9),
}


@pytest.mark.parametrize("name", sorted(SIGNIFICANT))
def test_a_significant_change_is_published_on_the_poll_that_sees_it(name: str) -> None:
    assert POLICY.decide(_state(), SIGNIFICANT[name], forced=False, since_publish=0.5) == "change"


@pytest.mark.parametrize("name", sorted(COUNTERS))
def test_a_counter_change_waits_for_the_counter_interval(name: str) -> None:
    changed = COUNTERS[name]
    assert POLICY.decide(_state(), changed, forced=False, since_publish=59.0) is None
    assert POLICY.decide(_state(), changed, forced=False, since_publish=60.0) == "change"


def test_per_poll_noise_is_not_a_change_and_a_heartbeat_follows_its_interval() -> None:
    polled = _state(read_at=datetime(2026, 12, 6, 12, 0, 1), register_clock=datetime(2026, 12, 6, 15, 0, 1))
    assert POLICY.decide(_state(), polled, forced=False, since_publish=120.0) is None
    assert POLICY.decide(_state(), polled, forced=False, since_publish=300.0) == "heartbeat"


def test_first_state_is_published_and_a_forced_poll_is_answered() -> None:
    assert POLICY.decide(None, _state(), forced=False, since_publish=0.0) == "change"
    assert POLICY.decide(_state(), _state(), forced=True, since_publish=0.0) == "poll-now"


def test_counter_interval_defaults_to_a_minute_and_is_configurable() -> None:
    device = {"protocol": "shtrih", "url": "tcp://127.0.0.1:7778"}
    assert validate({"agent_id": "a1", "devices": [device]}).counter_interval == 60.0
    custom = validate({"agent_id": "a1", "devices": [device], "counter_interval": 15})
    assert custom.counter_interval == 15.0
