"""Shtrih-M standard link framing: ``STX | LEN | CMD(1–2) | PARAMS | LRC`` (specs §1.2).

LEN counts the command code and parameters; the LRC is the XOR of LEN and every payload byte.
The single control bytes ENQ/ACK/NAK travel between frames. :class:`Deframer` turns a byte
stream cut at arbitrary points into events and never raises: damaged frames and stray bytes
are reported as values so the link state machine decides what to do about them.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.kkt.errors import EncodeError

STX = 0x02
ENQ = 0x05
ACK = 0x06
NAK = 0x15
CONTROL_BYTES = frozenset((ENQ, ACK, NAK))
MAX_PAYLOAD = 255


def lrc(payload: bytes) -> int:
    """XOR of LEN and the payload: the checksum of a frame carrying ``payload``."""
    check = len(payload)
    for byte in payload:
        check ^= byte
    return check


def encode_frame(payload: bytes) -> bytes:
    """``payload`` is ``CMD | PARAMS`` (request) or ``CMD | ERR | DATA`` (answer)."""
    if not payload:
        raise EncodeError("a Shtrih frame needs at least the command code")
    if len(payload) > MAX_PAYLOAD:
        raise EncodeError(f"payload of {len(payload)} bytes exceeds the one-byte LEN ({MAX_PAYLOAD})")
    return bytes((STX, len(payload))) + payload + bytes((lrc(payload),))


@dataclass(frozen=True, slots=True)
class Frame:
    """A complete frame with a good LRC."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class BadChecksum:
    """A complete frame whose LRC does not match; the receiver should answer NAK."""

    payload: bytes
    expected: int
    received: int


@dataclass(frozen=True, slots=True)
class Control:
    """A single ENQ, ACK or NAK byte seen between frames."""

    byte: int


@dataclass(frozen=True, slots=True)
class Garbage:
    """``count`` bytes between frames that are neither STX nor a control byte (e.g. TCP's stray FF)."""

    count: int


FrameEvent = Frame | BadChecksum | Control | Garbage


class Deframer:
    """Incremental deframer: feed any split of the byte stream, get events in stream order.

    A frame whose LEN is 0 cannot exist, so its STX is treated as garbage and scanning resumes
    at the next byte. A frame with a bad LRC is dropped whole (reported as :class:`BadChecksum`):
    the protocol recovers by NAK + ENQ, not by rescanning inside a damaged frame.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def reset(self) -> None:
        """Forget a partial frame (after a timeout: the sender will repeat from the start)."""
        self._buffer.clear()

    @property
    def in_frame(self) -> bool:
        return bool(self._buffer)

    def bytes_wanted(self) -> int:
        """How many more bytes complete the current item (1 between frames)."""
        if len(self._buffer) < 2:
            return 1
        return self._buffer[1] + 3 - len(self._buffer)

    def feed(self, data: bytes) -> list[FrameEvent]:
        events: list[FrameEvent] = []
        garbage = 0
        for byte in data:
            if self._buffer:
                event = self._take_frame_byte(byte)
                if event is not None:
                    events.append(event)
                continue
            if byte == STX:
                if garbage:
                    events.append(Garbage(garbage))
                    garbage = 0
                self._buffer.append(byte)
            elif byte in CONTROL_BYTES:
                if garbage:
                    events.append(Garbage(garbage))
                    garbage = 0
                events.append(Control(byte))
            else:
                garbage += 1
        if garbage:
            events.append(Garbage(garbage))
        return events

    def _take_frame_byte(self, byte: int) -> FrameEvent | None:
        if len(self._buffer) == 1 and byte == 0:
            self._buffer.clear()  # LEN 0 is impossible: the STX was noise
            return Garbage(2)
        self._buffer.append(byte)
        length = self._buffer[1]
        if len(self._buffer) < length + 3:
            return None
        payload = bytes(self._buffer[2:-1])
        received = self._buffer[-1]
        self._buffer.clear()
        expected = lrc(payload)
        if received != expected:
            return BadChecksum(payload, expected, received)
        return Frame(payload)
