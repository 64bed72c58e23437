"""The simulated ATOL register: answers from the model, the mode model, fiscal refusals, link faults.

Commands are driven by the protocol's own host transaction machine (no agent code), so a
failure here points at the device role.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_sim.atol import PORT_ETHERNET, PORT_RS232, SIMULATED_MODEL_ID, AtolDevice
from firmware_sim.model import RegisterModel
from protocol.kkt.atol import errors as atol_errors
from protocol.kkt.atol.link import Deframer, Packet, encode_packet, encode_retransmit_request
from protocol.kkt.atol.messages import (
    COMMANDS,
    CloseReceipt,
    CloseShift,
    Command,
    EnterMode,
    GetDeviceStatus,
    GetDeviceType,
    GetFirmwareVersion,
    GetFnDocument,
    GetFnExchangeStatus,
    GetFnNumber,
    GetFnShiftParams,
    GetFnStatus,
    GetFnValidity,
    GetStateCode,
    LeaveMode,
    OpenReceipt,
    OpenShift,
    RegisterItem,
    encode_request,
)
from protocol.kkt.atol.task_host import Completed, HostTransaction, IdCounter, Send, Step, Wait
from protocol.kkt.atol.tasks import Add, DeviceReply
from protocol.kkt.errors import DeviceError
from protocol.kkt.fn import FnDocumentType, FnPhase

A = TypeVar("A")
NOW = datetime(2026, 11, 27, 10, 0, 0)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Host:
    """Runs commands against an ``AtolDevice`` with the protocol's host machine."""

    def __init__(self, device: AtolDevice) -> None:
        self.device = device
        self.packet_ids = IdCounter()
        self.task_ids = IdCounter()

    def run(self, command: Command[A], password: int = 0) -> A:
        transaction = HostTransaction(
            encode_request(command, password), task_id=self.task_ids.next(), packet_ids=self.packet_ids
        )
        step: Step = transaction.start()
        deframer = Deframer()
        while not isinstance(step, Completed):
            assert isinstance(step, Send), step
            events = deframer.feed(self.device.feed(step.frame))
            step = Wait()
            for event in events:
                step = transaction.receive(event)
                if not isinstance(step, Wait):
                    break
            if isinstance(step, Wait):
                step = transaction.timeout()
        self.device.feed(step.ack)
        return command.decode_answer(step.result)

    def refused(self, command: Command[Any]) -> int:
        with pytest.raises(DeviceError) as info:
            self.run(command)
        return info.value.code


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def model(clock: Clock) -> RegisterModel:
    return RegisterModel(clock=clock, serial="0012345678901234", model_name="АТОЛ 30Ф", firmware="3.0.8012")


@pytest.fixture
def host(model: RegisterModel) -> Host:
    return Host(AtolDevice(model))


def test_status_answers_render_the_model(host: Host, model: RegisterModel) -> None:
    model.cover_open = True
    status = host.run(GetDeviceStatus())
    assert status.clock == NOW
    assert status.serial == "78901234"  # 3Fh carries the last 8 digits
    assert status.model_id == SIMULATED_MODEL_ID and status.port == PORT_RS232
    assert status.paper_present and status.cover_open and not status.shift_open
    assert host.run(GetStateCode()).paper_present
    device_type = host.run(GetDeviceType())
    assert device_type.name == "АТОЛ 30Ф" and device_type.protocol_version == 3
    assert str(host.run(GetFirmwareVersion())) == "3.0.8012"
    assert host.run(GetFnStatus()) == model.fn_status()
    assert host.run(GetFnNumber()) == model.fn_serial
    assert host.run(GetFnValidity()) == model.validity()
    assert host.run(GetFnExchangeStatus()) == model.exchange_status()
    assert host.run(GetFnShiftParams()) == model.shift_params()


def test_tcp_device_reports_the_ethernet_port(model: RegisterModel) -> None:
    assert Host(AtolDevice(model, tcp=True)).run(GetDeviceStatus()).port == PORT_ETHERNET


def test_shift_receipt_and_z_report_through_modes(host: Host, model: RegisterModel, clock: Clock) -> None:
    assert host.refused(OpenShift()) == atol_errors.NOT_IN_THIS_MODE
    assert host.refused(EnterMode(1, password=99)) == atol_errors.WRONG_PASSWORD
    host.run(EnterMode(EnterMode.REGISTRATION))
    host.run(OpenShift())
    assert model.shift_open and model.shift_number == 1
    assert host.refused(OpenShift()) == atol_errors.SHIFT_OPEN
    assert host.run(GetDeviceStatus()).shift_open

    host.run(OpenReceipt(receipt_type=1))
    assert host.refused(LeaveMode()) == atol_errors.RECEIPT_OPEN
    host.run(RegisterItem(name="Хлеб", price=4500, quantity=2000))
    assert host.run(GetDeviceStatus()).receipt_sum == 9000
    host.run(CloseReceipt(payment_type=1, paid=9000))
    assert model.receipts_in_shift == 1 and model.last_fd_number == 2
    assert host.refused(RegisterItem(name="x", price=1)) == atol_errors.RECEIPT_CLOSED

    host.run(LeaveMode())
    host.run(EnterMode(EnterMode.Z_REPORTS))
    clock.now += timedelta(hours=8)
    host.run(CloseShift())
    assert not model.shift_open and model.last_fd_number == 3
    assert host.refused(CloseShift()) == atol_errors.NOT_IN_THIS_MODE


def test_first_receipt_opens_the_shift(host: Host, model: RegisterModel) -> None:
    host.run(EnterMode(EnterMode.REGISTRATION))
    host.run(OpenReceipt())
    assert model.shift_open and model.receipt_open


def test_find_document_returns_the_shift_open_fd(host: Host, model: RegisterModel) -> None:
    model.open_shift(at=NOW - timedelta(hours=2))
    model.sell()
    document = host.run(GetFnDocument(1))
    assert document.document_type == FnDocumentType.SHIFT_OPEN and document.created_at == NOW - timedelta(
        hours=2
    )
    assert document.shift_number == 1
    assert host.refused(GetFnDocument(99)) == 218


def test_expired_shift_refuses_receipts_136_and_documents_240(host: Host, model: RegisterModel) -> None:
    model.open_shift(at=NOW - timedelta(hours=25))
    host.run(EnterMode(EnterMode.REGISTRATION))
    assert host.refused(OpenReceipt()) == atol_errors.SHIFT_OVER_24H
    model.receipt_open = True  # a receipt opened before the 24 h passed cannot be closed either
    assert host.refused(CloseReceipt()) == atol_errors.FN_SHIFT_OVER_24H
    model.cancel_receipt()
    host.run(LeaveMode())
    host.run(EnterMode(EnterMode.Z_REPORTS))
    host.run(CloseShift())  # the Z-report is how the cashier clears it
    assert not model.shift_open


@pytest.mark.parametrize(
    ("breach", "code"),
    [
        ("ofd_30_days", atol_errors.FN_OFD_WAIT_EXHAUSTED),
        ("fn_expired", atol_errors.FN_SERVICE_LIFE_ENDED),
        ("archive_full", atol_errors.FN_ARCHIVE_FULL),
        ("no_paper", atol_errors.NO_PAPER),
    ],
)
def test_fiscal_refusals(host: Host, model: RegisterModel, breach: str, code: int) -> None:
    if breach == "ofd_30_days":
        model.backdate_unsent(3, NOW - timedelta(days=31))
    elif breach == "fn_expired":
        model.fn_valid_until = date(2026, 11, 1)
    elif breach == "archive_full":
        model.documents_left = 0
    else:
        model.paper_present = False
    host.run(EnterMode(EnterMode.REGISTRATION))
    assert host.refused(OpenShift()) == code
    assert not model.shift_open and model.shift_number == 0


def test_no_paper_shows_in_both_status_commands(host: Host, model: RegisterModel) -> None:
    model.paper_present = False
    assert not host.run(GetStateCode()).paper_present
    assert not host.run(GetDeviceStatus()).paper_present


def test_not_fiscal_fn_is_wrong_state(host: Host, model: RegisterModel) -> None:
    model.fn_phase = FnPhase.POST_FISCAL
    host.run(EnterMode(EnterMode.REGISTRATION))
    assert host.refused(OpenShift()) == atol_errors.WRONG_FN_STATE


def test_unknown_and_malformed_commands_get_error_answers(model: RegisterModel) -> None:
    device = AtolDevice(model)
    for command in (b"\x00\x00\x77", b"\x00\x00\x56\x01"):  # unknown code; 56h without its password
        reply = Deframer().feed(device.feed(encode_packet(1, Add(1, command).encode())))
        assert reply == [Packet(1, bytes((0xA4, 0x55, atol_errors.UNKNOWN_COMMAND, 0)))]
        device.feed(encode_packet(2, b"\xc2\x01"))  # ACK


def test_retransmit_request_repeats_the_answer_without_executing_again(model: RegisterModel) -> None:
    device = AtolDevice(model)
    answer = device.feed(encode_packet(7, Add(1, encode_request(GetStateCode())).encode()))
    assert device.feed(encode_retransmit_request(7)) == answer
    assert device.commands_executed == 1


def test_split_input_and_reset(model: RegisterModel) -> None:
    device = AtolDevice(model)
    frame = encode_packet(3, Add(1, encode_request(GetStateCode())).encode())
    assert device.feed(frame[:4]) == b""
    assert Deframer().feed(device.feed(frame[4:]))[0] == Packet(3, b"\xa3\x55\x00\x00")
    device.feed(frame[:6])
    device.reset()  # cable replugged: the partial packet and the unacknowledged task are gone
    assert Deframer().feed(device.feed(frame))[0] == Packet(3, b"\xa3\x55\x00\x00")


def test_slow_device_answers_pending_first(model: RegisterModel) -> None:
    device = AtolDevice(model, slow_polls=2)
    assert device.feed(encode_packet(1, Add(1, encode_request(GetStateCode())).encode())) == encode_packet(
        1, b"\xa1"
    )
    assert Host(AtolDevice(model, slow_polls=2)).run(GetStateCode()).mode == 0


known_codes = st.sampled_from([code for code in COMMANDS] + [b"\x77", b"\xa4\x99"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(known_codes, st.binary(max_size=110), st.binary(max_size=30))
def test_fuzzed_commands_and_bytes_never_crash_the_device(
    model: RegisterModel, code: bytes, params: bytes, noise: bytes
) -> None:
    device = AtolDevice(model)
    device.feed(noise)
    reply = device.feed(encode_packet(1, Add(1, b"\x00\x00" + code + params).encode()))
    (packet,) = Deframer().feed(reply)
    assert isinstance(packet, Packet) and DeviceReply.decode(packet.data).finished
