"""ShtrihSession against the simulated register, in-process over an in-memory ByteLink."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from agent.drivers.errors import ChecksumError, DeviceRefused, NoAnswer, ProtocolViolation
from agent.drivers.shtrih import ShtrihSession
from firmware_sim.model import FiscalRefused, RegisterModel
from firmware_sim.shtrih import ShtrihDevice
from protocol.kkt.fn import FN_ERROR_OFD_WAIT_EXHAUSTED, FnWarning
from protocol.kkt.shtrih import messages as msg
from protocol.kkt.state import ShiftStatus, Vendor

# pytest runs with --import-mode=importlib, so the helper next to this file is loaded by path.
_spec = importlib.util.spec_from_file_location(
    "shtrih_loopback", Path(__file__).with_name("shtrih_loopback.py")
)
assert _spec and _spec.loader
loopback = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(loopback)

NOW = datetime(2026, 11, 27, 12, 0, 0)
SHORT = 0.05


def known_model() -> RegisterModel:
    """Shift opened 23 h ago with two sales, a 3-day OFD backlog and a ФН 20 days from expiry."""
    model = RegisterModel(clock=lambda: NOW, fn_valid_until=(NOW + timedelta(days=20)).date())
    model.backdate_unsent(5, NOW - timedelta(days=3))
    model.open_shift(at=NOW - timedelta(hours=23))
    model.sell()
    model.sell()
    return model


def session(
    device: ShtrihDevice, mangle: Callable[[bytes], bytes] | None = None, retries: int = 3
) -> ShtrihSession:
    return ShtrihSession(loopback.ShtrihLoopback(device, mangle), timeout=SHORT, retries=retries)


@pytest.mark.parametrize("tcp", [False, True], ids=["serial", "tcp-stray-ff"])
def test_poll_fills_every_field_from_the_simulator(tcp: bool) -> None:
    model = known_model()
    link = loopback.ShtrihLoopback(ShtrihDevice(model, tcp=tcp, model_id=7))
    state = ShtrihSession(link, timeout=SHORT).poll()
    assert (b"\xff\x15" in link.delivered) is tcp  # the stray FF reached the host and was skipped

    assert (state.vendor, state.protocol, state.model, state.model_id) == (
        Vendor.SHTRIH,
        "shtrih",
        "Симулятор ККТ",
        7,
    )
    assert (state.serial, state.rnm, state.inn) == ("0012345678901234", "0000000001012345", "7701234567")
    assert state.firmware == "1.0 build 1"
    assert state.ffd_version == "1.2"  # 1Fh table 17, row 1, field 17 (the simulator's default)
    assert state.register_clock == NOW and state.read_at is None
    assert state.last_fd_number == 8

    assert state.shift.status is ShiftStatus.OPEN
    assert (state.shift.number, state.shift.receipts) == (1, 2)
    assert state.shift.opened_at == NOW - timedelta(hours=23)  # found by walking back with FF0A
    assert state.shift_age() == timedelta(hours=23)

    fn = state.fn
    assert (fn.serial, fn.phase, fn.phase_name, fn.fiscal) == (
        "9999078900012345",
        3,
        "фискальный режим",
        True,
    )
    assert fn.valid_until == date(2026, 12, 17)
    assert (fn.registrations_left, fn.registrations_done) == (11, 1)
    assert (fn.documents_left, fn.free_memory_kb) == (250_000 - 3, 2048)
    assert fn.warning_flags == FnWarning.REPLACE_SOON and fn.warnings == ["REPLACE_SOON"]
    assert fn.firmware == "fn-1.1-sim"

    assert (state.ofd.unsent_count, state.ofd.first_unsent_number) == (8, 1)
    assert state.ofd.first_unsent_at == NOW - timedelta(days=3)
    assert state.ofd.transport_connected is True
    assert state.oldest_unsent_age() == timedelta(days=3)

    assert (state.device.paper_present, state.device.cover_open) == (True, False)
    assert (state.device.mode, state.device.submode, state.device.last_error) == (2, 0, None)


def test_poll_reports_expired_shift_paper_out_cover_and_empty_queue() -> None:
    model = known_model()
    model.deliver_to_ofd()
    model.paper_present, model.cover_open = False, True
    model.clock = lambda: NOW + timedelta(hours=2)
    state = session(ShtrihDevice(model)).poll()
    assert state.shift.status is ShiftStatus.EXPIRED and state.device.mode == 3
    assert (state.device.paper_present, state.device.cover_open, state.device.submode) == (False, True, 1)
    assert (state.ofd.unsent_count, state.ofd.first_unsent_number, state.ofd.first_unsent_at) == (
        0,
        None,
        None,
    )


def test_open_receipt_mode_still_yields_the_shift_from_the_fn() -> None:
    model = known_model()
    model.open_receipt(0)
    state = session(ShtrihDevice(model)).poll()
    assert state.device.mode == 8
    assert state.shift.status is ShiftStatus.OPEN and state.shift.opened_at == NOW - timedelta(hours=23)


def test_closed_shift_has_no_open_time_and_the_walk_back_is_bounded() -> None:
    model = RegisterModel(clock=lambda: NOW)
    model.open_shift(at=NOW - timedelta(hours=5))
    for _ in range(70):  # more receipts than the walk-back budget
        model.sell()
    device = ShtrihDevice(model)
    link = loopback.ShtrihLoopback(device)
    driver = ShtrihSession(link, timeout=SHORT)
    state = driver.poll()
    assert state.shift.status is ShiftStatus.OPEN and state.shift.opened_at is None  # honest: not found
    writes_first = link.writes
    driver.poll()
    assert link.writes - writes_first < writes_first / 3  # the negative result is cached per (ФН, shift)
    model.close_shift()
    closed = driver.poll()
    assert closed.shift.status is ShiftStatus.CLOSED and closed.shift.opened_at is None


def test_identify_returns_the_model_name() -> None:
    assert session(ShtrihDevice(known_model())).identify() == "Симулятор ККТ"


def test_a_corrupted_answer_is_retried_and_succeeds() -> None:
    corrupt_once = loopback.CorruptFrames(1)
    assert session(ShtrihDevice(known_model()), corrupt_once).identify() == "Симулятор ККТ"
    assert corrupt_once.left == 0


def test_always_corrupted_answers_raise_checksum_error() -> None:
    with pytest.raises(ChecksumError) as error:
        session(ShtrihDevice(known_model()), loopback.CorruptFrames(None)).identify()
    assert "check the cable" in str(error.value)


def test_silent_device_raises_no_answer_quickly() -> None:
    started = time.monotonic()
    with pytest.raises(NoAnswer) as error:
        session(ShtrihDevice(known_model()), loopback.silent).poll()
    assert time.monotonic() - started < 1.0
    assert error.value.hint == "check the cable/port and baud rate"


def test_a_device_speaking_another_protocol_is_a_protocol_violation() -> None:
    def other_protocol(_: bytes) -> bytes:
        return b"\xfe\x81\x80\x55"

    with pytest.raises(ProtocolViolation):
        session(ShtrihDevice(known_model()), other_protocol, retries=1).identify()


def test_refused_command_raises_device_refused_with_the_russian_meaning() -> None:
    driver = session(ShtrihDevice(known_model()))
    with pytest.raises(DeviceRefused) as refused:
        driver.request(msg.FN_STATUS, msg.PasswordRequest(1))
    assert (refused.value.code, refused.value.meaning) == (0x4F, "неверный пароль")


def test_unsupported_commands_leave_fields_unknown() -> None:
    class OldFirmware(ShtrihDevice):
        def execute(self, payload: bytes) -> bytes:
            if payload[:1] in (b"\x11", b"\x0f") or payload[:2] == b"\xff\x63":
                return payload[: 2 if payload[0] == 0xFF else 1] + b"\x37"
            return super().execute(payload)

    state = session(OldFirmware(known_model())).poll()
    assert state.register_clock is None and state.inn is None and state.rnm is None
    assert state.fn.documents_left is None and state.device.last_error is None
    assert state.device.mode == 2 and state.device.paper_present is True  # from 10h instead of 11h
    assert state.serial is None and state.fn.serial == "9999078900012345"


def test_other_refusals_are_reported_in_last_error() -> None:
    driver = ShtrihSession(
        loopback.ShtrihLoopback(ShtrihDevice(known_model())), timeout=SHORT, password=29
    )  # not the sysadmin password: every FFxx read is refused
    state = driver.poll()
    assert state.fn.serial is None and state.shift.number is None
    assert state.device.last_error == "ФН status: неверный пароль"
    assert state.register_clock == NOW  # KKT commands accept 29
    assert state.device.fn_errors == []  # 4Fh is the KKT's own refusal, not a ФН result code


def test_a_fn_refusal_is_reported_by_its_result_code() -> None:
    device = ShtrihDevice(known_model())
    device._handlers[msg.OFD_EXCHANGE.code] = lambda _: (_ for _ in ()).throw(FiscalRefused(FN_ERROR_OFD_WAIT_EXHAUSTED))
    state = ShtrihSession(loopback.ShtrihLoopback(device), timeout=SHORT).poll()
    assert state.device.fn_errors == [FN_ERROR_OFD_WAIT_EXHAUSTED]  # FF39 answered 15h
    assert state.ofd.first_unsent_at is None and state.fn.serial is not None  # the rest was read


def test_identify_gives_up_on_silence_after_one_retry() -> None:
    link = loopback.ShtrihLoopback(ShtrihDevice(known_model()), loopback.silent)
    with pytest.raises(NoAnswer):
        ShtrihSession(link, timeout=SHORT, retries=5).identify()
    assert link.written == b"\x05\x05"  # ENQ, one retry, nothing more


def test_the_session_drives_state_changing_commands() -> None:
    model = RegisterModel(clock=lambda: NOW)
    driver = session(ShtrihDevice(model))
    driver.request(msg.OPEN_SHIFT, msg.PasswordRequest(msg.CASHIER_PASSWORD))
    driver.request(msg.OPEN_RECEIPT, msg.OpenReceiptRequest(0))
    driver.request(msg.SALE, msg.SaleRequest(quantity=1000, price=9_990, text="Молоко"))
    assert driver.request(msg.CLOSE_RECEIPT, msg.CloseReceiptRequest(cash=10_000)).change == 10
    state = driver.poll()
    assert (state.shift.receipts, state.last_fd_number, state.shift.opened_at) == (1, 2, NOW)
    driver.request(msg.Z_REPORT, msg.PasswordRequest(msg.ADMIN_PASSWORD))
    assert driver.poll().shift.status is ShiftStatus.CLOSED
