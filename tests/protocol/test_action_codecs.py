"""The remote actions' wire bytes (specs §6a), both directions, on both protocols.

Layouts relied on: Shtrih 21h/22h/23h take the password then hh mm ss / DD MM YY in binary (the
11h date and time layout; the vendor's own Java driver writes 22h as password + DD-MM-YY); ATOL
67h takes a report type (1 = daily X-report), EDh DD MM YY hh mm ss in BCD and CE 41h nothing
(atol4j PrintReportCommand, SetDateTimeCommand, RebootCommand).
"""

from __future__ import annotations

from datetime import date, datetime, time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.kkt.atol.messages import (
    CommonAnswer,
    EnterMode,
    PrintReport,
    Reboot,
    SetDateTime,
    decode_request,
    encode_request,
)
from protocol.kkt.errors import DecodeError, DeviceError, EncodeError
from protocol.kkt.shtrih import messages as msg
from protocol.kkt.shtrih.errors import NOT_IN_THIS_MODE
from protocol.kkt.shtrih.framing import encode_frame

SYSADMIN = msg.SYSADMIN_PASSWORD


@pytest.mark.parametrize(
    ("command", "request_", "wire"),
    [
        (msg.X_REPORT, msg.PasswordRequest(SYSADMIN), "02 05 40 1E 00 00 00 5B"),
        (msg.Z_REPORT, msg.PasswordRequest(SYSADMIN), "02 05 41 1E 00 00 00 5A"),  # specs §1.2 example
        (msg.SET_TIME, msg.SetTimeRequest(time(13, 5, 59), SYSADMIN), "02 08 21 1E 00 00 00 0D 05 3B 04"),
        (msg.SET_DATE, msg.SetDateRequest(date(2026, 12, 7), SYSADMIN), "02 08 22 1E 00 00 00 07 0C 1A 25"),
        (msg.CONFIRM_DATE, msg.SetDateRequest(date(2026, 12, 7), SYSADMIN), "02 08 23 1E 00 00 00 07 0C 1A 24"),
    ],
)
def test_shtrih_action_frames(command: msg.Command[object, object], request_: object, wire: str) -> None:
    payload = command.encode_request(request_)
    assert encode_frame(payload) == bytes.fromhex(wire)
    assert msg.find_command(payload) is command
    assert command.decode_request(payload) == request_


def test_shtrih_action_answers_and_refusals() -> None:
    assert msg.X_REPORT.decode_answer(bytes.fromhex("40 00 1E")) == msg.OperatorAnswer(30)
    assert msg.SET_TIME.decode_answer(bytes.fromhex("21 00")) == msg.NoAnswerData()
    refused = msg.SET_DATE.decode_answer(msg.SET_DATE.encode_error(NOT_IN_THIS_MODE))
    assert isinstance(refused, msg.ErrorAnswer)
    assert refused.meaning == "команда не поддерживается в данном режиме"


def test_shtrih_clock_requests_reject_impossible_values() -> None:
    with pytest.raises(DecodeError):
        msg.SET_TIME.decode_request(bytes.fromhex("21 1E 00 00 00 18 00 00"))  # 24:00:00
    with pytest.raises(DecodeError):
        msg.SET_DATE.decode_request(bytes.fromhex("22 1E 00 00 00 1F 02 1A"))  # 31 February
    with pytest.raises(EncodeError):
        msg.SetDateRequest(date(1999, 12, 31)).encode()


@pytest.mark.parametrize(
    ("command", "wire"),
    [
        (EnterMode(EnterMode.X_REPORTS, 0), "00 00 56 02 00 00 00 00"),
        (PrintReport(PrintReport.DAILY), "00 00 67 01"),
        (SetDateTime(datetime(2026, 12, 7, 13, 5, 59)), "00 00 ED 07 12 26 13 05 59"),  # BCD
        (Reboot(), "00 00 CE 41"),
    ],
)
def test_atol_action_requests(command: object, wire: str) -> None:
    raw = encode_request(command)  # type: ignore[arg-type]
    assert raw == bytes.fromhex(wire)
    assert decode_request(raw) == (0, command)


def test_atol_action_answers_carry_the_error_and_its_meaning() -> None:
    assert Reboot().decode_answer(bytes.fromhex("55 00 00")) == CommonAnswer()
    with pytest.raises(DeviceError) as refused:
        SetDateTime().decode_answer(bytes.fromhex("55 9C 00"))  # 156
    assert (refused.value.code, refused.value.meaning) == (156, "смена открыта — операция невозможна")


def test_atol_set_datetime_rejects_impossible_values() -> None:
    with pytest.raises(DecodeError):
        decode_request(bytes.fromhex("00 00 ED 31 02 26 10 00 00"))  # 31 February
    with pytest.raises(EncodeError):
        encode_request(SetDateTime(datetime(2100, 1, 1)))


@given(st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31, 23, 59, 59)).map(lambda d: d.replace(microsecond=0)))
def test_clock_values_round_trip_on_both_protocols(when: datetime) -> None:
    assert decode_request(encode_request(SetDateTime(when))) == (0, SetDateTime(when))
    time_payload = msg.SET_TIME.encode_request(msg.SetTimeRequest(when.time()))
    date_payload = msg.SET_DATE.encode_request(msg.SetDateRequest(when.date()))
    assert msg.SET_TIME.decode_request(time_payload).value == when.time()
    assert msg.SET_DATE.decode_request(date_payload).value == when.date()
