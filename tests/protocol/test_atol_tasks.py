"""ATOL task buffer: request/status codecs and the host ↔ device transaction machines, without I/O."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.kkt.atol.link import ASYNC_PACKET_ID, Deframer, Packet, encode_packet, encode_retransmit_request
from protocol.kkt.atol.task_device import DeviceTaskBuffer, TaskResult
from protocol.kkt.atol.task_host import (
    Completed,
    Failed,
    FailureKind,
    HostTransaction,
    IdCounter,
    Send,
    Step,
    Wait,
)
from protocol.kkt.atol.tasks import (
    Abort,
    Ack,
    Add,
    AddFlag,
    DeviceReply,
    Req,
    TaskStatus,
    decode_host_request,
)
from protocol.kkt.errors import DecodeError, EncodeError

COMMAND_3F = bytes.fromhex("00 00 3F")


def echo(command: bytes) -> TaskResult:
    return TaskResult(True, b"D" + command)


def test_spec_example_frames() -> None:
    assert (
        encode_packet(1, Add(1, COMMAND_3F).encode()).hex(" ").upper() == "FE 06 00 01 C1 01 01 00 00 3F E7"
    )
    add_fn = Add(2, bytes.fromhex("00 00 A4 30")).encode()
    assert encode_packet(2, add_fn).hex(" ").upper() == "FE 07 00 02 C1 01 02 00 00 A4 30 5B"
    assert encode_packet(3, Ack(1).encode()).hex(" ").upper() == "FE 02 00 03 C2 01 C3"


def test_first_transaction_reproduces_the_spec_add_frame() -> None:
    transaction = HostTransaction(COMMAND_3F, task_id=1, packet_ids=IdCounter())
    assert transaction.start() == Send(bytes.fromhex("FE 06 00 01 C1 01 01 00 00 3F E7"))


host_requests = st.one_of(
    st.builds(
        Add,
        st.integers(0, 255),
        st.binary(min_size=1, max_size=40),
        st.sampled_from(
            [AddFlag(0), AddFlag.NEED_RESULT, AddFlag.NEED_RESULT | AddFlag.IGNORE_ERROR, AddFlag(7)]
        ),
        st.booleans(),
    ),
    st.builds(Ack, st.integers(0, 255)),
    st.builds(Req, st.integers(0, 255)),
    st.just(Abort()),
)


@given(host_requests)
def test_host_requests_round_trip(request: Add | Ack | Req | Abort) -> None:
    assert decode_host_request(request.encode()) == request


@given(st.sampled_from(list(TaskStatus)), st.binary(max_size=30), st.integers(0, 255))
def test_device_replies_round_trip(status: TaskStatus, result: bytes, task_id: int) -> None:
    with_id = status in (TaskStatus.ASYNC_RESULT, TaskStatus.ASYNC_ERROR)
    reply = DeviceReply(status, result, task_id if with_id else None)
    assert DeviceReply.decode(reply.encode()) == reply


@pytest.mark.parametrize("data", [b"", b"\x99", b"\xc2", b"\xc1\x01\x01"])
def test_malformed_host_requests_are_decode_errors(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_host_request(data)


def test_malformed_replies_and_values() -> None:
    with pytest.raises(DecodeError):
        DeviceReply.decode(b"\x10")
    with pytest.raises(DecodeError):
        DeviceReply.decode(b"\xa6")
    with pytest.raises(EncodeError):
        DeviceReply(TaskStatus.ASYNC_RESULT, b"").encode()
    with pytest.raises(EncodeError):
        Ack(256).encode()


def test_status_meanings_are_russian() -> None:
    assert TaskStatus.OVERFLOW.meaning == "переполнение буфера заданий"


Wire = Callable[[bytes], bytes]


def run(transaction: HostTransaction, wire: Wire, max_steps: int = 500) -> tuple[Step, int]:
    """Pump a transaction over ``wire`` (host bytes → device bytes); returns the final step and sends."""
    deframer = Deframer()
    step: Step = transaction.start()
    sends = 0
    for _ in range(max_steps):
        if isinstance(step, Completed | Failed):
            if isinstance(step, Completed):
                wire(step.ack)
            return step, sends
        assert isinstance(step, Send)
        sends += 1
        events = deframer.feed(wire(step.frame))
        if not events:
            step = transaction.timeout()
            continue
        for event in events:
            step = transaction.receive(event)
            if not isinstance(step, Wait):
                break
        if isinstance(step, Wait):
            step = transaction.timeout()
    raise AssertionError("transaction did not finish")


def test_sync_result_then_ack_empties_the_buffer() -> None:
    device = DeviceTaskBuffer(echo)
    wire = _device_wire(device)
    step, sends = run(HostTransaction(COMMAND_3F, task_id=5, packet_ids=IdCounter()), wire)
    assert (
        isinstance(step, Completed) and step.status is TaskStatus.RESULT and step.result == b"D" + COMMAND_3F
    )
    assert sends == 1
    # The ACK removed task 5: asking for it again says "not found".
    reply = Deframer().feed(wire(encode_packet(9, Req(5).encode())))
    assert reply == [Packet(9, bytes((TaskStatus.NOT_FOUND,)))]


def test_slow_task_is_polled_with_req_until_the_result() -> None:
    device = DeviceTaskBuffer(echo, slow_polls=3)
    step, sends = run(HostTransaction(COMMAND_3F, task_id=1, packet_ids=IdCounter()), _device_wire(device))
    assert isinstance(step, Completed) and step.result == b"D" + COMMAND_3F
    assert sends == 1 + 4  # ADD (A1), three REQs answered A2, the REQ that gets A3


def test_polling_is_bounded() -> None:
    device = DeviceTaskBuffer(echo, slow_polls=1000)
    step, _ = run(
        HostTransaction(COMMAND_3F, task_id=1, packet_ids=IdCounter(), max_polls=5), _device_wire(device)
    )
    assert isinstance(step, Failed) and step.kind is FailureKind.NO_ANSWER


def test_error_result_is_completed_with_status_a4() -> None:
    device = DeviceTaskBuffer(lambda _: TaskResult(False, b"\x55\x67\x00"))
    step, _ = run(HostTransaction(COMMAND_3F, task_id=1, packet_ids=IdCounter()), _device_wire(device))
    assert isinstance(step, Completed) and step.status is TaskStatus.ERROR and step.result == b"\x55\x67\x00"


def _first_answer_spoiled(spoil: Callable[[bytes], bytes]) -> tuple[Wire, list[bytes]]:
    """A device whose first answer is passed through ``spoil``; returns the wire and executed commands."""
    executed: list[bytes] = []

    def execute(command: bytes) -> TaskResult:
        executed.append(command)
        return echo(command)

    device = DeviceTaskBuffer(execute)
    spoiled = [False]

    def wire(frame: bytes) -> bytes:
        out = _feed(device, frame)
        if out and not spoiled[0]:
            spoiled[0] = True
            return spoil(out)
        return out

    return wire, executed


def test_one_damaged_answer_is_requested_again() -> None:
    wire, executed = _first_answer_spoiled(_damage)
    step, sends = run(HostTransaction(COMMAND_3F, task_id=1, packet_ids=IdCounter()), wire)
    assert isinstance(step, Completed) and step.result == b"D" + COMMAND_3F
    assert sends == 2  # the ADD, then the empty retransmit request
    assert len(executed) == 1  # the device repeated its cached answer


def test_persistent_damage_is_a_checksum_failure() -> None:
    device = DeviceTaskBuffer(echo)

    def wire(frame: bytes) -> bytes:
        out = _feed(device, frame)
        return _damage(out) if out else out

    step, _ = run(HostTransaction(COMMAND_3F, task_id=1, packet_ids=IdCounter(), max_repeats=2), wire)
    assert isinstance(step, Failed) and step.kind is FailureKind.CHECKSUM


def test_silence_is_no_answer_after_bounded_repeats() -> None:
    step, sends = run(
        HostTransaction(COMMAND_3F, task_id=1, packet_ids=IdCounter(), max_repeats=2), lambda _: b""
    )
    assert isinstance(step, Failed) and step.kind is FailureKind.NO_ANSWER
    assert sends == 3


def test_lost_answer_repeat_is_not_executed_twice() -> None:
    # The answer never arrives: the host repeats the same packet after its timeout.
    wire, executed = _first_answer_spoiled(lambda _: b"")
    step, sends = run(HostTransaction(COMMAND_3F, task_id=1, packet_ids=IdCounter()), wire)
    assert isinstance(step, Completed) and sends == 2 and len(executed) == 1


def test_device_retransmit_request_makes_the_host_repeat() -> None:
    transaction = HostTransaction(COMMAND_3F, task_id=1, packet_ids=IdCounter())
    first = transaction.start()
    assert transaction.receive(Packet(1, b"")) == first
    assert transaction.receive(Packet(0x30, b"\xa3stale")) == Wait()


def test_async_result_for_our_task_completes_and_others_are_ignored() -> None:
    transaction = HostTransaction(COMMAND_3F, task_id=7, packet_ids=IdCounter())
    transaction.start()
    assert transaction.receive(Packet(ASYNC_PACKET_ID, bytes((0xA6, 8)) + b"x")) == Wait()
    assert transaction.receive(Packet(ASYNC_PACKET_ID, b"\x01")) == Wait()
    step = transaction.receive(Packet(ASYNC_PACKET_ID, bytes((0xA6, 7)) + b"ok"))
    assert isinstance(step, Completed) and step.result == b"ok"


def test_overflow_and_illegal_value_fail_typed() -> None:
    device = DeviceTaskBuffer(echo, capacity=1)
    wire = _device_wire(device)
    wire(encode_packet(50, Add(9, COMMAND_3F, AddFlag(0)).encode()))  # a task nobody ACKs
    step, _ = run(HostTransaction(COMMAND_3F, task_id=1, packet_ids=IdCounter()), wire)
    assert (
        isinstance(step, Failed) and step.kind is FailureKind.REFUSED and step.status is TaskStatus.OVERFLOW
    )
    transaction = HostTransaction(COMMAND_3F, task_id=1, packet_ids=IdCounter())
    transaction.start()
    step = transaction.receive(Packet(1, bytes((TaskStatus.ILLEGAL_VALUE,))))
    assert isinstance(step, Failed) and step.kind is FailureKind.PROTOCOL


def test_existing_task_id_is_polled_and_abort_clears_the_buffer() -> None:
    device = DeviceTaskBuffer(echo)
    wire = _device_wire(device)
    wire(encode_packet(60, Add(1, b"\x00\x00\x45", AddFlag(0)).encode()))
    # Same task id again (e.g. our own ADD repeated): B2, then REQ fetches the stored result.
    step, sends = run(HostTransaction(COMMAND_3F, task_id=1, packet_ids=IdCounter()), wire)
    assert isinstance(step, Completed) and sends == 2
    wire(encode_packet(61, Add(2, COMMAND_3F, AddFlag(0)).encode()))
    assert Deframer().feed(wire(encode_packet(62, Abort().encode()))) == [Packet(62, b"\xa3")]  # §3.2
    assert Deframer().feed(wire(encode_packet(63, Req(2).encode()))) == [Packet(63, b"\xb3")]


def test_device_answers_damaged_host_packets_with_a_retransmit_request() -> None:
    device = DeviceTaskBuffer(echo)
    frame = bytearray(encode_packet(4, Add(1, COMMAND_3F).encode()))
    frame[-1] ^= 0x01
    assert _feed(device, bytes(frame)) == encode_retransmit_request(4)
    assert _feed(device, encode_packet(5, b"\x99")) == encode_packet(5, b"\xb4")  # unknown request
    assert _feed(device, encode_packet(ASYNC_PACKET_ID, b"\xc4")) == b""  # not a host packet id


def test_ack_add_acknowledges_finished_tasks_and_adds() -> None:
    device = DeviceTaskBuffer(echo, capacity=1)
    wire = _device_wire(device)
    wire(encode_packet(1, Add(1, COMMAND_3F).encode()))
    out = wire(encode_packet(2, Add(2, COMMAND_3F, and_ack=True).encode()))
    assert Deframer().feed(out) == [Packet(2, b"\xa3D" + COMMAND_3F)]


def _feed(device: DeviceTaskBuffer, frame: bytes) -> bytes:
    return b"".join(device.receive(event) for event in Deframer().feed(frame))


def _device_wire(device: DeviceTaskBuffer) -> Wire:
    return lambda frame: _feed(device, frame)


def _damage(frame: bytes) -> bytes:
    """Flip bits of the last byte (bit 6 always changes), so the CRC or its escape is wrong."""
    return frame[:-1] + bytes(((frame[-1] ^ 0x55) & 0x7F,))


def test_host_asking_async_waits_for_a6_and_reqs_only_after_a_timeout() -> None:
    transaction = HostTransaction(
        COMMAND_3F, task_id=3, packet_ids=IdCounter(), flags=AddFlag.NEED_RESULT | AddFlag.WAIT_ASYNC
    )
    (add,) = Deframer().feed(transaction.start().frame)
    assert isinstance(add, Packet) and add.data[1] == 0x05  # flags: NeedResult | async
    assert transaction.receive(Packet(1, b"\xa2")) == Wait()  # no REQ: the result comes unasked
    req = transaction.timeout()
    assert isinstance(req, Send) and Deframer().feed(req.frame) == [Packet(2, Req(3).encode())]
    assert transaction.receive(Packet(2, b"\xa2")) == Wait()
    step = transaction.receive(Packet(ASYNC_PACKET_ID, b"\xa6\x03D"))
    assert isinstance(step, Completed) and step.status is TaskStatus.ASYNC_RESULT and step.result == b"D"


def test_device_async_result_is_resent_on_ticks_until_acknowledged() -> None:
    device = DeviceTaskBuffer(echo)
    add = Packet(1, Add(4, COMMAND_3F, AddFlag.NEED_RESULT | AddFlag.WAIT_ASYNC).encode())
    out = Deframer().feed(device.receive(add, now=10.0))
    result = Packet(ASYNC_PACKET_ID, b"\xa6\x04D" + COMMAND_3F)
    assert out == [Packet(1, b"\xa2"), result]
    assert device.tick(10.1) == b""  # too soon to repeat
    assert Deframer().feed(device.tick(10.6)) == [result]
    assert device.receive(Packet(2, Ack(4).encode()), now=10.7) == b""
    assert device.tick(20.0) == b""


def test_slow_async_task_finishes_on_ticks() -> None:
    device = DeviceTaskBuffer(echo, slow_polls=2)
    assert Deframer().feed(device.receive(Packet(1, Add(5, COMMAND_3F, AddFlag.WAIT_ASYNC).encode()))) == [
        Packet(1, b"\xa2")
    ]
    assert device.tick(1.0) == b""
    assert Deframer().feed(device.tick(1.1)) == [Packet(ASYNC_PACKET_ID, b"\xa6\x05D" + COMMAND_3F)]
