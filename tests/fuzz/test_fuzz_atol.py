"""Fuzz: ATOL v3 bytes from outside (link deframer, task buffer, command layouts).

Property: the deframer and both task-buffer roles never raise on any byte stream; request and
answer decoders raise only :class:`~protocol.kkt.errors.DecodeError` or, for an answer carrying
the register's refusal, :class:`~protocol.kkt.errors.DeviceError`; what decodes, encodes back to
bytes that decode to the same value; encoded packets survive any split of the stream.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from protocol.kkt.atol.link import Deframer
from protocol.kkt.atol.messages import COMMANDS, Command, decode_request, encode_bcd, encode_request
from protocol.kkt.atol.task_device import DeviceTaskBuffer, TaskResult
from protocol.kkt.atol.task_host import Completed, Failed, HostTransaction, IdCounter, Send, Wait
from protocol.kkt.atol.tasks import DeviceReply, decode_host_request
from protocol.kkt.errors import DecodeError, DeviceError

sys.path.insert(0, str(Path(__file__).parent))
from fuzzkit import FUZZ, chunked_streams

command_types = st.sampled_from(sorted(COMMANDS.values(), key=lambda cls: cls.CODE))
packet_ids = st.integers(0, 0xFF).filter(lambda i: i not in (0xFE, 0xFD))


@FUZZ
@given(st.binary(max_size=40), chunked_streams)
def test_host_transaction_takes_any_device_bytes(command: bytes, chunks: list[bytes]) -> None:
    transaction = HostTransaction(command, task_id=7, packet_ids=IdCounter())
    transaction.start()
    deframer = Deframer()
    for chunk in chunks:
        for event in deframer.feed(chunk):
            step = transaction.receive(event)
            assert isinstance(step, Send | Wait | Completed | Failed)
        if not chunk and not transaction.done:
            transaction.timeout()


@FUZZ
@given(chunked_streams)
# A damaged packet with ID FD was answered with a retransmit request for FD, which cannot be encoded.
@example([b"\xfe", b"\x00\x00\xfd", b"\x00"])
def test_device_task_buffer_takes_any_host_bytes(chunks: list[bytes]) -> None:
    buffer = DeviceTaskBuffer(lambda command: TaskResult(True, command[:4]), capacity=4, slow_polls=1)
    deframer = Deframer()
    for chunk in chunks:
        for event in deframer.feed(chunk):
            reply = buffer.receive(event)
            if reply:  # what the device sends back is always one well-formed packet
                assert len(Deframer().feed(reply)) == 1


@FUZZ
@given(st.binary(max_size=40))
def test_task_buffer_decoders_raise_only_decode_errors_and_round_trip(data: bytes) -> None:
    try:
        request = decode_host_request(data)
    except DecodeError:
        pass
    else:
        assert decode_host_request(request.encode()) == request
    try:
        reply = DeviceReply.decode(data)
    except DecodeError:
        pass
    else:
        assert DeviceReply.decode(reply.encode()) == reply


@FUZZ
@given(command_types, st.binary(max_size=60))
def test_answer_decoders_raise_only_typed_errors_and_round_trip(cls: type[Command[Any]], data: bytes) -> None:
    command = cls()
    try:
        answer = command.decode_answer(data)
    except DeviceError as refusal:
        assert refusal.code != 0
        return
    except DecodeError:
        return
    assert command.decode_answer(command.encode_answer(answer)) == answer


@FUZZ
@given(st.binary(max_size=40))
def test_request_decoder_raises_only_decode_errors_and_round_trips(data: bytes) -> None:
    try:
        password, command = decode_request(data)
    except DecodeError:
        return
    assert decode_request(encode_request(command, password)) == (password, command)


@FUZZ
@given(command_types, st.integers(0, 9999), st.binary(max_size=40))
def test_known_requests_decode_or_raise_decode_errors_and_round_trip(
    cls: type[Command[Any]], password: int, params: bytes
) -> None:
    # Random bytes seldom spell a known code after a BCD password: build that prefix, fuzz the rest.
    data = encode_bcd(password, 2) + cls.CODE + params
    try:
        decoded = decode_request(data)
    except DecodeError:
        return
    assert decoded[0] == password and type(decoded[1]) is cls
    assert decode_request(encode_request(decoded[1], password)) == decoded
