"""Shtrih alternative low level: CRC-16/CCITT-FALSE, byte stuffing and a resyncing deframer."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.kkt.errors import EncodeError
from protocol.kkt.shtrih.altlink import (
    ALT_STX,
    AltCorrupted,
    AltDeframer,
    AltFrame,
    AltGarbage,
    crc16_ccitt_false,
    encode_alt_frame,
)

NUMBERS = st.integers(0, 0xFFFF)
DATA = st.binary(min_size=1, max_size=300)


def test_crc_check_value() -> None:
    assert crc16_ccitt_false(b"123456789") == 0x29B1


def test_ping_and_empty_numbered_frame_sizes() -> None:
    assert len(encode_alt_frame(None)) == 5
    assert AltDeframer().feed(encode_alt_frame(None)) == [AltFrame(None, b"")]
    assert AltDeframer().feed(encode_alt_frame(7)) == [AltFrame(7, b"")]


def test_stuffing_hides_every_start_byte_after_the_first() -> None:
    frame = encode_alt_frame(0x8F9F, b"\x8f\x9f\x81\x83")
    assert frame[0] == ALT_STX and ALT_STX not in frame[1:]
    assert b"\x9f\x81" in frame and b"\x9f\x83" in frame
    assert AltDeframer().feed(frame) == [AltFrame(0x8F9F, b"\x8f\x9f\x81\x83")]


@pytest.mark.parametrize("number", [-1, 0x10000])
def test_encode_rejects_bad_numbers(number: int) -> None:
    with pytest.raises(EncodeError):
        encode_alt_frame(number, b"\x10")


@given(NUMBERS, DATA, st.binary(max_size=8).map(lambda b: b.replace(b"\x8f", b"")), st.binary(max_size=8))
def test_round_trip_at_every_split_with_garbage(
    number: int, data: bytes, before: bytes, after: bytes
) -> None:
    stream = before + encode_alt_frame(number, data) + after
    for cut in range(0, len(stream) + 1, max(1, len(stream) // 16)):
        deframer = AltDeframer()
        events = deframer.feed(stream[:cut]) + deframer.feed(stream[cut:])
        frames = [e for e in events if isinstance(e, AltFrame)]
        assert frames == [AltFrame(number, data)]


def test_corruptions_are_reported_and_resync_follows() -> None:
    good = encode_alt_frame(1, b"\x10\x00")
    flipped = bytearray(good)
    flipped[-1] ^= 0x01
    bad_escape = bytes((ALT_STX, 0x9F, 0x00))
    length_one = bytes((ALT_STX, 0x01, 0x00))
    cut_short = good[:4]
    for broken in (bytes(flipped), bad_escape, length_one, cut_short):
        events = AltDeframer().feed(broken + good)
        assert isinstance(events[0], AltCorrupted), broken.hex()
        assert events[-1] == AltFrame(1, b"\x10\x00")


def test_garbage_between_frames_is_counted() -> None:
    assert AltDeframer().feed(b"\x01\x02" + encode_alt_frame(None)) == [AltGarbage(2), AltFrame(None, b"")]


@given(st.lists(st.binary(max_size=64), max_size=8))
def test_fuzzed_alt_deframer_never_raises(chunks: list[bytes]) -> None:
    deframer = AltDeframer()
    for chunk in chunks:
        deframer.feed(chunk)
