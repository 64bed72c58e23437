"""The OFD diagnosis fields both drivers read from the simulated register, per shipped scenario,
and the slow reads (table 19, FF09 / tag 1002) made once per 10 minutes or per new shift/ФН."""

from __future__ import annotations

import importlib.util
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from agent.drivers.atol import AtolSession
from agent.drivers.shtrih import ShtrihSession
from agent.drivers.slow_reads import SlowRead
from firmware_sim.atol import AtolDevice
from firmware_sim.model import RegisterModel
from firmware_sim.scenario import load_scenario
from firmware_sim.shtrih import ShtrihDevice
from protocol.kkt.atol.messages import ReadDeviceSetting
from protocol.kkt.errors import DecodeError
from protocol.kkt.fn_fiscalisation import AUTONOMOUS_MODE_TAG, FnFiscalisation, WorkMode
from protocol.kkt.shtrih import messages as msg
from protocol.mqtt.wire import OfdState

NOW = datetime(2026, 11, 27, 12, 0, 0)


def _load(name: str) -> ModuleType:
    """pytest runs with --import-mode=importlib: the loopback helpers next to this file by path."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


shtrih_loopback = _load("shtrih_loopback")
atol_tests = _load("test_atol_session")


def model_for(scenario: str) -> RegisterModel:
    return load_scenario(scenario).build(lambda: NOW)


def shtrih_poll(model: RegisterModel) -> OfdState:
    return ShtrihSession(shtrih_loopback.ShtrihLoopback(ShtrihDevice(model)), timeout=0.05).poll().ofd


def atol_poll(model: RegisterModel) -> OfdState:
    return AtolSession(atol_tests.AtolLoopback(AtolDevice(model)), timeout=0.02, retries=2).poll().ofd


# scenario → (transport, message waiting, awaiting receipt, response timeout, autonomous)
EXPECTED = {
    "healthy": (True, False, False, False, False),
    "no-internet": (False, True, False, False, False),
    "wrong-ofd-host": (False, True, False, False, False),
    "ofd-not-acking": (True, True, True, True, False),
    "autonomous": (False, False, False, False, True),
}


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_shtrih_reads_exchange_bits_mode_and_server(scenario: str) -> None:
    model = model_for(scenario)
    ofd = shtrih_poll(model)
    got = (ofd.transport_connected, ofd.message_waiting, ofd.awaiting_receipt, ofd.response_timeout, ofd.autonomous)
    assert got == EXPECTED[scenario]
    assert (ofd.server_host, ofd.server_port) == (model.ofd_host, model.ofd_port)  # table 19
    assert ofd.link_check is None  # the agent's own test is not the driver's business


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_atol_reads_exchange_bits_mode_and_server(scenario: str) -> None:
    model = model_for(scenario)
    ofd = atol_poll(model)
    got = (ofd.transport_connected, ofd.message_waiting, ofd.awaiting_receipt, ofd.response_timeout, ofd.autonomous)
    assert got == EXPECTED[scenario]
    assert (ofd.server_host, ofd.server_port) == (model.ofd_host, model.ofd_port)  # settings 273/274


def test_wrong_host_scenario_names_an_unresolvable_server() -> None:
    assert shtrih_poll(model_for("wrong-ofd-host")).server_host == "ofd.kassa-monitor.invalid"
    assert atol_poll(model_for("wrong-ofd-host")).server_host == "ofd.kassa-monitor.invalid"


@pytest.mark.parametrize("poll", [shtrih_poll, atol_poll], ids=["shtrih", "atol"])
def test_exchange_bits_3_to_5_reach_the_state(poll: Any) -> None:
    """FF39h / A4 20h b3–b5: a command from the OFD, its settings changed, an answer awaited."""
    model = model_for("no-internet")
    assert (poll(model).settings_changed, poll(model).ofd_command_pending) == (False, False)
    model.ofd_settings_changed = True
    ofd = poll(model)
    assert (ofd.ofd_command_pending, ofd.settings_changed, ofd.awaiting_command_answer) == (False, True, False)


def test_atol_register_refusing_the_setting_read_leaves_the_server_unknown() -> None:
    """Firmware without 46h (or another layout) answers an error: unknown, and no error on the page."""
    device = AtolDevice(model_for("healthy"))
    del device._handlers[ReadDeviceSetting]  # this register does not know the command
    state = AtolSession(atol_tests.AtolLoopback(device), timeout=0.02, retries=2).poll()
    assert (state.ofd.server_host, state.ofd.server_port) == (None, None)
    assert state.device.last_error is None


def _count_commands(device: Any) -> dict[int, int]:
    """Wrap the simulated Shtrih device's dispatcher to count the commands it executes."""
    counts: dict[int, int] = {}
    execute = device.execute

    def counting(payload: bytes) -> bytes:
        code = msg.command_code(payload)
        if code == msg.READ_TABLE.code:
            code = (code << 8) | payload[5]  # 1Fh by table number: 17 (ФФД) vs 19 (OFD server)
        counts[code] = counts.get(code, 0) + 1
        return bytes(execute(payload))

    device.execute = counting
    return counts


def test_shtrih_slow_reads_happen_once_and_again_after_a_shift_change() -> None:
    model = model_for("healthy")
    device = ShtrihDevice(model)
    counts = _count_commands(device)
    session = ShtrihSession(shtrih_loopback.ShtrihLoopback(device), timeout=0.05)
    for _ in range(3):
        session.poll()
    table_19 = (msg.READ_TABLE.code << 8) | 19
    assert counts[msg.FN_FISCALISATION.code] == 1
    assert counts[table_19] == 2  # host and port, once
    assert counts[msg.FULL_STATUS.code] == 3
    model.close_shift()
    model.open_shift()
    session.poll()
    assert counts[msg.FN_FISCALISATION.code] == 2
    assert counts[table_19] == 4


def test_slow_read_is_due_after_its_interval_or_a_new_context() -> None:
    now = [0.0]
    reads: list[int] = []
    slow: SlowRead[int] = SlowRead(interval=600, clock=lambda: now[0])

    def read() -> int:
        reads.append(1)
        return len(reads)

    assert slow.get("fn-1", read) == 1
    now[0] = 599
    assert slow.get("fn-1", read) == 1
    now[0] = 600
    assert slow.get("fn-1", read) == 2
    assert slow.get("fn-2", read) == 3
    slow.forget()
    assert slow.get("fn-2", read) == 4


def test_fiscalisation_codec_round_trip_and_autonomous_bit() -> None:
    value = FnFiscalisation(NOW, "7701234567", "0000000001012345", 1, WorkMode.AUTONOMOUS | WorkMode.ENCRYPTION, 1, 77)
    data = value.encode()
    assert len(data) == FnFiscalisation.SIZE == 47
    assert data[38] == 0x03  # work mode after date(5) INN(12) RNM(20) tax(1)
    decoded = FnFiscalisation.decode(data + b"\x00\x01")  # newer ФН append bytes: ignored
    assert decoded == value and decoded.autonomous
    assert not FnFiscalisation.decode(data[:38] + b"\x01" + data[39:]).autonomous  # encryption only


def test_fiscalisation_answer_too_short_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="47 bytes"):
        FnFiscalisation.decode(bytes(46))


def test_table_text_field_round_trip() -> None:
    value = msg.TableValue.of_text("ofd.taxcom.ru", msg.OFD_HOST_WIDTH)
    assert len(value.value) == msg.OFD_HOST_WIDTH
    assert value.as_text() == "ofd.taxcom.ru"
    assert AUTONOMOUS_MODE_TAG == 1002
