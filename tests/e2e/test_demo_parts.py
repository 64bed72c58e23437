"""The demo's pieces without running it: the fleet data, the registers and agent settings it
derives, the offline agent's files, and the embedded broker (start, traffic, stop)."""

from __future__ import annotations

import sys
import threading
import tomllib
from datetime import datetime, timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # `demo` is a top-level directory of the repo, not an installed package
    sys.path.insert(0, str(REPO))

from agent.config import validate  # noqa: E402
from demo.agents import agent_settings, demo_scenario, scenario_file, write_agent_toml  # noqa: E402
from demo.broker import EmbeddedBroker, SnapshotDict, external_broker_url  # noqa: E402
from demo.fleet import (  # noqa: E402
    HEALTHY,
    MAX_REGISTERS,
    PROBLEMS,
    VARIATIONS,
    build_fleet,
)
from firmware_sim.clock import ManualClock  # noqa: E402
from firmware_sim.scenario import load_scenario  # noqa: E402
from protocol.mqtt.topics import is_valid_id  # noqa: E402

START = datetime(2026, 3, 2, 9, 0, 0)


@pytest.mark.parametrize("count", [1, 12, 48, MAX_REGISTERS])
def test_fleet_ids_are_unique_and_fit_the_mqtt_contract(count: int) -> None:
    fleet = build_fleet(count)
    registers = fleet.registers
    assert len(registers) == count
    for attribute in ("register_id", "agent_id", "serial", "fn_serial", "rnm"):
        values = [getattr(r, attribute) for r in registers]
        assert len(set(values)) == count, attribute
    assert all(is_valid_id(r.agent_id) and is_valid_id(r.register_id) for r in registers)
    assert len(fleet.stores) == 24 and len({s.brand for s in fleet.stores}) == 2
    assert len({s.city for s in fleet.stores}) == 4


def test_fleet_range_is_checked() -> None:
    with pytest.raises(ValueError, match="between"):
        build_fleet(0)
    with pytest.raises(ValueError, match="between"):
        build_fleet(MAX_REGISTERS + 1)


def test_a_small_fleet_has_every_problem_both_protocols_and_healthy_registers() -> None:
    fleet = build_fleet(12)
    assert [r.profile for r in fleet.registers[: len(PROBLEMS)]] == list(PROBLEMS)
    assert fleet.expected_rules() >= {
        "ofd_backlog", "shift_too_long", "fn_validity", "ofd_contract", "agent_offline", "paper_out",
        "fn_memory", "fn_not_fiscal",
    }
    assert {r.protocol for r in fleet.registers} == {"shtrih", "atol"}
    assert any(r.profile is HEALTHY for r in fleet.registers)
    # the first problems land in different cities, so every city manager sees trouble
    assert len({r.store.city for r in fleet.registers[:4]}) == 4


def test_larger_fleets_get_milder_variations_too() -> None:
    profiles = {r.profile.name for r in build_fleet(48).registers}
    assert {v.name for v in VARIATIONS} <= profiles


@pytest.mark.parametrize("profile", [*PROBLEMS, *VARIATIONS, HEALTHY], ids=lambda p: p.name)
def test_every_profile_builds_a_register_with_its_own_identity(profile: object) -> None:
    register = next(r for r in build_fleet(MAX_REGISTERS).registers if r.profile is profile)
    scenario = demo_scenario(register)
    model = scenario.build(ManualClock(START))
    assert (model.serial, model.fn_serial, model.rnm) == (register.serial, register.fn_serial, register.rnm)
    assert not {a.action for a in scenario.timeline} & set(register.profile.drop_actions)


def test_profile_tweaks_reach_the_model() -> None:
    by_name = {r.profile.name: r for r in build_fleet(MAX_REGISTERS).registers}
    expiring = demo_scenario(by_name["fn-expiring-2d"]).build(ManualClock(START))
    assert expiring.fn_valid_until == (START + timedelta(days=2)).date()
    paper = demo_scenario(by_name["paper-out"])
    assert "paper_in" in {a.action for a in load_scenario("paper-out").timeline}
    assert "paper_in" not in {a.action for a in paper.timeline}  # out of paper for good


def test_contracts_cover_paid_expired_soon_and_missing() -> None:
    today = START.date()
    by_name = {r.profile.name: r for r in build_fleet(12).registers}
    assert by_name["ofd-unpaid"].contract(today) == (True, today - timedelta(days=12))
    assert by_name["ofd-paid-5d"].contract(today) == (True, today + timedelta(days=5))
    assert by_name["ofd-never-activated"].contract(today) == (False, today + timedelta(days=300))
    assert by_name["not-fiscal"].contract(today) is None


def test_offline_agent_files_round_trip(tmp_path: Path) -> None:
    register = next(r for r in build_fleet(12).registers if r.profile.agent_offline)
    scenario_path = scenario_file(register, tmp_path)
    loaded = load_scenario(scenario_path)
    assert loaded.state["serial"] == register.serial and loaded.state["inn"] == register.scenario_state()["inn"]
    assert loaded.life == load_scenario(register.profile.scenario).life
    url = f"sim://{register.protocol}?scenario={scenario_path}&speed=60"
    settings = agent_settings(register, url, "mqtt://127.0.0.1:1883", tmp_path / "outbox.sqlite")
    write_agent_toml(settings, tmp_path / "agent.toml")
    from_file = validate(tomllib.loads((tmp_path / "agent.toml").read_text(encoding="utf-8")))
    assert from_file == validate(settings)
    assert from_file.devices[0].register_id == register.register_id


def test_external_broker_url_comes_from_the_environment() -> None:
    assert external_broker_url({"KASSA_MQTT_URL": " mqtt://broker:1883 "}) == "mqtt://broker:1883"
    assert external_broker_url({"KASSA_MQTT_URL": ""}) is None
    assert external_broker_url({}) is None


def test_snapshot_dict_survives_changes_while_iterating() -> None:
    table = SnapshotDict(a=1, b=2)
    for key in table:
        table[key + "x"] = 0  # a plain dict raises "dictionary changed size during iteration"
    for key, _ in table.items():
        del table[key]
    assert table == {}


def test_embedded_broker_carries_retained_messages_and_stops() -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    broker = EmbeddedBroker()
    url = broker.start()
    try:
        assert url == f"mqtt://127.0.0.1:{broker.port}"
        got = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="demo-parts-test")
        client.on_message = lambda _c, _u, message: got.set() if message.retain else None
        client.connect("127.0.0.1", broker.port or 0)
        client.loop_start()
        client.publish("kassa/v1/a1/status", b"online", qos=1, retain=True).wait_for_publish(5)
        client.subscribe("kassa/v1/+/status", qos=1)  # after the publish: only retained delivery
        assert got.wait(5)
        client.disconnect()
        client.loop_stop()
    finally:
        broker.stop()
    with pytest.raises(OSError):
        import socket

        socket.create_connection(("127.0.0.1", broker.port or 0), timeout=1).close()


def test_the_web_port_comes_from_the_flag_else_demo_port_else_8080(monkeypatch: pytest.MonkeyPatch) -> None:
    from demo.__main__ import parse_args

    monkeypatch.delenv("DEMO_PORT", raising=False)
    assert parse_args([]).port == 8080
    monkeypatch.setenv("DEMO_PORT", "8090")
    assert parse_args([]).port == 8090
    assert parse_args(["--port", "8095"]).port == 8095  # the flag wins
    monkeypatch.setenv("DEMO_PORT", "eighty")
    with pytest.raises(SystemExit):
        parse_args([])
