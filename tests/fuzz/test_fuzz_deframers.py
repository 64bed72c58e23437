"""Fuzz: the three deframers that cut a register's byte stream into frames.

Property: any byte stream, cut anywhere, is taken without an exception; a well-formed frame after
noise (without the start byte, which would rightly open a frame) and delivered in arbitrary
pieces comes out as exactly that frame.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from protocol.kkt.atol import link as atol_link
from protocol.kkt.shtrih import altlink, framing

sys.path.insert(0, str(Path(__file__).parent))
from fuzzkit import FUZZ, chunked_streams, split_at


@dataclass(frozen=True)
class Target:
    deframer: Callable[[], Any]
    start_byte: int
    frame: Callable[[int, bytes], tuple[bytes, object]]  # (number, data) → (wire bytes, the event expected)


def _shtrih(number: int, data: bytes) -> tuple[bytes, object]:
    payload = bytes((number & 0xFF,)) + data[:254]  # LEN is one byte; a frame carries at least CMD
    return framing.encode_frame(payload), framing.Frame(payload)


def _alt(number: int, data: bytes) -> tuple[bytes, object]:
    return altlink.encode_alt_frame(number, data), altlink.AltFrame(number, data)


def _atol(number: int, data: bytes) -> tuple[bytes, object]:
    packet_id = number & 0xFF if number & 0xFF not in (atol_link.STX, atol_link.ESC) else 0
    return atol_link.encode_packet(packet_id, data), atol_link.Packet(packet_id, data)


TARGETS = {
    "shtrih": Target(framing.Deframer, framing.STX, _shtrih),
    "shtrih-alt": Target(altlink.AltDeframer, altlink.ALT_STX, _alt),
    "atol": Target(atol_link.Deframer, atol_link.STX, _atol),
}
targets = st.sampled_from(sorted(TARGETS))


@FUZZ
@given(targets, chunked_streams)
def test_deframer_takes_any_stream(name: str, chunks: list[bytes]) -> None:
    deframer = TARGETS[name].deframer()
    for chunk in chunks:
        events = deframer.feed(chunk)
        assert isinstance(events, list)
        if hasattr(deframer, "bytes_wanted"):
            assert deframer.bytes_wanted() >= 1


@FUZZ
@given(targets, st.integers(0, 0xFFFF), st.binary(max_size=300), st.binary(max_size=16), st.lists(st.integers(0, 700), max_size=6))
def test_a_frame_survives_noise_before_it_and_any_split(
    name: str, number: int, data: bytes, noise: bytes, cuts: list[int]
) -> None:
    target = TARGETS[name]
    wire, expected = target.frame(number, data)
    deframer = target.deframer()
    stream = noise.replace(bytes((target.start_byte,)), b"") + wire
    events = [event for chunk in split_at(stream, cuts) for event in deframer.feed(chunk)]
    assert events[-1] == expected
