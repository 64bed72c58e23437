"""ATOL v3 link layer: golden frames, escaping, CRC, and a deframer that survives any split or noise."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.kkt.atol.link import (
    ASYNC_PACKET_ID,
    BadPacket,
    Deframer,
    Garbage,
    LinkEvent,
    Packet,
    crc8,
    encode_packet,
    encode_retransmit_request,
    escape,
    next_packet_id,
)
from protocol.kkt.errors import EncodeError

GOLDEN = [
    (1, b"", "FE 00 00 01 9D"),
    (ASYNC_PACKET_ID, bytes.fromhex("A6 57 55 00 00"), "FE 05 00 F0 A6 57 55 00 00 FD EE"),
    (1, bytes.fromhex("C1 01 01 00 00 3F"), "FE 06 00 01 C1 01 01 00 00 3F E7"),
    (2, bytes.fromhex("C1 01 02 00 00 A4 30"), "FE 07 00 02 C1 01 02 00 00 A4 30 5B"),
    (3, bytes.fromhex("C2 01"), "FE 02 00 03 C2 01 C3"),
]

packet_ids = st.integers(0, 0xFF).filter(lambda i: i not in (0xFE, 0xFD))
payloads = st.binary(max_size=300) | st.lists(
    st.sampled_from([0xFE, 0xFD, 0xEE, 0xED, 0x00]), max_size=40
).map(bytes)


def _packets(events: list[LinkEvent]) -> list[Packet]:
    return [e for e in events if isinstance(e, Packet)]


def _feed_in_pieces(data: bytes, cuts: list[int]) -> list[LinkEvent]:
    deframer = Deframer()
    events: list[LinkEvent] = []
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        events += deframer.feed(data[start:cut])
        start = cut
    return events


@pytest.mark.parametrize(("packet_id", "data", "frame"), GOLDEN)
def test_golden_frames_encode_and_decode(packet_id: int, data: bytes, frame: str) -> None:
    wire = bytes.fromhex(frame)
    assert encode_packet(packet_id, data) == wire
    assert Deframer().feed(wire) == [Packet(packet_id, data)]


def test_crc8_is_poly_31_init_ff_over_id_and_data() -> None:
    assert crc8(b"\x01") == 0x9D
    assert crc8(bytes.fromhex("F0 A6 57 55 00 00")) == 0xFE  # the CRC that has to be escaped


def test_escaping_and_length_count_unescaped_bytes() -> None:
    assert escape(bytes((0xFE, 0xFD, 0x01))) == bytes.fromhex("FD EE FD ED 01")
    frame = encode_packet(5, bytes((0xFE, 0xFD)))
    assert frame[1:3] == b"\x02\x00"  # LEN of the unescaped DATA
    assert frame[4:8] == bytes.fromhex("FD EE FD ED")


def test_long_data_splits_len_into_7_bit_groups() -> None:
    frame = encode_packet(7, bytes(300))
    assert frame[1] == 300 & 0x7F and frame[2] == 300 >> 7
    assert Deframer().feed(frame) == [Packet(7, bytes(300))]


def test_retransmit_request_is_an_empty_packet() -> None:
    (event,) = Deframer().feed(encode_retransmit_request(0x42))
    assert isinstance(event, Packet) and event.is_retransmit_request and event.packet_id == 0x42


def test_host_packet_ids_wrap_after_df() -> None:
    assert next_packet_id(0) == 1
    assert next_packet_id(0xDE) == 0xDF
    assert next_packet_id(0xDF) == 0


@pytest.mark.parametrize("bad_id", [0xFE, 0xFD, -1, 256])
def test_unencodable_packet_ids_are_refused(bad_id: int) -> None:
    with pytest.raises(EncodeError):
        encode_packet(bad_id, b"x")


def test_bad_crc_is_reported_with_the_packet_id() -> None:
    frame = bytearray(encode_packet(9, b"\x10\x20"))
    frame[-1] ^= 0x01
    (event,) = Deframer().feed(bytes(frame))
    assert isinstance(event, BadPacket) and event.packet_id == 9 and "CRC" in event.reason


def test_invalid_escape_is_a_bad_packet_then_resync() -> None:
    wire = bytes.fromhex("FE 02 00 04 FD 01 00 00") + encode_packet(5, b"ok")
    events = Deframer().feed(wire)
    assert isinstance(events[0], BadPacket) and events[0].packet_id == 4
    assert events[-1] == Packet(5, b"ok")


def test_truncated_packet_is_garbage_and_the_next_fe_starts_over() -> None:
    good = encode_packet(3, b"abc")
    events = Deframer().feed(good[:5] + good)
    assert events == [Garbage(5), Packet(3, b"abc")]


def test_impossible_len_byte_means_the_fe_was_noise() -> None:
    events = Deframer().feed(bytes.fromhex("FE 80") + encode_packet(1, b"z"))
    assert events == [Garbage(2), Packet(1, b"z")]


def test_bytes_wanted_never_reads_past_the_end_of_a_packet() -> None:
    for data in (b"", b"\xfe\xfd\xfe", bytes(range(200))):
        frame = encode_packet(0x11, data)
        deframer = Deframer()
        position = 0
        while position < len(frame):
            wanted = deframer.bytes_wanted()
            assert 0 < wanted <= len(frame) - position
            events = deframer.feed(frame[position : position + wanted])
            position += wanted
        assert events == [Packet(0x11, data)]


@settings(max_examples=300, deadline=None)
@given(packet_ids, payloads)
def test_round_trip_any_data(packet_id: int, data: bytes) -> None:
    assert Deframer().feed(encode_packet(packet_id, data)) == [Packet(packet_id, data)]


@settings(max_examples=150, deadline=None)
@given(packet_ids, payloads, st.binary(max_size=20).map(lambda b: b.replace(b"\xfe", b"")))
def test_every_split_offset_with_garbage_around(packet_id: int, data: bytes, noise: bytes) -> None:
    frame = encode_packet(packet_id, data)
    wire = noise + frame + noise
    for cut in range(len(wire) + 1):
        events = _feed_in_pieces(wire, [cut])
        assert _packets(events) == [Packet(packet_id, data)]
        assert sum(e.count for e in events if isinstance(e, Garbage)) <= 2 * len(noise)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(packet_ids, st.binary(max_size=30)), min_size=1, max_size=5), st.data())
def test_back_to_back_packets_in_random_pieces(frames: list[tuple[int, bytes]], data: st.DataObject) -> None:
    wire = b"".join(encode_packet(i, d) for i, d in frames)
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=8))
    assert _packets(_feed_in_pieces(wire, cuts)) == [Packet(i, d) for i, d in frames]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=10))
def test_fuzzed_input_never_raises_and_recovers(chunks: list[bytes]) -> None:
    deframer = Deframer()
    for chunk in chunks:
        for event in deframer.feed(chunk):
            assert isinstance(event, Packet | BadPacket | Garbage)
    # Whatever came before, a clean packet after a fresh FE is always recognised.
    assert _packets(deframer.feed(encode_packet(0x21, b"\xfe after noise"))) == [
        Packet(0x21, b"\xfe after noise")
    ]
