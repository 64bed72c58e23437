"""``ShtrihAltSession``: the Shtrih-M alternative link (specs §1.3) against the simulator, in-process."""

from __future__ import annotations

import importlib.util
from datetime import date, datetime
from pathlib import Path

import pytest
from msgspec.structs import replace

from agent.drivers.errors import NoAnswer
from agent.drivers.shtrih import ShtrihAltSession, ShtrihSession
from firmware_sim.model import RegisterModel
from firmware_sim.shtrih import ShtrihAltLinkDevice, ShtrihDevice
from protocol.kkt.shtrih import messages as msg
from protocol.kkt.shtrih.altlink import encode_alt_frame

_spec = importlib.util.spec_from_file_location("shtrih_loopback", Path(__file__).with_name("shtrih_loopback.py"))
assert _spec and _spec.loader
loopback = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(loopback)

SHORT = 0.05
NOW = datetime(2026, 11, 27, 12, 0, 0)


def model() -> RegisterModel:
    m = RegisterModel(clock=lambda: NOW, fn_valid_until=date(2027, 6, 1))
    m.open_shift()
    m.sell()
    return m


def alt_session(device: ShtrihDevice, mangle: loopback.Mangle | None = None) -> ShtrihAltSession:
    return ShtrihAltSession(loopback.ShtrihLoopback(device, mangle), timeout=SHORT, retries=3)


def test_alt_link_poll_reads_what_the_standard_link_reads() -> None:
    shared = model()
    standard = ShtrihSession(loopback.ShtrihLoopback(ShtrihDevice(shared)), timeout=SHORT).poll()
    alt = alt_session(ShtrihAltLinkDevice(shared)).poll()
    assert alt.protocol == "shtrih-alt"
    assert replace(alt, protocol="shtrih") == standard


def test_auto_framing_device_follows_the_first_byte() -> None:
    device = ShtrihDevice(model())  # link="auto"
    assert alt_session(device).identify() == "Симулятор ККТ"
    assert device.framing == "alt"
    device.reset()  # power cycle: the next first byte decides again
    assert ShtrihSession(loopback.ShtrihLoopback(device), timeout=SHORT).identify() == "Симулятор ККТ"
    assert device.framing == "standard"


def test_alt_only_device_ignores_the_standard_link() -> None:
    with pytest.raises(NoAnswer):
        ShtrihSession(loopback.ShtrihLoopback(ShtrihAltLinkDevice(model())), timeout=SHORT, retries=0).identify()


def test_session_resynchronises_with_a_device_that_numbers_on() -> None:
    """A device that answered frame 41 last (another client, before our start) runs our request as 42."""
    device = ShtrihAltLinkDevice(model())
    device.feed(encode_alt_frame(41, msg.DEVICE_TYPE.encode_request(msg.NoParams())))
    session = alt_session(device)
    assert session.identify() == "Симулятор ККТ"
    assert session.request(msg.FN_NUMBER, msg.PasswordRequest(msg.SYSADMIN_PASSWORD)).serial


def test_a_damaged_answer_is_asked_for_again_without_running_twice() -> None:
    shared = model()
    device = ShtrihAltLinkDevice(shared)
    session = alt_session(device, loopback.CorruptFrames(1))
    before = shared.last_fd_number
    session.request(msg.Z_REPORT, msg.PasswordRequest(msg.SYSADMIN_PASSWORD))
    assert shared.last_fd_number == before + 1  # one shift-close document, though the answer came twice
