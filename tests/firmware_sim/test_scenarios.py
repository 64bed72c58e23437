"""Scenario files: every shipped one loads, derived flags follow the clock, bad files fail clearly."""

from __future__ import annotations

import contextlib
import dataclasses
from datetime import datetime, time, timedelta
from pathlib import Path

import pytest

from firmware_sim.clock import ManualClock
from firmware_sim.model import FiscalRefused
from firmware_sim.scenario import (
    ScenarioError,
    ScenarioRunner,
    available_scenarios,
    load_scenario,
    parse_duration,
    parse_scenario,
)
from protocol.kkt.fn import FnPhase, FnWarning
from protocol.kkt.state import ShiftStatus

START = datetime(2026, 3, 2, 9, 0, 0)
SHIPPED = {"healthy", "fn-expiring", "ofd-backlog", "long-shift", "paper-out", "fn-memory-full", "not-fiscal"}


def build(name: str) -> tuple[ManualClock, ScenarioRunner]:
    clock = ManualClock(START)
    scenario = load_scenario(name)
    return clock, ScenarioRunner(scenario, scenario.build(clock))


def test_all_shipped_scenarios_are_present_and_load() -> None:
    assert set(available_scenarios()) >= SHIPPED
    for name in available_scenarios():
        scenario = load_scenario(name)
        assert scenario.description, name
        model = scenario.build(ManualClock(START))
        assert model.now() == START


def test_load_by_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('format = 1\n[state]\nfn_valid_for = "5d"\n')
    scenario = load_scenario(path)
    assert scenario.name == "mine"
    assert scenario.build(ManualClock(START)).fn_valid_until == (START + timedelta(days=5)).date()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10d", 864000), ("-23h40m", -85200), ("+30s", 30), ("1.5h", 5400), ("1d2h3m4s", 93784)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_healthy_has_an_open_shift_and_an_empty_queue() -> None:
    _, runner = build("healthy")
    model = runner.model
    assert model.shift_status() is ShiftStatus.OPEN
    assert not model.ofd_queue
    assert model.warnings() == FnWarning(0)
    assert model.blocking_error() is None


def test_fn_expiring_raises_replace_soon_then_urgent_after_crossing_3_days() -> None:
    clock, runner = build("fn-expiring")
    model = runner.model
    assert FnWarning.REPLACE_SOON in model.warnings()
    assert FnWarning.URGENT_REPLACEMENT not in model.warnings()
    clock.advance(timedelta(days=6))  # 4 days left
    assert FnWarning.URGENT_REPLACEMENT not in model.warnings()
    clock.advance(timedelta(days=1))  # 3 days left
    assert FnWarning.URGENT_REPLACEMENT in model.warnings()


def test_long_shift_expires_after_20_sim_minutes_and_sales_are_refused_with_16h() -> None:
    clock, runner = build("long-shift")
    model = runner.model
    assert model.shift_opened_at == START - timedelta(hours=23, minutes=40)
    clock.advance(timedelta(minutes=19))
    runner.tick()
    assert model.shift_status() is ShiftStatus.OPEN
    clock.advance(timedelta(minutes=1))
    events = runner.tick()
    assert model.shift_status() is ShiftStatus.EXPIRED
    assert model.blocking_error() == 0x16
    assert any("0x16" in event for event in events)  # background sales are refused, logged, not raised


def test_ofd_backlog_crosses_the_30_day_rule_and_sales_are_refused_with_15h() -> None:
    clock, runner = build("ofd-backlog")
    model = runner.model
    status = model.exchange_status()
    assert status.unsent_count == 40  # the number the description and `unsent.count` state
    assert status.first_unsent_at == START - timedelta(days=20)
    assert not model.ofd_connected
    assert FnWarning.OFD_TIMEOUT not in model.warnings()
    clock.advance(timedelta(days=10, minutes=1))
    runner.tick()
    assert FnWarning.OFD_TIMEOUT in model.warnings()
    with pytest.raises(FiscalRefused) as refused:
        model.sell()
    assert refused.value.code == 0x15


@pytest.mark.parametrize("protocol", ["shtrih", "atol"])
def test_ofd_backlog_agent_reads_the_count_the_scenario_text_states(protocol: str) -> None:
    from agent.drivers.registry import open_session
    from firmware_sim.hosts import install_sim_url_handler

    install_sim_url_handler()
    scenario = load_scenario("ofd-backlog")
    stated = scenario.state["unsent"]["count"]
    assert f"{stated} unsent documents" in scenario.description
    with open_session(protocol, f"sim://{protocol}?scenario=ofd-backlog") as connection:
        assert connection.poll().ofd.unsent_count == stated


@pytest.mark.parametrize("protocol", ["shtrih", "atol"])
def test_scripted_action_faults_fail_the_agents_z_reports_as_the_scenario_says(protocol: str) -> None:
    """z-report-fails: the first remote Z-report is refused with this protocol's «нет бумаги», the
    second loses its answer mid-report (the register printed it), which the next poll shows."""
    from agent.drivers.actions import OutcomeKind
    from agent.drivers.registry import DeviceConnection
    from firmware_sim.devices import make_device
    from firmware_sim.hosts import install_sim_url_handler, register_sim
    from protocol.mqtt.actions import ActionName

    install_sim_url_handler()
    scenario = load_scenario("z-report-fails")
    no_paper = scenario.action_faults[0].refuse[protocol]
    # A registered device outlives the agent's reconnect (a sim://PROTOCOL?scenario= URL starts a
    # fresh register per open); it is armed the way kassa-sim and that URL arm theirs.
    device = make_device(protocol, scenario.build(lambda: datetime.now().replace(microsecond=0)))
    scenario.arm_action_faults(device.action_faults, protocol)  # type: ignore[attr-defined]
    name = f"zfail-{protocol}-{id(device)}"
    registration = register_sim(name, device)
    with contextlib.closing(registration), DeviceConnection(protocol, registration.address, timeout=0.2, retries=1) as connection:
        assert connection.poll().shift.status is ShiftStatus.EXPIRED
        refused = connection.perform(ActionName.CLOSE_SHIFT, START)
        assert (refused.kind, refused.code) == (OutcomeKind.REGISTER_ERROR, no_paper)
        assert refused.meaning in ("нет чековой ленты", "нет бумаги")  # Shtrih 6Bh, ATOL 103
        dropped = connection.perform(ActionName.CLOSE_SHIFT, START)
        assert dropped.kind is OutcomeKind.LINK_LOST
        deadline = datetime.now() + timedelta(seconds=10)
        while True:
            try:
                state = connection.poll()
                break
            except Exception:
                assert datetime.now() < deadline, "the register never came back"
        assert state.shift.status is ShiftStatus.CLOSED  # the dropped Z-report was carried out


def test_a_sim_url_with_the_scenario_arms_its_action_faults() -> None:
    from agent.drivers.actions import OutcomeKind
    from agent.drivers.registry import DeviceConnection
    from firmware_sim.hosts import install_sim_url_handler
    from protocol.mqtt.actions import ActionName

    install_sim_url_handler()
    with DeviceConnection("atol", "sim://atol?scenario=z-report-fails", timeout=0.2, retries=1) as connection:
        outcome = connection.perform(ActionName.CLOSE_SHIFT, START)
    assert (outcome.kind, outcome.code) == (OutcomeKind.REGISTER_ERROR, 103)


def test_ffd_version_from_the_scenario_is_what_the_agent_reads() -> None:
    from agent.drivers.shtrih import ShtrihSession
    from firmware_sim.shtrih import ShtrihDevice
    from tests.agent.shtrih_loopback import ShtrihLoopback

    model = parse_scenario('format = 1\n[state]\nffd_version = "1.05"\n').build(ManualClock(START))
    assert ShtrihSession(ShtrihLoopback(ShtrihDevice(model)), timeout=0.05).poll().ffd_version == "1.05"


def test_unsent_count_smaller_than_the_documents_the_open_shift_makes_is_refused() -> None:
    text = 'format = 1\n[state]\nunsent = { count = 2, oldest = "-2d" }\nshift_opened = "-1h"\nreceipts = 1\n'
    with pytest.raises(ScenarioError, match=r"state\.unsent\.count 2 must exceed the 2"):
        parse_scenario(text, name="tiny").build(ManualClock(START))


def test_paper_out_timeline_and_not_fiscal_and_memory_full() -> None:
    clock, runner = build("paper-out")
    assert runner.model.paper_present
    clock.advance(timedelta(seconds=29))
    assert runner.tick() == []
    clock.advance(timedelta(seconds=1))
    assert runner.tick() == ["paper out"]
    assert not runner.model.paper_present
    clock.advance(timedelta(minutes=10))
    runner.tick()
    assert runner.model.paper_present

    _, not_fiscal = build("not-fiscal")
    assert not_fiscal.model.fn_phase is FnPhase.READY_FOR_FISCALISATION
    assert not_fiscal.model.shift_status() is ShiftStatus.CLOSED
    assert not_fiscal.model.blocking_error() == 0x02

    _, full = build("fn-memory-full")
    assert full.model.documents_left == 0
    assert FnWarning.MEMORY_ALMOST_FULL in full.model.warnings()


def test_life_sells_and_the_ofd_drains_when_connected() -> None:
    scenario = parse_scenario(
        'format = 1\n[state]\nofd_connected = false\n[life]\nsell_every = "1m"\nofd_drain_every = "5m"\n'
        '[[at]]\nt = "+3m30s"\naction = "ofd_up"\n'
    )
    clock = ManualClock(START)
    runner = ScenarioRunner(scenario, scenario.build(clock))
    clock.advance(timedelta(minutes=3))
    runner.tick()
    model = runner.model
    assert model.shift_open  # the background cashier opened a shift first
    assert model.receipts_in_shift == 3
    assert len(model.ofd_queue) == 4  # shift open + 3 receipts, OFD still down
    clock.advance(timedelta(minutes=2))
    runner.tick()
    assert model.ofd_connected
    assert not model.ofd_queue


def test_timeline_actions_change_the_model() -> None:
    scenario = parse_scenario(
        "format = 1\n"
        '[[at]]\nt = "+1s"\naction = "open_shift"\n'
        '[[at]]\nt = "+2s"\naction = "sell"\ncount = 2\n'
        '[[at]]\nt = "+3s"\naction = "cover_open"\n'
        '[[at]]\nt = "+4s"\naction = "close_shift"\n'
        '[[at]]\nt = "+5s"\naction = "replace_fn"\nserial = "9999000000000001"\nvalid_for = "30d"\n'
        '[[at]]\nt = "+6s"\naction = "close_shift"\n'
    )
    clock = ManualClock(START)
    runner = ScenarioRunner(scenario, scenario.build(clock))
    clock.advance(timedelta(seconds=10))
    events = runner.tick()
    model = runner.model
    assert model.cover_open
    assert model.fn_serial == "9999000000000001"
    assert FnWarning.REPLACE_SOON in model.warnings()
    assert events[-1] == "at[5] close_shift: refused: shift not open"  # refused, reported, not raised


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("format = 2\n", "format"),
        ("format = 1\n[state]\nfn_valid_fro = \"1d\"\n", "state.fn_valid_fro"),
        ("format = 1\n[state]\nshift_opened = \"yesterday\"\n", "state.shift_opened"),
        ("format = 1\n[state]\nshift_opened = \"+1h\"\n", "state.shift_opened"),
        ("format = 1\n[state]\nunsent = { count = 3 }\n", "state.unsent"),
        ("format = 1\n[state]\npaper = \"no\"\n", "state.paper"),
        ("format = 1\n[state]\nfn_phase = \"banana\"\n", "state.fn_phase"),
        ("format = 1\n[state]\nffd_version = \"2.0\"\n", "state.ffd_version"),
        ("format = 1\n[[at]]\nt = \"+1s\"\naction = \"explode\"\n", "at[0].action"),
        ("format = 1\n[[at]]\naction = \"sell\"\n", "at[0]"),
        ("format = 1\n[[at]]\nt = \"+1s\"\naction = \"sell\"\ncount = 0\n", "at[0].count"),
        ("format = 1\n[[at]]\nt = \"+1s\"\naction = \"paper_out\"\ncount = 2\n", "at[0].count"),
        ("format = 1\n[life]\nsell_every = \"0s\"\n", "life.sell_every"),
        ("format = 1\n[life]\nopens = \"8am\"\ncloses = \"22:00\"\n", "life.opens"),
        ("format = 1\n[life]\nopens = \"08:00\"\n", "life.opens/life.closes"),
        ("format = 1\n[life]\nopens = \"22:00\"\ncloses = \"08:00\"\n", "life.opens/life.closes"),
        ("format = 1\nsurprise = true\n", "surprise"),
        ("format = 1\n[[action_faults]]\naction = \"explode\"\nrefuse = 1\n", "action_faults[0].action"),
        ("format = 1\n[[action_faults]]\naction = \"z_report\"\n", "action_faults[0]: give either"),
        ("format = 1\n[[action_faults]]\naction = \"z_report\"\nrefuse = 300\n", "action_faults[0].refuse"),
        ("format = 1\n[[action_faults]]\naction = \"z_report\"\nrefuse = { mercury = 1 }\n", "action_faults[0].refuse.mercury"),
        ("format = 1\n[[action_faults]]\naction = \"z_report\"\ndrop = \"0s\"\n", "action_faults[0].drop"),
        ("format = 1\n[[action_faults]]\naction = \"z_report\"\nrefuse = 1\nexecuted = false\n", "action_faults[0].executed"),
        ("format = 1\n[state\n", "line 2"),
    ],
)
def test_bad_scenarios_name_the_key_or_line(text: str, needle: str) -> None:
    with pytest.raises(ScenarioError, match=r"bad\.toml") as error:
        parse_scenario(text, source="bad.toml")
    assert needle in str(error.value)


def test_unknown_scenario_name_lists_the_shipped_ones() -> None:
    with pytest.raises(ScenarioError, match="long-shift"):
        load_scenario("no-such-scenario")


def test_scenario_the_register_refuses_is_a_clear_error() -> None:
    scenario = parse_scenario('format = 1\n[state]\nfn_valid_for = "-1d"\nshift_opened = "-1h"\n', name="dead-fn")
    with pytest.raises(ScenarioError, match="refuses"):
        scenario.build(ManualClock(START))


def test_shift_number_names_the_open_shift_or_the_last_closed_one() -> None:
    opened = parse_scenario('format = 1\n[state]\nshift_opened = "-1h"\nshift_number = 57\n').build(ManualClock(START))
    assert opened.shift_open and opened.shift_number == 57
    closed = parse_scenario("format = 1\n[state]\nshift_number = 57\n").build(ManualClock(START))
    assert not closed.shift_open and closed.shift_number == 57
    assert parse_scenario('format = 1\n[state]\nshift_opened = "-1h"\n').build(ManualClock(START)).shift_number == 1


def test_the_store_opens_and_closes_the_shift_daily_on_the_register_clock() -> None:
    """healthy on the demo's timetable (trading 08:00-22:00): in a sim week no shift outlives a day's
    trading (the first one was opened at 07:00, before the start), and no shift is open at night."""
    healthy = load_scenario("healthy")
    scenario = dataclasses.replace(healthy, life=dataclasses.replace(healthy.life, opens=time(8), closes=time(22)))
    clock = ManualClock(START)
    runner = ScenarioRunner(scenario, scenario.build(clock))
    model = runner.model
    longest = timedelta(0)
    closed_at_night = []
    for _ in range(7 * 24 * 6):  # a week in 10-minute steps
        clock.advance(timedelta(minutes=10))
        runner.tick()
        if model.shift_open and model.shift_opened_at is not None:
            longest = max(longest, clock() - model.shift_opened_at)
        if not 8 <= clock().hour < 22:
            closed_at_night.append(not model.shift_open)
    assert longest <= timedelta(hours=15) and closed_at_night and all(closed_at_night)
    expected = ShiftStatus.OPEN if 8 <= clock().hour < 22 else ShiftStatus.CLOSED
    assert model.shift_status() is expected
    assert sum("timetable close_shift" in event or "closed" in event for event in runner.events) >= 7


def test_a_shift_left_open_over_a_closing_time_is_closed_and_reopened_when_trading() -> None:
    clock = ManualClock(START)
    text = 'format = 1\n[state]\nshift_opened = "-20h"\n[life]\nopens = "08:00"\ncloses = "22:00"\n'
    scenario = parse_scenario(text)
    runner = ScenarioRunner(scenario, scenario.build(clock))
    first = runner.model.shift_number
    runner.tick()  # 09:00: opened yesterday 13:00, before last night's close
    assert runner.model.shift_open and runner.model.shift_number == first + 1
    assert runner.model.shift_opened_at == START
