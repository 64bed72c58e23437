"""ATOL command layer: request envelope, every command's params and answers in both roles, errors."""

from __future__ import annotations

import contextlib
from datetime import date, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.kkt.atol import errors as atol_errors
from protocol.kkt.atol.messages import (
    COMMANDS,
    OFD_ADDRESS_SETTING,
    OFD_PORT_SETTING,
    CloseReceipt,
    CloseShift,
    Command,
    CommonAnswer,
    DeviceStatus,
    DeviceType,
    EnterMode,
    FirmwareVersion,
    GetDeviceStatus,
    GetDeviceType,
    GetFirmwareVersion,
    GetFnDocument,
    GetFnExchangeStatus,
    GetFnNumber,
    GetFnRegistrationParam,
    GetFnShiftParams,
    GetFnStatus,
    GetFnValidity,
    GetStateCode,
    LeaveMode,
    OpenReceipt,
    OpenShift,
    PrintReport,
    ReadDeviceSetting,
    Reboot,
    RegisterItem,
    SetDateTime,
    SettingValue,
    StateCode,
    UnknownCommand,
    decode_bcd,
    decode_request,
    encode_bcd,
    encode_request,
)
from protocol.kkt.errors import DecodeError, DeviceError, EncodeError
from protocol.kkt.fn import (
    FnDocument,
    FnExchangeStatus,
    FnShiftParams,
    FnStatus,
    FnValidity,
    FnWarning,
    OfdExchangeFlag,
)

clocks = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)).map(
    lambda d: d.replace(microsecond=0)
)
device_statuses = st.builds(
    DeviceStatus,
    cashier=st.integers(0, 99),
    number_in_hall=st.integers(0, 255),
    clock=clocks | st.none(),
    flags=st.integers(0, 255),
    serial=st.integers(0, 99_999_999).map(lambda n: f"{n:08d}"),
    model_id=st.integers(0, 255),
    mode=st.integers(0, 15),
    submode=st.integers(0, 15),
    receipt_number=st.integers(0, 9999),
    shift_number=st.integers(0, 9999),
    receipt_state=st.integers(0, 255),
    receipt_sum=st.integers(0, 10**10 - 1),
    decimal_point=st.integers(0, 255),
    port=st.integers(0, 255),
)

SAMPLE_REQUESTS: list[Command[Any]] = [
    GetDeviceStatus(),
    GetStateCode(),
    GetDeviceType(),
    GetFirmwareVersion(3),
    GetFnStatus(),
    GetFnNumber(),
    GetFnValidity(),
    GetFnExchangeStatus(),
    GetFnShiftParams(),
    GetFnDocument(0x01020304),
    GetFnRegistrationParam(1209),
    ReadDeviceSetting(OFD_PORT_SETTING),
    EnterMode(3, 30),
    LeaveMode(),
    OpenShift(test=True),
    CloseShift(),
    OpenReceipt(receipt_type=2, flags=1),
    RegisterItem(name="Хлеб", price=4599, quantity=1500, flags=0),
    CloseReceipt(payment_type=1, paid=10_000, flags=0),
    PrintReport(PrintReport.DAILY),
    SetDateTime(datetime(2026, 12, 31, 23, 59, 58)),
    Reboot(),
]

FN_STATUS = FnStatus(
    3, 0, False, True, FnWarning.REPLACE_SOON, datetime(2026, 5, 1, 9, 30), "9999078900012345", 77
)
SAMPLE_ANSWERS: list[tuple[Command[Any], Any]] = [
    (GetStateCode(), StateCode(mode=1, submode=2, flags=StateCode.NO_PAPER)),
    (GetDeviceType(), DeviceType(3, 1, 61, 0, b"\x03\x00\x00\x08\x00", "АТОЛ 30Ф")),
    (GetFirmwareVersion(), FirmwareVersion(major=3, minor=0, language=0, build=8012)),
    (GetFnStatus(), FN_STATUS),
    (GetFnNumber(), "9999078900012345"),
    (GetFnValidity(), FnValidity(date(2027, 3, 1), 11, 1)),
    (GetFnExchangeStatus(), FnExchangeStatus(OfdExchangeFlag(3), False, 4, 70, datetime(2026, 4, 30, 8, 0))),
    (GetFnShiftParams(), FnShiftParams(True, 300, 12)),
    (GetFnDocument(5), FnDocument(2, True, datetime(2026, 5, 1, 8, 0), 5, 123, shift_number=300)),
    (OpenShift(), CommonAnswer()),
    (ReadDeviceSetting(OFD_ADDRESS_SETTING), SettingValue.of_text("k-server.1-ofd.ru")),
]


@pytest.mark.parametrize("command", SAMPLE_REQUESTS, ids=lambda c: type(c).__name__)
def test_every_request_round_trips_through_the_registry(command: Command[Any]) -> None:
    raw = encode_request(command, password=1234)
    assert raw[:2] == b"\x12\x34"  # password in BCD
    assert decode_request(raw) == (1234, command)


def test_registry_covers_every_request_and_codes_are_unique() -> None:
    assert {type(c) for c in SAMPLE_REQUESTS} == set(COMMANDS.values())
    assert GetFnStatus().code == 0xA430 and GetDeviceStatus().code == 0x3F


def test_ofd_setting_read_layout() -> None:
    """46h + setting number big-endian; the answer's value is text (host) or a big-endian number (port)."""
    assert encode_request(ReadDeviceSetting(OFD_ADDRESS_SETTING)) == bytes.fromhex("00 00 46 01 11")
    assert ReadDeviceSetting(OFD_ADDRESS_SETTING).decode_answer(b"\x55\x00ofd.ru\x00\x00").text == "ofd.ru"
    assert ReadDeviceSetting(OFD_PORT_SETTING).decode_answer(bytes.fromhex("55 00 1E 61")).number == 7777
    with pytest.raises(DeviceError) as refused:
        ReadDeviceSetting(OFD_PORT_SETTING).decode_answer(bytes.fromhex("55 66 00"))
    assert refused.value.code == atol_errors.NOT_IN_THIS_MODE
    with pytest.raises(EncodeError):
        SettingValue.of_number(70_000)


def test_default_password_and_two_byte_codes() -> None:
    assert encode_request(GetDeviceStatus()) == bytes.fromhex("00 00 3F")
    assert encode_request(GetFnStatus()) == bytes.fromhex("00 00 A4 30")
    assert encode_request(GetFnDocument(1)) == bytes.fromhex("00 00 A4 40 01 00 00 00")


@pytest.mark.parametrize("raw", ["00 00 77", "00 00 A4 99", "00 00 A4"])
def test_unknown_commands_raise_with_an_error_answer(raw: str) -> None:
    with pytest.raises(UnknownCommand) as info:
        decode_request(bytes.fromhex(raw))
    assert info.value.error_answer()[1] == atol_errors.UNKNOWN_COMMAND


@pytest.mark.parametrize(("command", "answer"), SAMPLE_ANSWERS, ids=lambda v: type(v).__name__)
def test_answers_round_trip(command: Command[Any], answer: Any) -> None:
    assert command.decode_answer(command.encode_answer(answer)) == answer


@given(device_statuses)
def test_device_status_round_trip(status: DeviceStatus) -> None:
    wire = GetDeviceStatus().encode_answer(status)
    assert len(wire) == DeviceStatus.SIZE and wire[0] == 0x44
    assert GetDeviceStatus().decode_answer(wire) == status


def test_device_status_golden_layout() -> None:
    status = DeviceStatus(
        cashier=1, number_in_hall=1, clock=datetime(2026, 11, 27, 10, 5, 9), flags=0x0B, serial="78901234",
        model_id=61, mode=1, submode=0, receipt_number=3, shift_number=12, receipt_state=0, receipt_sum=0,
        decimal_point=2, port=4,
    )  # fmt: skip
    wire = status.encode()
    assert wire[3:9] == bytes.fromhex("26 11 27 10 05 09")  # BCD date and time
    assert wire[10:14] == bytes.fromhex("78 90 12 34")
    assert wire[18:22] == bytes.fromhex("00 03 00 12")
    assert status.shift_open and status.paper_present and not status.cover_open


@given(st.integers(0, 10**12 - 1))
def test_bcd_round_trip(value: int) -> None:
    assert decode_bcd(encode_bcd(value, 6)) == value


def test_bcd_rejects_bad_values() -> None:
    with pytest.raises(EncodeError):
        encode_bcd(100, 1)
    with pytest.raises(DecodeError):
        decode_bcd(b"\x1a")


def test_error_answers_become_device_errors_with_russian_meaning() -> None:
    with pytest.raises(DeviceError) as info:
        OpenShift().decode_answer(OpenShift().encode_error(atol_errors.FN_SHIFT_OVER_24H))
    assert info.value.code == 240 and "24 часов" in info.value.meaning and info.value.vendor == "atol"
    with pytest.raises(DeviceError) as fn_info:
        GetFnStatus().decode_answer(GetFnStatus().encode_error(atol_errors.FN_OFD_WAIT_EXHAUSTED))
    assert fn_info.value.command == 0xA430 and "30 дней" in fn_info.value.meaning
    with pytest.raises(DeviceError) as state_info:
        GetDeviceStatus().decode_answer(GetDeviceStatus().encode_error(atol_errors.WRONG_PASSWORD))
    assert state_info.value.meaning == "неверный пароль"


def test_device_type_error_has_no_55_lead_byte() -> None:
    assert GetDeviceType().encode_error(104) == b"\x68"
    with pytest.raises(DeviceError) as info:
        GetDeviceType().decode_answer(b"\x68")
    assert info.value.meaning == "нет связи с принтером чеков"


@pytest.mark.parametrize(
    ("command", "data"),
    [
        (GetDeviceStatus(), b""),
        (GetDeviceStatus(), b"\x44\x01"),
        (GetDeviceStatus(), b"\x55\x00"),
        (GetStateCode(), b"\x44\x00\x00"),
        (GetFnStatus(), b"\x55\x00\x03"),
        (GetFnShiftParams(), b"\x44\x00\x00\x00\x00\x00\x00"),
        (GetFirmwareVersion(), b"\x55\x00\x00\x0a"),
    ],
)
def test_short_or_foreign_answers_are_decode_errors(command: Command[Any], data: bytes) -> None:
    with pytest.raises(DecodeError):
        command.decode_answer(data)


def test_fn_validity_accepts_the_old_three_byte_form() -> None:
    assert GetFnValidity().decode_answer(b"\x55\x00\x1b\x03\x01") == FnValidity(date(2027, 3, 1))


def test_register_item_amount_and_padding() -> None:
    item = RegisterItem(name="Молоко", price=8990, quantity=2000)
    assert len(item.params()) == RegisterItem.PARAMS_SIZE
    assert item.amount == 17_980
    with pytest.raises(EncodeError):
        RegisterItem(name="я" * 65).params()


def test_error_table_meanings() -> None:
    assert atol_errors.error_meaning(103) == "нет бумаги"
    assert atol_errors.error_meaning(215) == "закончен срок эксплуатации ФН"
    assert atol_errors.error_meaning(216) == "архив ФН переполнен"
    assert atol_errors.error_meaning(250) == "неизвестный код ошибки АТОЛ 250"
    assert {136, 240} == atol_errors.SHIFT_EXPIRED_CODES


names = st.text(st.sampled_from("АБВГДабвгдЁё ABCxyz0123-"), max_size=30).map(str.strip)
requests = st.one_of(
    st.builds(GetFirmwareVersion, st.integers(0, 255)),
    st.builds(GetFnDocument, st.integers(0, 2**32 - 1)),
    st.builds(EnterMode, st.integers(0, 255), st.integers(0, 99_999_999)),
    st.builds(OpenShift, st.booleans()),
    st.builds(OpenReceipt, st.integers(0, 255), st.integers(0, 255)),
    st.builds(
        RegisterItem, names, st.integers(0, 10**12 - 1), st.integers(0, 10**10 - 1), st.integers(0, 255)
    ),
    st.builds(CloseReceipt, st.integers(0, 255), st.integers(0, 10**10 - 1), st.integers(0, 255)),
)


@given(requests, st.integers(0, 9999))
def test_any_request_round_trips(command: Command[Any], password: int) -> None:
    assert decode_request(encode_request(command, password)) == (password, command)


answers = st.one_of(
    st.builds(
        lambda a: (GetStateCode(), a),
        st.builds(StateCode, st.integers(0, 15), st.integers(0, 15), st.integers(0, 255)),
    ),
    st.builds(
        lambda a: (GetFirmwareVersion(), a),
        st.builds(
            FirmwareVersion,
            st.integers(0, 99),
            st.integers(0, 99),
            st.integers(0, 255),
            st.integers(0, 9999),
            st.integers(0, 255),
        ),
    ),
    st.builds(
        lambda a: (GetDeviceType(), a),
        st.builds(
            DeviceType,
            st.integers(0, 255),
            st.integers(0, 255),
            st.integers(0, 255),
            st.integers(0, 65535),
            st.binary(min_size=5, max_size=5),
            names,
        ),
    ),
    st.builds(
        lambda a: (GetFnShiftParams(), a),
        st.builds(FnShiftParams, st.booleans(), st.integers(0, 65535), st.integers(0, 65535)),
    ),
    st.builds(lambda a: (LeaveMode(), a), st.builds(CommonAnswer, st.integers(0, 255))),
)


@given(answers)
def test_any_answer_round_trips(pair: tuple[Command[Any], Any]) -> None:
    command, answer = pair
    assert command.decode_answer(command.encode_answer(answer)) == answer


@given(
    st.tuples(st.sampled_from([b"", b"\x55\x00", b"\x44", b"\x00\x00\xa4", b"\x00"]), st.binary(max_size=40))
)
def test_fuzzed_requests_and_answers_raise_only_typed_errors(parts: tuple[bytes, bytes]) -> None:
    data = parts[0] + parts[1]  # plausible lead bytes reach the layout decoders, not just the first check
    with contextlib.suppress(DecodeError):
        decode_request(data)
    for command in SAMPLE_REQUESTS:
        with contextlib.suppress(DecodeError, DeviceError):
            command.decode_answer(data)
