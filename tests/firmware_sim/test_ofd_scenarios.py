"""The OFD diagnosis scenarios: no-internet, wrong-ofd-host, ofd-not-acking, autonomous — their
exchange state, table 19 server, fiscalisation mode, timeline actions and bad input."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from firmware_sim.cli import state_summary
from firmware_sim.clock import ManualClock
from firmware_sim.scenario import (
    ScenarioError,
    ScenarioRunner,
    available_scenarios,
    load_scenario,
    parse_scenario,
)
from protocol.kkt.fn import FnWarning, OfdExchangeFlag

START = datetime(2026, 3, 2, 9, 0, 0)
OFD_SCENARIOS = {"no-internet", "wrong-ofd-host", "ofd-not-acking", "autonomous"}


def build(name: str) -> tuple[ManualClock, ScenarioRunner]:
    clock = ManualClock(START)
    scenario = load_scenario(name)
    return clock, ScenarioRunner(scenario, scenario.build(clock))


def test_the_ofd_scenarios_are_shipped() -> None:
    assert set(available_scenarios()) >= OFD_SCENARIOS


def test_no_internet_keeps_the_transport_down_and_the_queue_growing() -> None:
    clock, runner = build("no-internet")
    status = runner.model.exchange_status()
    assert status.flags == OfdExchangeFlag.MESSAGE_PENDING and status.unsent_count == 12
    clock.advance(timedelta(hours=1))
    runner.tick()  # sales every 15 min, the drain finds no transport
    assert runner.model.exchange_status().unsent_count == 16
    assert "down to 127.0.0.1:7777" in state_summary(runner.model)["ofd"]


def test_wrong_host_names_an_unresolvable_server_until_the_engineer_fixes_it() -> None:
    clock, runner = build("wrong-ofd-host")
    assert (runner.model.ofd_host, runner.model.ofd_port) == ("ofd.kassa-monitor.invalid", 7777)
    clock.advance(timedelta(hours=1))
    events = runner.tick()
    assert runner.model.ofd_host == "127.0.0.1"
    assert any("OFD server set to 127.0.0.1:7777" in event for event in events)


def test_ofd_not_acking_sends_but_gets_no_receipts_then_acks_again() -> None:
    clock, runner = build("ofd-not-acking")
    model = runner.model
    flags = model.exchange_status().flags
    assert flags & OfdExchangeFlag.TRANSPORT_CONNECTED and flags & OfdExchangeFlag.WAITING_FOR_TICKET
    assert FnWarning.OFD_TIMEOUT in model.warnings()  # 25 days without a receipt
    clock.advance(timedelta(minutes=5))
    runner.tick()
    assert model.exchange_status().unsent_count == 30  # the drain took nothing
    model.ofd_acks = True
    assert model.deliver_to_ofd() == 30
    assert not model.exchange_status().flags & OfdExchangeFlag.WAITING_FOR_TICKET


def test_autonomous_register_queues_nothing_and_reports_its_mode() -> None:
    clock, runner = build("autonomous")
    model = runner.model
    fiscalisation = model.fiscalisation()
    assert fiscalisation is not None and fiscalisation.autonomous
    clock.advance(timedelta(hours=1))
    runner.tick()
    assert model.last_fd_number > 6 and not model.ofd_queue  # documents made, none for an OFD
    assert model.exchange_status().flags == OfdExchangeFlag(0)
    assert state_summary(model)["ofd"] == "autonomous (no OFD exchange)"


def test_timeline_actions_script_the_ofd() -> None:
    text = (
        'format = 1\n[state]\nunsent = { count = 3, oldest = "-1d" }\n'
        '[[at]]\nt = "+1s"\naction = "ofd_stops_acking"\n'
        '[[at]]\nt = "+2s"\naction = "ofd_server"\nofd_host = "kkt.sbis.ru"\nofd_port = 7777\n'
        '[[at]]\nt = "+3s"\naction = "ofd_acks"\n'
    )
    clock = ManualClock(START)
    scenario = parse_scenario(text)
    runner = ScenarioRunner(scenario, scenario.build(clock))
    clock.advance(timedelta(seconds=2))
    runner.tick()
    assert not runner.model.ofd_acks and runner.model.ofd_host == "kkt.sbis.ru"
    assert runner.model.deliver_to_ofd() == 0
    clock.advance(timedelta(seconds=1))
    runner.tick()
    assert runner.model.deliver_to_ofd() == 3


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('format = 1\n[state]\nofd_port = 70000\n', "state.ofd_port"),
        ('format = 1\n[state]\nofd_port = 0\n', "state.ofd_port"),
        ('format = 1\n[state]\nofd_host = ""\n', "state.ofd_host"),
        (f'format = 1\n[state]\nofd_host = "{"a" * 65}"\n', "state.ofd_host"),
        ('format = 1\n[state]\nofd_acks = "no"\n', "state.ofd_acks"),
        ('format = 1\n[state]\nautonomous = true\nunsent = { count = 3, oldest = "-1d" }\n', "autonomous"),
        ('format = 1\n[[at]]\nt = "+1s"\naction = "ofd_server"\nofd_port = -1\n', "at[0].ofd_port"),
    ],
)
def test_bad_ofd_values_name_the_key(text: str, needle: str) -> None:
    with pytest.raises(ScenarioError, match=r"bad\.toml") as error:
        parse_scenario(text, source="bad.toml")
    assert needle in str(error.value)
