"""ФН data layouts: spec examples, round-trips and tolerant readings of the [C] variants."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.kkt.errors import DecodeError, EncodeError
from protocol.kkt.fn import (
    FnDocument,
    FnExchangeStatus,
    FnFirmware,
    FnResource,
    FnShiftParams,
    FnStatus,
    FnValidity,
    FnWarning,
    OfdExchangeFlag,
    decode_datetime5,
    decode_unconfirmed_count,
    encode_datetime5,
    fn_error_meaning,
    warning_names,
)

# FF01 answer data from specs/kkt-protocols.md §1.2 (after CMD FF 01 and ERR 00).
SPEC_FF01_DATA = bytes.fromhex("03 00 00 01 00 18 05 11 09 1E 39393939303738393030303132333435 D2040000")

minutes = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2255, 12, 31)).map(
    lambda d: d.replace(second=0, microsecond=0)
)
days = st.dates(min_value=date(2000, 1, 1), max_value=date(2255, 12, 31))
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
serials = st.text(alphabet="0123456789", min_size=1, max_size=16)


def test_spec_ff01_answer_decodes_to_the_documented_values() -> None:
    status = FnStatus.decode(SPEC_FF01_DATA)
    assert status.phase == 3
    assert status.current_document == 0
    assert status.document_data is False
    assert status.shift_open is True
    assert status.warnings == FnWarning(0)
    assert status.last_document_at == datetime(2024, 5, 17, 9, 30)
    assert status.fn_serial == "9999078900012345"
    assert status.last_fd_number == 1234
    assert status.encode() == SPEC_FF01_DATA


def test_datetime5_example_from_the_fn_document() -> None:
    # "20.07.2015 18:33 = 0F 07 14 12 21"
    assert decode_datetime5(bytes.fromhex("0F 07 14 12 21")) == datetime(2015, 7, 20, 18, 33)
    assert encode_datetime5(datetime(2015, 7, 20, 18, 33)) == bytes.fromhex("0F 07 14 12 21")
    assert decode_datetime5(bytes(5)) is None


def test_impossible_dates_raise_decode_errors() -> None:
    with pytest.raises(DecodeError, match="invalid ФН date-time"):
        decode_datetime5(bytes((24, 13, 1, 0, 0)))
    with pytest.raises(DecodeError, match="need at least 30 bytes"):
        FnStatus.decode(SPEC_FF01_DATA[:-1])
    with pytest.raises(EncodeError):
        encode_datetime5(datetime(1999, 12, 31))


@given(
    phase=st.sampled_from([0, 1, 3, 7, 15]),
    doc=st.integers(0, 255),
    shift_open=st.booleans(),
    warnings=st.integers(0, 255),
    at=st.none() | minutes,
    serial=serials,
    last_fd=u32,
)
def test_status_round_trip(
    phase: int, doc: int, shift_open: bool, warnings: int, at: datetime | None, serial: str, last_fd: int
) -> None:
    status = FnStatus(phase, doc, False, shift_open, FnWarning(warnings), at, serial, last_fd)
    assert FnStatus.decode(status.encode()) == status


@given(flags=st.integers(0, 0x3F), count=u16, first=u32, at=st.none() | minutes)
def test_exchange_round_trip(flags: int, count: int, first: int, at: datetime | None) -> None:
    exchange = FnExchangeStatus(OfdExchangeFlag(flags), False, count, first, at)
    decoded = FnExchangeStatus.decode(exchange.encode())
    assert decoded == exchange
    assert decoded.transport_connected is bool(flags & 1)


@given(open_=st.booleans(), number=u16, receipts=u16)
def test_shift_round_trip(open_: bool, number: int, receipts: int) -> None:
    params = FnShiftParams(open_, number, receipts)
    assert FnShiftParams.decode(params.encode()) == params


def test_validity_accepts_both_the_3_and_the_5_byte_forms() -> None:
    assert FnValidity.decode(bytes((27, 12, 31))) == FnValidity(date(2027, 12, 31))
    five = FnValidity.decode(bytes((27, 12, 31, 11, 1)))
    assert five == FnValidity(date(2027, 12, 31), registrations_left=11, registrations_done=1)
    assert five.encode() == bytes((27, 12, 31, 11, 1))
    assert FnValidity(date(2027, 12, 31)).encode() == bytes((27, 12, 31))


@given(day=days, left=st.integers(0, 255), done=st.integers(0, 255))
def test_validity_round_trip(day: date, left: int, done: int) -> None:
    validity = FnValidity(day, left, done)
    assert FnValidity.decode(validity.encode()) == validity


@given(docs=u32, kb=u32)
def test_resource_round_trip(docs: int, kb: int) -> None:
    assert FnResource.decode(FnResource(docs, kb).encode()) == FnResource(docs, kb)


def test_unconfirmed_count_reads_two_or_four_bytes() -> None:
    assert decode_unconfirmed_count(bytes.fromhex("3412")) == 0x1234
    assert decode_unconfirmed_count(bytes.fromhex("78563412")) == 0x12345678
    with pytest.raises(DecodeError):
        decode_unconfirmed_count(b"\x01")


def test_document_keeps_the_shift_number_of_shift_reports() -> None:
    doc = FnDocument(2, True, datetime(2026, 11, 27, 9, 5), 77, 123456, shift_number=42)
    decoded = FnDocument.decode(doc.encode())
    assert decoded == doc
    receipt = FnDocument(3, False, datetime(2026, 11, 27, 9, 6), 78, 1, extra=b"\x01\x10\x27\x00\x00\x00")
    assert FnDocument.decode(receipt.encode()) == receipt


def test_firmware_round_trip() -> None:
    firmware = FnFirmware("fn-1.1-sim", True)
    assert FnFirmware.decode(firmware.encode()) == firmware


def test_warning_names_and_error_meanings() -> None:
    assert warning_names(0x0A) == ["REPLACE_SOON", "OFD_TIMEOUT"]
    assert warning_names(0) == []
    assert "30" in fn_error_meaning(0x15)
    assert "неизвестный" in fn_error_meaning(0x7E)


def test_ffd_version_codes_follow_tag_1209() -> None:
    from protocol.kkt.fn import ffd_version_code, ffd_version_name

    assert [ffd_version_name(code) for code in (1, 2, 3, 4, 0, 9)] == ["1.0", "1.05", "1.1", "1.2", None, None]
    assert ffd_version_code("1.05") == 2
    with pytest.raises(EncodeError, match="unknown ФФД version"):
        ffd_version_code("2.0")


def test_tlv_round_trip_and_truncation() -> None:
    from protocol.kkt.fn import FnTlv

    tlv = FnTlv(1209, b"\x04")
    assert tlv.encode() == bytes.fromhex("B9 04 01 00 04")
    assert FnTlv.decode(tlv.encode()) == tlv
    with pytest.raises(DecodeError):
        FnTlv.decode(bytes.fromhex("B9 04 02 00 04"))  # says 2 bytes, carries 1
