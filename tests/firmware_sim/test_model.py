"""The simulated register derives its ФН flags and blocking errors from its clock, as the rules say."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from firmware_sim.model import FiscalRefused, ReceiptState, RegisterModel
from protocol.kkt.fn import FnPhase, FnWarning
from protocol.kkt.state import ShiftStatus

START = datetime(2026, 11, 28, 9, 0)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_shift_expires_after_24_hours_and_refuses_receipts_with_16h(clock: Clock) -> None:
    model = RegisterModel(clock=clock)
    model.open_shift(at=START - timedelta(hours=23, minutes=40))
    model.sell()
    assert model.shift_status() is ShiftStatus.OPEN
    clock.now += timedelta(minutes=20)
    assert model.shift_status() is ShiftStatus.EXPIRED
    with pytest.raises(FiscalRefused) as refused:
        model.sell()
    assert refused.value.code == 0x16
    model.close_shift()  # the Z-report is always allowed: it is how the cashier clears 16h
    assert model.shift_status() is ShiftStatus.CLOSED
    model.open_shift()
    assert model.sell().number == model.last_fd_number


def test_thirty_day_rule_blocks_and_ofd_delivery_unblocks(clock: Clock) -> None:
    model = RegisterModel(clock=clock, ofd_connected=False)
    model.backdate_unsent(40, START - timedelta(days=20))
    assert model.warnings() == FnWarning(0)
    clock.now += timedelta(days=3, minutes=1)
    assert FnWarning.OFD_TIMEOUT in model.warnings()
    clock.now += timedelta(days=7)
    model_status = model.exchange_status()
    assert model_status.unsent_count == 40
    assert model_status.first_unsent_at == START - timedelta(days=20)
    assert model.blocking_error() == 0x15
    with pytest.raises(FiscalRefused):
        model.open_shift()
    assert model.shift_number == 0  # a refused shift open leaves no trace
    assert model.deliver_to_ofd() == 0  # transport down: nothing moves
    model.ofd_connected = True
    assert model.deliver_to_ofd() == 40
    assert model.blocking_error() is None
    assert model.exchange_status().first_unsent_number == 0


def test_validity_flags_follow_the_calendar(clock: Clock) -> None:
    model = RegisterModel(clock=clock, fn_valid_until=START.date() + timedelta(days=31))
    assert model.warnings() == FnWarning(0)
    clock.now += timedelta(days=1)
    assert model.warnings() == FnWarning.REPLACE_SOON
    clock.now += timedelta(days=27)
    assert model.warnings() == FnWarning.REPLACE_SOON | FnWarning.URGENT_REPLACEMENT
    clock.now += timedelta(days=4)
    assert model.blocking_error() == 0x05


def test_memory_and_phase_refusals(clock: Clock) -> None:
    model = RegisterModel(clock=clock, documents_left=1)
    model.open_shift()
    assert FnWarning.MEMORY_ALMOST_FULL in model.warnings()
    assert model.blocking_error() == 0x06
    not_fiscal = RegisterModel(clock=clock, fn_phase=FnPhase.READY_FOR_FISCALISATION)
    assert not_fiscal.blocking_error() == 0x02


def test_receipt_sequence_and_document_lookup(clock: Clock) -> None:
    model = RegisterModel(clock=clock)
    with pytest.raises(ReceiptState):
        model.open_receipt()
    opened = model.open_shift()
    model.open_receipt()
    model.add_item(12_345)
    receipt = model.close_receipt()
    assert model.receipts_in_shift == 1
    found = model.find_document(opened.number)
    assert found is not None and found.document_type == 2 and found.shift_number == 1
    assert model.find_document(receipt.number + 1) is None
    model.replace_fn("9999078900099999", date(2028, 6, 30))
    assert model.fn_status().fn_serial == "9999078900099999"
    assert model.exchange_status().unsent_count == 0
