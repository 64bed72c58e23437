"""The simulated Shtrih-M register answers from the model: modes, flags, passwords, refusals."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_sim.model import RegisterModel
from firmware_sim.shtrih import ShtrihDevice
from protocol.kkt.fn import FnDocument, FnDocumentType, FnStatus
from protocol.kkt.shtrih import messages as msg
from protocol.kkt.shtrih.framing import ACK, ENQ, NAK, Deframer, Frame, encode_frame

NOW = datetime(2026, 11, 27, 12, 0, 0)
ACK_B, ENQ_B, NAK_B = bytes((ACK,)), bytes((ENQ,)), bytes((NAK,))


@pytest.fixture
def model() -> RegisterModel:
    return RegisterModel(clock=lambda: NOW)


def move_clock(model: RegisterModel, by: timedelta) -> None:
    model.clock = lambda: NOW + by


def call(device: ShtrihDevice, command: msg.Command[Any, Any], request: Any) -> Any:
    """One request as a host would send it: frame in, ACK + answer frame out, host ACKs."""
    reply = device.feed(encode_frame(command.encode_request(request)))
    assert reply[:1] == ACK_B
    [frame] = Deframer().feed(reply[1:])
    assert isinstance(frame, Frame)
    device.feed(ACK_B)
    return command.decode_answer(frame.payload)


def status(device: ShtrihDevice) -> msg.ShortStatus:
    answer = call(device, msg.SHORT_STATUS, msg.PasswordRequest(30))
    assert isinstance(answer, msg.ShortStatus)
    return answer


def test_idle_device_naks_enq_and_serves_an_unacked_answer_again(model: RegisterModel) -> None:
    device = ShtrihDevice(model)
    assert device.feed(ENQ_B) == NAK_B
    reply = device.feed(encode_frame(msg.DEVICE_TYPE.encode_request(msg.NoParams())))
    assert device.feed(NAK_B) == b""
    assert device.feed(ENQ_B) == reply  # ACK + the same cached answer
    device.reset()
    assert device.feed(ENQ_B) == NAK_B


def test_bad_lrc_is_naked_and_not_executed(model: RegisterModel) -> None:
    device = ShtrihDevice(model)
    frame = bytearray(encode_frame(msg.OPEN_SHIFT.encode_request(msg.PasswordRequest(1))))
    frame[-1] ^= 0x01
    assert device.feed(bytes(frame)) == NAK_B
    assert not model.shift_open


def test_modes_follow_the_shift_and_receipt(model: RegisterModel) -> None:
    device = ShtrihDevice(model)
    assert status(device).mode == 4
    assert call(device, msg.OPEN_SHIFT, msg.PasswordRequest(1)) == msg.OperatorAnswer(1)
    assert status(device).mode == 2
    assert call(device, msg.OPEN_RECEIPT, msg.OpenReceiptRequest(2)) == msg.OperatorAnswer(1)
    assert (status(device).mode, status(device).mode_status) == (8, 2)
    call(device, msg.CANCEL_RECEIPT, msg.PasswordRequest(1))
    move_clock(model, timedelta(hours=24))
    assert status(device).mode == 3
    assert call(device, msg.Z_REPORT, msg.PasswordRequest(30)) == msg.OperatorAnswer(1)
    assert status(device).mode == 4 and not model.shift_open


def test_receipt_commands_make_a_document_and_return_change(model: RegisterModel) -> None:
    device = ShtrihDevice(model)
    call(device, msg.OPEN_SHIFT, msg.PasswordRequest(1))
    call(device, msg.OPEN_RECEIPT, msg.OpenReceiptRequest(0))
    call(device, msg.SALE, msg.SaleRequest(quantity=2000, price=15_000, text="Хлеб"))
    closed = call(device, msg.CLOSE_RECEIPT, msg.CloseReceiptRequest(cash=50_000))
    assert closed == msg.CloseReceiptAnswer(operator=1, change=20_000)
    assert model.receipts_in_shift == 1 and model.last_fd_number == 2


def test_paper_and_cover_show_in_flags_and_submode(model: RegisterModel) -> None:
    device = ShtrihDevice(model)
    assert status(device).flags & 0x0082 == 0x0082 and status(device).submode == 0
    model.paper_present, model.cover_open = False, True
    answer = status(device)
    assert answer.flags & 0x0082 == 0 and answer.submode == 1 and answer.flags & (1 << 10)
    assert call(device, msg.OPEN_SHIFT, msg.PasswordRequest(1)) == msg.ErrorAnswer(0xE0, 0x6B)


@pytest.mark.parametrize(
    ("command", "request_", "code"),
    [
        (msg.FN_STATUS, msg.PasswordRequest(1), 0x4F),  # FFxx need the sysadmin password
        (msg.Z_REPORT, msg.PasswordRequest(1), 0x4F),  # Z-report needs administrator 29/30
        (msg.SHORT_STATUS, msg.PasswordRequest(2), 0x4F),
        (msg.Z_REPORT, msg.PasswordRequest(30), 0x3D),  # shift not open
        (msg.SALE, msg.SaleRequest(1000, 100), 0x3D),
        (msg.FIND_DOCUMENT, msg.FindDocumentRequest(99), 0x08),  # ФН: no such document
    ],
)
def test_refusals(model: RegisterModel, command: msg.Command[Any, Any], request_: Any, code: int) -> None:
    assert call(ShtrihDevice(model), command, request_) == msg.ErrorAnswer(command.code, code)


def test_operator_password_is_accepted_for_status(model: RegisterModel) -> None:
    assert isinstance(call(ShtrihDevice(model), msg.SHORT_STATUS, msg.PasswordRequest(1)), msg.ShortStatus)


def test_expired_shift_refuses_receipts_with_4e_and_ofd_block_passes_the_fn_code(
    model: RegisterModel,
) -> None:
    device = ShtrihDevice(model)
    model.open_shift(at=NOW - timedelta(hours=25))
    assert call(device, msg.OPEN_RECEIPT, msg.OpenReceiptRequest(0)) == msg.ErrorAnswer(0x8D, 0x4E)
    call(device, msg.Z_REPORT, msg.PasswordRequest(29))
    move_clock(model, timedelta(days=31))  # both shift documents now wait for the OFD over 30 days
    assert call(device, msg.OPEN_SHIFT, msg.PasswordRequest(1)) == msg.ErrorAnswer(0xE0, 0x15)


def test_unknown_command_and_short_parameters(model: RegisterModel) -> None:
    device = ShtrihDevice(model)
    assert device.execute(b"\xff\x77\x1e\x00\x00\x00") == b"\xff\x77\x37"
    assert device.execute(b"\x10\x1e") == b"\x10\x33"


def test_fn_answers_come_from_the_model(model: RegisterModel) -> None:
    device = ShtrihDevice(model)
    model.open_shift()
    fn = call(device, msg.FN_STATUS, msg.PasswordRequest(30))
    assert isinstance(fn, FnStatus) and fn.shift_open and fn.last_fd_number == 1
    document = call(device, msg.FIND_DOCUMENT, msg.FindDocumentRequest(1))
    assert isinstance(document, FnDocument)
    assert (document.document_type, document.shift_number, document.created_at) == (
        FnDocumentType.SHIFT_OPEN,
        1,
        NOW,
    )
    assert call(device, msg.UNCONFIRMED_COUNT, msg.PasswordRequest(30)) == msg.UnconfirmedCount(1)
    assert call(device, msg.FN_NUMBER, msg.PasswordRequest(30)) == msg.FnNumber(model.fn_serial)


def test_full_status_carries_clock_inn_serial_and_firmware(model: RegisterModel) -> None:
    full = call(ShtrihDevice(model, tcp=True), msg.FULL_STATUS, msg.PasswordRequest(30))
    assert isinstance(full, msg.FullStatus)
    assert full.clock == NOW and full.inn == int(model.inn) and full.firmware == "1.0"
    assert full.serial == int(model.serial) and full.port == 128
    assert call(ShtrihDevice(model), msg.LONG_SERIAL, msg.PasswordRequest(30)) == msg.LongSerial(
        int(model.serial), int(model.rnm)
    )


def test_validity_is_sent_in_the_5_byte_form(model: RegisterModel) -> None:
    model.fn_valid_until = date(2027, 3, 1)
    reply = ShtrihDevice(model).execute(msg.FN_VALIDITY.encode_request(msg.PasswordRequest(30)))
    assert reply == bytes.fromhex("FF 03 00 1B 03 01 0B 01")


def test_tcp_mode_sends_a_stray_ff_after_the_host_ack(model: RegisterModel) -> None:
    device = ShtrihDevice(model, tcp=True)
    device.feed(encode_frame(msg.DEVICE_TYPE.encode_request(msg.NoParams())))
    assert device.feed(ACK_B) == b"\xff"
    assert ShtrihDevice(model).feed(ENQ_B + ACK_B) == NAK_B  # serial: no answer pending, nothing extra


@settings(max_examples=300)
@given(st.sampled_from(sorted(msg.COMMANDS)) | st.integers(0, 0xFFFF), st.binary(max_size=60))
def test_any_framed_request_gets_a_well_formed_answer(code: int, params: bytes) -> None:
    model = RegisterModel(clock=lambda: NOW)
    model.open_shift()
    device = ShtrihDevice(model)
    payload = msg.code_bytes(code) + params
    reply = device.feed(encode_frame(payload[:255]))
    assert reply[:1] == ACK_B
    [frame] = Deframer().feed(reply[1:])
    assert isinstance(frame, Frame) and len(frame.payload) >= 2


def test_silence_abandons_a_half_received_frame_but_keeps_the_answer() -> None:
    """Stray bytes (e.g. an ATOL probe starting with 02h during detect) must not wedge the device."""
    from datetime import datetime

    from firmware_sim.model import RegisterModel
    from firmware_sim.shtrih import ShtrihDevice
    from protocol.kkt.shtrih.framing import encode_frame

    device = ShtrihDevice(RegisterModel(clock=lambda: datetime(2026, 11, 28, 9, 0)))
    assert device.feed(b"\x02\x30\x10") == b""  # STX and a length that will never arrive
    device.idle()
    answer = device.feed(encode_frame(bytes.fromhex("FC")))
    assert answer[:1] == b"\x06" and answer[1:2] == b"\x02"  # ACK, then the answer frame
    device.idle()  # silence after the answer: the unacknowledged answer is still re-sent on ENQ
    assert device.feed(b"\x05")[:1] == b"\x06"
