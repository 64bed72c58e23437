"""Issue 13 item 9: a value that matters is published only when two reads agree and it is plausible.

The gate is checked on its own with the incident's values, and through the runtime: the simulator
over ``sim://`` flips the same bit in two bytes of its answers (Shtrih's LRC misses that), and no
corrupted identity/ФН/counter value may reach the real Mosquitto.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from msgspec.structs import replace

from agent.config import load_config
from agent.drivers.link import LinkClosed
from agent.plausibility import GUARDED_FIELDS, PlausibilityGate, field, with_fields
from agent.runtime import AgentRuntime, DevicePoller, open_driver
from firmware_sim.devices import make_device
from firmware_sim.faults import FaultyEndpoint
from firmware_sim.hosts import install_sim_url_handler, register_sim, unregister_sim
from firmware_sim.model import RegisterModel
from protocol.kkt.vocabulary import Vendor
from protocol.mqtt.models import StatePayload, decode
from protocol.mqtt.wire import FnState, RegisterState

sys.path.insert(0, str(Path(__file__).parents[1]))
from netkit import wait_for

AGENT = "agent-plaus"
TRUE_VALIDITY = date(2028, 2, 29)
FLIPPED_VALIDITY = date(2029, 2, 28)  # YY 28→29 and DD 29→28: bit 0 of two bytes, same LRC


def snapshot(**fn: Any) -> RegisterState:
    base = {"serial": "9999078900001234", "valid_until": TRUE_VALIDITY, "registrations_done": 1}
    return RegisterState(
        vendor=Vendor.SHTRIH,
        protocol="shtrih",
        serial="0012345678",
        rnm="0000000001012345",
        inn="7701234567",
        register_clock=datetime(2026, 12, 6, 12, 0),
        last_fd_number=100,
        fn=FnState(**(base | fn)),
    )


def reads(*states: RegisterState) -> Callable[[], RegisterState]:
    queue = list(states)
    return lambda: queue.pop(0)


def test_a_flipped_validity_is_not_published_when_the_re_read_disagrees(caplog: pytest.LogCaptureFixture) -> None:
    gate = PlausibilityGate(lambda: "kkt-1")
    good, flipped = snapshot(), snapshot(valid_until=FLIPPED_VALIDITY)
    assert gate.review(good, reads(good)) == good  # first read: confirmed by a second one
    with caplog.at_level(logging.WARNING, logger="agent.plausibility"):
        published = gate.review(flipped, reads(good))
    assert published.fn.valid_until == TRUE_VALIDITY
    assert "fn.valid_until" in caplog.text and "disagree" in caplog.text and "2029-02-28" in caplog.text
    assert gate.review(good, reads()) == good  # unchanged: no re-read needed


def test_a_real_change_is_published_once_two_reads_agree() -> None:
    gate = PlausibilityGate(lambda: "kkt-1")
    gate.review(snapshot(), reads(snapshot()))
    renewed = replace(snapshot(registrations_done=2), rnm="0000000002012345")
    assert gate.review(renewed, reads(renewed)) == renewed


def test_the_first_read_is_confirmed_too_and_unknown_until_it_is() -> None:
    gate = PlausibilityGate(lambda: "kkt-1")
    published = gate.review(snapshot(valid_until=FLIPPED_VALIDITY), reads(snapshot()))
    assert published.fn.valid_until is None  # "unknown", never a guess
    assert published.fn.serial == "9999078900001234"  # agreed fields go through


def test_a_failed_re_read_keeps_the_previous_values() -> None:
    gate = PlausibilityGate(lambda: "kkt-1")
    gate.review(snapshot(), reads(snapshot()))

    def unplugged() -> RegisterState:
        raise LinkClosed("device disappeared")

    assert gate.review(snapshot(valid_until=FLIPPED_VALIDITY), unplugged).fn.valid_until == TRUE_VALIDITY


@pytest.mark.parametrize(
    ("valid_until", "reason"),
    [(date(2015, 1, 1), "earlier than any ФН"), (date(2031, 1, 1), "days after the register clock")],
)
def test_an_impossible_validity_is_refused_with_a_reason(
    valid_until: date, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    gate = PlausibilityGate(lambda: "kkt-1")
    gate.review(snapshot(), reads(snapshot()))
    odd = snapshot(valid_until=valid_until)
    with caplog.at_level(logging.WARNING, logger="agent.plausibility"):
        assert gate.review(odd, reads(odd)).fn.valid_until == TRUE_VALIDITY  # two reads agree, still refused
    assert reason in caplog.text
    assert gate.refusals == 1


def test_counters_going_backwards_with_the_same_fn_are_refused_but_a_new_fn_restarts_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = PlausibilityGate(lambda: "kkt-1")
    gate.review(snapshot(), reads(snapshot()))
    back = replace(snapshot(registrations_done=0), last_fd_number=90)
    with caplog.at_level(logging.WARNING, logger="agent.plausibility"):
        published = gate.review(back, reads(back))
    assert (published.last_fd_number, published.fn.registrations_done) == (100, 1)
    assert "went backwards" in caplog.text
    new_fn = replace(snapshot(serial="9999078900009999", registrations_done=0), last_fd_number=1)
    assert gate.review(new_fn, reads(new_fn)) == new_fn


def test_with_fields_replaces_nested_values_on_frozen_models() -> None:
    state = with_fields(snapshot(), {"fn.valid_until": None, "rnm": None})
    assert (state.fn.valid_until, state.rnm, state.fn.serial) == (None, None, "9999078900001234")


# --------------------------------------------------------------------------- through the runtime


class RecordingPoller:
    """The production driver connection, remembering every raw read the driver returned."""

    def __init__(self, inner: DevicePoller, raw: list[RegisterState]) -> None:
        self._inner = inner
        self._raw = raw

    def poll(self) -> RegisterState:
        state = self._inner.poll()
        self._raw.append(state)
        return state

    def close(self) -> None:
        self._inner.close()


@pytest.fixture
def flipping_register() -> Iterator[tuple[RegisterModel, FaultyEndpoint]]:
    install_sim_url_handler()
    model = RegisterModel(clock=lambda: datetime.now().replace(microsecond=0), fn_valid_until=TRUE_VALIDITY)
    endpoint = FaultyEndpoint(make_device("shtrih", model), seed=13).flip(times=None, probability=0.05)
    register_sim("flipping", endpoint)
    yield model, endpoint
    unregister_sim("flipping")


def test_runtime_never_publishes_a_corrupted_guarded_value(
    mqtt_broker: Any, mqtt_recorder: Any, flipping_register: tuple[RegisterModel, FaultyEndpoint], tmp_path: Path
) -> None:
    model, endpoint = flipping_register
    raw: list[RegisterState] = []
    config = load_config(
        None,
        env={},
        overrides={
            "agent_id": AGENT,
            "heartbeat": 0.2,
            "ack_mode": "puback",
            "broker": {"url": mqtt_broker.url},
            "outbox": {"path": str(tmp_path / "outbox.sqlite")},
            "devices": [{"protocol": "shtrih", "url": "sim://flipping", "poll_interval": 0.05, "register_id": "kkt-1"}],
        },
    )
    recorder = mqtt_recorder([f"kassa/v1/{AGENT}/state/#"])
    runtime = AgentRuntime(config, opener=lambda device: RecordingPoller(open_driver(device), raw))
    runtime.start()
    try:
        truth = {
            "serial": model.serial, "rnm": model.rnm, "inn": model.inn, "fn.serial": model.fn_serial,
            "fn.valid_until": TRUE_VALIDITY, "last_fd_number": model.last_fd_number,
            "fn.registrations_done": model.registrations_done, "fn.registrations_left": model.registrations_left,
            "fn.documents_left": model.documents_left, "shift.number": model.shift_number,
        }
        assert set(truth) == set(GUARDED_FIELDS)

        def corrupted(state: RegisterState) -> list[str]:
            return [p for p in GUARDED_FIELDS if field(state, p) is not None and field(state, p) != truth[p]]

        # Run until the fault has put a wrong guarded value into several raw reads, the ФН date among them.
        wait_for(lambda: sum(1 for s in raw if corrupted(s)) >= 8, 60, "flips that hit guarded values")
        wait_for(lambda: any(s.fn.valid_until not in (None, TRUE_VALIDITY) for s in raw), 60, "a flipped ФН date")
        messages = recorder.wait_for(lambda m: len(m) >= 20)
    finally:
        runtime.stop(timeout=2)
    states = [decode(m.topic, m.payload) for m in messages]
    published = [s.state for s in states if isinstance(s, StatePayload)]
    assert published
    assert [corrupted(s) for s in published if corrupted(s)] == []
    assert any(s.fn.valid_until == TRUE_VALIDITY for s in published)  # the true date does get through
    assert runtime.workers[0].gate.refusals > 0
    assert endpoint.fired[endpoint.faults[0].kind] > 0
