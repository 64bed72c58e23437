"""Fuzz: Shtrih-M bytes from outside (framing, ENQ/ACK link, alternative link, message layouts).

Property: deframers and link machines never raise on any byte stream; a message decoder raises
only :class:`~protocol.kkt.errors.DecodeError` (its subclasses included); what decodes, encodes
back to bytes that decode to the same value; encoded frames survive any split of the stream.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from protocol.kkt.errors import DecodeError, EncodeError
from protocol.kkt.shtrih.link import Deliver, DeviceLink, Execute, Fail, HostExchange, Send, Wait
from protocol.kkt.shtrih.messages import (
    COMMANDS,
    DEVICE_TYPE,
    UNCONFIRMED_COUNT,
    ErrorAnswer,
    code_bytes,
    find_command,
)

sys.path.insert(0, str(Path(__file__).parent))
from fuzzkit import FUZZ, chunked_streams

commands = st.sampled_from(sorted(COMMANDS.values(), key=lambda c: c.code))


@FUZZ
@given(commands, chunked_streams)
def test_host_exchange_takes_any_answer_bytes(command, chunks: list[bytes]) -> None:  # type: ignore[no-untyped-def]
    exchange = HostExchange(code_bytes(command.code) + b"\x1e\x00\x00\x00")
    actions = exchange.start()
    for chunk in chunks:
        actions = exchange.receive(chunk)
        assert all(isinstance(action, Send | Wait | Deliver | Fail) for action in actions)
        if exchange.finished:
            break
        actions += exchange.timeout() if not chunk else []
    delivered = [a for a in actions if isinstance(a, Deliver)]
    for action in delivered:
        assert find_command(action.payload).code == command.code


@FUZZ
@given(chunked_streams)
def test_device_link_takes_any_request_bytes(chunks: list[bytes]) -> None:
    link = DeviceLink(stray_ff_after_ack=True)
    for chunk in chunks:
        for action in link.receive(chunk):
            assert isinstance(action, Send | Execute)
            if isinstance(action, Execute):
                link.answer(action.payload[:1] + b"\x37")


@FUZZ
@given(commands, st.binary(max_size=80))
# A 4-byte unconfirmed count past 65535 decoded, but its encoder only wrote 2 bytes (struct.error).
@example(UNCONFIRMED_COUNT, b"\x00\x00\x00\x00\x01")
# 98h is not a cp1251 character: text decodes with U+FFFD in its place, which cannot be written back.
@example(DEVICE_TYPE, b"\x00\x00\x00\x00\x00\x00\x00\x98")
def test_answer_decoders_raise_only_decode_errors_and_round_trip(command, body: bytes) -> None:  # type: ignore[no-untyped-def]
    payload = code_bytes(command.code) + body
    try:
        answer = command.decode_answer(payload)
    except DecodeError:
        return
    if isinstance(answer, ErrorAnswer):
        assert answer.code == body[0] != 0
        return
    try:
        encoded = command.encode_answer(answer)
    except EncodeError:
        # Text decoding is lossy on purpose (a bad byte must not fail the whole status); only what
        # it replaced may be refused by the encoder, and then with the typed error.
        assert "\ufffd" in repr(answer)
        return
    assert command.decode_answer(encoded) == answer


@FUZZ
@given(commands, st.binary(max_size=80))
def test_request_decoders_raise_only_decode_errors_and_round_trip(command, body: bytes) -> None:  # type: ignore[no-untyped-def]
    try:
        request = command.decode_request(code_bytes(command.code) + body)
    except DecodeError:
        return
    assert command.decode_request(command.encode_request(request)) == request


@FUZZ
@given(st.binary(max_size=8))
def test_find_command_raises_only_decode_errors(payload: bytes) -> None:
    try:
        command = find_command(payload)
    except DecodeError:
        return
    assert payload.startswith(code_bytes(command.code))
