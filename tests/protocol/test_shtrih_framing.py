"""Shtrih standard framing: golden frames from specs §1.2 and a deframer that survives any split."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.kkt.errors import EncodeError
from protocol.kkt.shtrih.framing import (
    ACK,
    ENQ,
    NAK,
    STX,
    BadChecksum,
    Control,
    Deframer,
    Frame,
    Garbage,
    encode_frame,
    lrc,
)

GOLDEN = [
    ("10 1E 00 00 00", "02 05 10 1E 00 00 00 0B"),  # 10h short status, password 30
    ("FF 01 1E 00 00 00", "02 06 FF 01 1E 00 00 00 E6"),  # FF01 ФН status
    ("E0 01 00 00 00", "02 05 E0 01 00 00 00 E4"),  # E0h open shift, password 1
    ("41 1E 00 00 00", "02 05 41 1E 00 00 00 5A"),  # 41h Z-report, password 30
]
FF01_ANSWER = bytes.fromhex(
    "02 21 FF 01 00 03 00 00 01 00 18 05 11 09 1E 39 39 39 39 30 37 38 39 30 30 30 31 32 33 34 35 D2 04 00 00 17"
)
# Bytes that cannot start anything: garbage placed *before* a frame must not contain STX/ENQ/ACK/NAK.
NOISE = st.binary(max_size=12).map(lambda b: bytes(x for x in b if x not in (STX, ENQ, ACK, NAK)))
PAYLOADS = st.binary(min_size=1, max_size=255)


@pytest.mark.parametrize(("payload", "frame"), GOLDEN)
def test_golden_request_frames(payload: str, frame: str) -> None:
    assert encode_frame(bytes.fromhex(payload)) == bytes.fromhex(frame)
    assert Deframer().feed(bytes.fromhex(frame)) == [Frame(bytes.fromhex(payload))]


def test_golden_ff01_answer_deframes_with_its_lrc() -> None:
    [event] = Deframer().feed(FF01_ANSWER)
    assert isinstance(event, Frame)
    assert event.payload[:3] == b"\xff\x01\x00" and len(event.payload) == 0x21
    assert lrc(event.payload) == 0x17


def test_encode_rejects_empty_and_oversized_payloads() -> None:
    with pytest.raises(EncodeError):
        encode_frame(b"")
    with pytest.raises(EncodeError):
        encode_frame(bytes(256))


@given(PAYLOADS, NOISE, st.binary(max_size=8))
def test_every_split_with_garbage_around_yields_the_frame(
    payload: bytes, before: bytes, after: bytes
) -> None:
    stream = before + encode_frame(payload) + after
    for cut in range(len(stream) + 1):
        deframer = Deframer()
        events = deframer.feed(stream[:cut]) + deframer.feed(stream[cut:])
        assert [e for e in events if isinstance(e, Frame)][:1] == [Frame(payload)]
        frames_first = [e for e in events if not isinstance(e, Garbage)]
        assert frames_first[0] == Frame(payload)


def test_garbage_is_counted_and_control_bytes_reported_in_order() -> None:
    stream = b"\xff\xff" + bytes((NAK,)) + b"\x99" + encode_frame(b"\x10\x00") + bytes((ACK,))
    assert Deframer().feed(stream) == [Garbage(2), Control(NAK), Garbage(1), Frame(b"\x10\x00"), Control(ACK)]


def test_bad_lrc_is_reported_and_the_next_frame_still_decodes() -> None:
    bad = bytearray(encode_frame(b"\x10\x1e\x00\x00\x00"))
    bad[-1] ^= 0xFF
    events = Deframer().feed(bytes(bad) + encode_frame(b"\x11"))
    assert events == [BadChecksum(b"\x10\x1e\x00\x00\x00", 0x0B, 0x0B ^ 0xFF), Frame(b"\x11")]


def test_zero_length_is_noise_and_resyncs_on_the_following_stx() -> None:
    events = Deframer().feed(b"\x02\x00" + encode_frame(b"\xfc"))
    assert events == [Garbage(2), Frame(b"\xfc")]


def test_bytes_wanted_tracks_the_partial_frame_and_reset_forgets_it() -> None:
    deframer = Deframer()
    frame = encode_frame(b"\x10\x1e\x00\x00\x00")
    assert deframer.bytes_wanted() == 1
    deframer.feed(frame[:2])
    assert deframer.bytes_wanted() == len(frame) - 2 and deframer.in_frame
    deframer.reset()
    assert not deframer.in_frame
    assert deframer.feed(frame) == [Frame(b"\x10\x1e\x00\x00\x00")]


@given(st.lists(st.binary(max_size=64), max_size=8))
def test_fuzzed_deframer_never_raises(chunks: list[bytes]) -> None:
    deframer = Deframer()
    for chunk in chunks:
        for event in deframer.feed(chunk):
            assert isinstance(event, Frame | BadChecksum | Control | Garbage)
