"""Shtrih message registry: golden answers from specs §1.2/§1.4 and round-trips of every command."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from datetime import date, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.kkt.errors import DecodeError, DeviceError, EncodeError
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
)
from protocol.kkt.shtrih import messages as msg
from protocol.kkt.shtrih.errors import error_meaning
from protocol.kkt.shtrih.framing import Deframer, Frame, encode_frame

FF01_ANSWER = bytes.fromhex(
    "02 21 FF 01 00 03 00 00 01 00 18 05 11 09 1E 39 39 39 39 30 37 38 39 30 30 30 31 32 33 34 35 D2 04 00 00 17"
)

u8, u16, u32 = st.integers(0, 0xFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)
nibble = st.integers(0, 15)
minute_dt = st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31)).map(
    lambda d: d.replace(second=0, microsecond=0)
)
second_dt = st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31)).map(lambda d: d.replace(microsecond=0))
dates = st.dates(date(2000, 1, 1), date(2099, 12, 31))
cp1251_text = st.text(st.characters(codec="cp1251", exclude_characters="\x00"), max_size=40).filter(
    lambda s: len(s.encode("cp1251")) <= 40
)
ascii16 = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=16)
four = st.tuples(u8, u8, u8, u8)

STRATEGIES: dict[type, st.SearchStrategy[Any]] = {
    msg.NoParams: st.builds(msg.NoParams),
    msg.PasswordRequest: st.builds(msg.PasswordRequest, u32),
    msg.FindDocumentRequest: st.builds(msg.FindDocumentRequest, u32, u32),
    msg.ReadTableRequest: st.builds(msg.ReadTableRequest, u8, st.integers(0, 0xFFFF), u8, u32),
    msg.TableValue: st.builds(msg.TableValue, st.binary(min_size=1, max_size=40)),
    msg.OpenReceiptRequest: st.builds(msg.OpenReceiptRequest, u8, u32),
    msg.SaleRequest: st.builds(
        msg.SaleRequest, st.integers(0, 2**40 - 1), st.integers(0, 2**40 - 1), u8, four, cp1251_text, u32
    ),
    msg.CloseReceiptRequest: st.builds(
        msg.CloseReceiptRequest,
        st.integers(0, 2**40 - 1),
        st.tuples(*[st.integers(0, 2**40 - 1)] * 3),
        st.integers(-9999, 9999),
        four,
        cp1251_text,
        u32,
    ),
    msg.OperatorAnswer: st.builds(msg.OperatorAnswer, st.none() | u8),
    msg.SetTimeRequest: st.builds(msg.SetTimeRequest, st.times().map(lambda t: t.replace(microsecond=0)), u32),
    msg.SetDateRequest: st.builds(msg.SetDateRequest, dates, u32),
    msg.NoAnswerData: st.builds(msg.NoAnswerData),
    msg.CloseReceiptAnswer: st.builds(msg.CloseReceiptAnswer, u8, st.integers(0, 2**40 - 1)),
    msg.ShortStatus: st.builds(
        msg.ShortStatus, u8, u16, nibble, nibble, u8, u16, u8, u8, u8, u8, st.none() | u8
    ),
    msg.FullStatus: st.builds(
        msg.FullStatus,
        operator=u8,
        firmware_version=st.text(st.sampled_from("0123456789AB"), min_size=2, max_size=2),
        firmware_build=u16,
        firmware_date=st.none() | dates,
        hall_number=u8,
        document_number=u16,
        flags=u16,
        mode=nibble,
        mode_status=nibble,
        submode=u8,
        port=u8,
        fp_firmware_version=st.text(st.sampled_from("0123456789"), max_size=2),
        fp_firmware_build=u16,
        fp_firmware_date=st.none() | dates,
        clock=st.none() | second_dt,
        fp_flags=u8,
        serial_low=st.none() | st.integers(0, 0xFFFFFFFE),
        last_closed_shift=u16,
        free_fp_records=u16,
        registrations_done=u8,
        registrations_left=u8,
        inn=st.none() | st.integers(0, 2**48 - 2),
        # The optional tail is positional: generate only prefixes that can be sent.
    ).flatmap(
        lambda base: st.sampled_from([(None, None, None), (1, None, None), (1, 2, None), (1, 2, 0xBEEF)]).map(
            lambda tail: _with_tail(base, tail)
        )
    ),
    msg.LongSerial: st.builds(msg.LongSerial, st.integers(0, 2**56 - 1), st.integers(0, 2**56 - 1)),
    msg.DeviceType: st.builds(
        msg.DeviceType, u8, u8, u8, u8, u8, u8, cp1251_text.map(str.strip).filter(lambda s: "\x00" not in s)
    ),
    msg.FnNumber: st.builds(msg.FnNumber, ascii16),
    msg.UnconfirmedCount: st.builds(msg.UnconfirmedCount, u16),
    FnStatus: st.builds(
        FnStatus,
        st.sampled_from([0, 1, 3, 7, 15]),
        u8,
        st.booleans(),
        st.booleans(),
        st.integers(0, 255).map(FnWarning),
        st.none() | minute_dt,
        ascii16,
        u32,
    ),
    FnValidity: st.builds(FnValidity, st.none() | dates, u8, u8) | st.builds(FnValidity, st.none() | dates),
    FnFirmware: st.builds(FnFirmware, ascii16, st.booleans()),
    FnDocument: st.builds(
        FnDocument, st.sampled_from([3, 4, 31]), st.booleans(), st.none() | minute_dt, u32, u32
    )
    | st.builds(FnDocument, st.sampled_from([2, 5]), st.booleans(), st.none() | minute_dt, u32, u32, u16),
    FnExchangeStatus: st.builds(
        FnExchangeStatus,
        st.integers(0, 63).map(OfdExchangeFlag),
        st.booleans(),
        u16,
        u32,
        st.none() | minute_dt,
    ),
    FnShiftParams: st.builds(FnShiftParams, st.booleans(), u16, u16),
    FnResource: st.builds(FnResource, u32, u32),
}


def _with_tail(base: msg.FullStatus, tail: tuple[int | None, int | None, int | None]) -> msg.FullStatus:
    return replace(base, fp_flags_high=tail[0], fp_mode=tail[1], serial_high=tail[2])


def test_every_registry_type_has_a_strategy() -> None:
    for command in msg.COMMANDS.values():
        assert command.request in STRATEGIES and command.answer in STRATEGIES, command.name


@pytest.mark.parametrize("command", list(msg.COMMANDS.values()), ids=lambda c: f"{c.code:04X}")
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_request_and_answer_round_trip_through_frames(
    command: msg.Command[Any, Any], data: st.DataObject
) -> None:
    request = data.draw(STRATEGIES[command.request])
    answer = data.draw(STRATEGIES[command.answer])
    wire = encode_frame(command.encode_request(request))  # host role
    [frame] = Deframer().feed(wire)
    assert isinstance(frame, Frame)
    assert msg.find_command(frame.payload) is command  # device role looks it up
    assert command.decode_request(frame.payload) == request
    assert command.decode_answer(command.encode_answer(answer)) == answer


def test_golden_ff01_answer_decodes_to_the_stated_values() -> None:
    [frame] = Deframer().feed(FF01_ANSWER)
    assert isinstance(frame, Frame)
    status = msg.FN_STATUS.decode_answer(frame.payload)
    assert status == FnStatus(
        phase=3,
        current_document=0,
        document_data=False,
        shift_open=True,
        warnings=FnWarning(0),
        last_document_at=datetime(2024, 5, 17, 9, 30),
        fn_serial="9999078900012345",
        last_fd_number=1234,
    )
    assert encode_frame(msg.FN_STATUS.encode_answer(status)) == FF01_ANSWER


def test_golden_requests() -> None:
    assert msg.SHORT_STATUS.encode_request(msg.PasswordRequest(30)) == bytes.fromhex("10 1E 00 00 00")
    assert msg.FN_STATUS.encode_request(msg.PasswordRequest(30)) == bytes.fromhex("FF 01 1E 00 00 00")
    assert msg.OPEN_SHIFT.encode_request(msg.PasswordRequest(1)) == bytes.fromhex("E0 01 00 00 00")
    assert msg.Z_REPORT.encode_request(msg.PasswordRequest(30)) == bytes.fromhex("41 1E 00 00 00")
    assert msg.DEVICE_TYPE.encode_request(msg.NoParams()) == b"\xfc"


def test_error_answers_carry_kkt_or_fn_meanings() -> None:
    kkt = msg.OPEN_SHIFT.decode_answer(bytes.fromhex("E0 4E"))
    assert kkt == msg.ErrorAnswer(0xE0, 0x4E)
    assert isinstance(kkt, msg.ErrorAnswer) and kkt.meaning == "смена превысила 24 часа"
    fn = msg.FN_STATUS.decode_answer(msg.FN_STATUS.encode_error(0x16))
    assert isinstance(fn, msg.ErrorAnswer)
    assert isinstance(fn.error, DeviceError) and fn.error.code == 0x16 and "24 часов" in fn.error.meaning
    assert error_meaning(0xFF01, 0x37) == error_meaning(0x10, 0x37)  # "not supported" is a KKT code
    assert error_meaning(0xFF01, 0x4F) == "неверный пароль"  # so is a wrong password on FFxx
    assert "неизвестный" in error_meaning(0x10, 0xEE)


def test_short_status_has_16_or_17_byte_layouts() -> None:
    base = bytes.fromhex("10 00 1E 82 02 24 00 05 99 D8 00 00 01 00 00 00")  # LEN 16 (no print result)
    status = msg.SHORT_STATUS.decode_answer(base)
    assert isinstance(status, msg.ShortStatus)
    assert (status.operator, status.flags, status.mode, status.mode_status, status.submode) == (
        30,
        0x0282,
        4,
        2,
        0,
    )
    assert status.receipt_operations == 0x0105 and status.last_print_result is None
    with_result = msg.SHORT_STATUS.decode_answer(base + b"\x01")
    assert isinstance(with_result, msg.ShortStatus) and with_result.last_print_result == 1


def test_full_status_decodes_inn_little_endian_and_dotted_firmware() -> None:
    answer = msg.FullStatus(
        operator=30,
        firmware_version="10",
        firmware_build=7,
        firmware_date=date(2024, 1, 15),
        hall_number=1,
        document_number=5,
        flags=0x0282,
        mode=2,
        mode_status=0,
        submode=0,
        port=0,
        fp_firmware_version="",
        fp_firmware_build=0,
        fp_firmware_date=None,
        clock=datetime(2026, 11, 27, 12, 30, 15),
        fp_flags=0x40,
        serial_low=0x12345678,
        last_closed_shift=3,
        free_fp_records=0,
        registrations_done=1,
        registrations_left=11,
        inn=7701234567,
    )
    data = answer.encode()
    assert data[40:46] == (7701234567).to_bytes(6, "little")
    assert data[23:29] == bytes((27, 11, 26, 12, 30, 15))  # DD MM YY HH MM SS
    decoded = msg.FullStatus.decode(data)
    assert decoded.firmware == "1.0" and decoded.serial == 0x12345678
    unset = msg.FullStatus.decode(data[:30] + b"\xff" * 4 + data[34:40] + b"\xff" * 6)
    assert unset.serial is None and unset.inn is None


def test_cleared_register_clock_decodes_as_unknown() -> None:
    data = bytearray(msg.FullStatus.decode(bytes(46)).encode())
    data[23:26] = bytes((31, 2, 26))  # 31 February
    assert msg.FullStatus.decode(bytes(data)).clock is None


def test_unconfirmed_count_reads_two_or_four_bytes() -> None:
    assert msg.UnconfirmedCount.decode(b"\x05\x00").count == 5
    assert msg.UnconfirmedCount.decode(b"\x05\x00\x01\x00").count == 0x10005


def test_bad_inputs_raise_typed_errors() -> None:
    with pytest.raises(DecodeError):
        msg.FULL_STATUS.decode_answer(bytes.fromhex("11 00 01"))  # truncated
    with pytest.raises(DecodeError):
        msg.FULL_STATUS.decode_answer(bytes.fromhex("10 00"))  # wrong command
    with pytest.raises(DecodeError):
        msg.FULL_STATUS.decode_answer(b"\x11")  # no error byte
    with pytest.raises(DecodeError):
        msg.command_code(b"\xff")
    with pytest.raises(msg.UnknownCommand) as unknown:
        msg.find_command(b"\xff\x77")
    assert unknown.value.code == 0xFF77
    with pytest.raises(EncodeError):
        msg.PasswordRequest(2**32).encode()
    with pytest.raises(EncodeError):
        msg.SaleRequest(1, 1, text="x" * 41).encode()
    with pytest.raises(EncodeError):
        msg.CloseReceiptRequest(1, discount=10000).encode()
    with pytest.raises(EncodeError):
        msg.OPEN_SHIFT.encode_error(0)


@given(st.binary(max_size=80))
def test_decoding_random_answers_raises_only_decode_errors(body: bytes) -> None:
    for command in msg.COMMANDS.values():
        with contextlib.suppress(DecodeError):
            result = command.decode_answer(msg.code_bytes(command.code) + body)
            assert isinstance(result, command.answer | msg.ErrorAnswer)
