"""Shtrih-M alternative low level for lossy links (specs §1.3): numbered, CRC-protected, stuffed.

``8F | LEN16 | NUM16 | DATA | CRC16`` with LEN16 = len(NUM16 + DATA), all little-endian. The CRC
is CRC-16/CCITT-FALSE over LEN16..DATA; after it is computed every byte but the leading STX is
stuffed (``8F`` → ``9F 81``, ``9F`` → ``9F 83``), so a bare ``8F`` always starts a frame.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from protocol.kkt.errors import EncodeError

ALT_STX = 0x8F
ESCAPE = 0x9F
ESCAPED_STX = 0x81
ESCAPED_ESCAPE = 0x83
MAX_LENGTH = 0xFFFF


def crc16_ccitt_false(data: bytes) -> int:
    """Polynomial 0x1021, init 0xFFFF, no reflection, no final XOR (check "123456789" = 0x29B1)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def _stuff(data: bytes) -> bytes:
    out = bytearray()
    for byte in data:
        if byte == ALT_STX:
            out += bytes((ESCAPE, ESCAPED_STX))
        elif byte == ESCAPE:
            out += bytes((ESCAPE, ESCAPED_ESCAPE))
        else:
            out.append(byte)
    return bytes(out)


def encode_alt_frame(number: int | None, data: bytes = b"") -> bytes:
    """Numbered frame (``number`` 0..65535), or the 5-byte ping when ``number`` is None."""
    if number is None:
        if data:
            raise EncodeError("a ping frame (no number) carries no data")
        body = struct.pack("<H", 0)
    else:
        if not 0 <= number <= 0xFFFF:
            raise EncodeError(f"frame number {number} is outside 0..65535")
        if len(data) + 2 > MAX_LENGTH:
            raise EncodeError(f"{len(data)} data bytes do not fit LEN16")
        body = struct.pack("<HH", len(data) + 2, number) + data
    return bytes((ALT_STX,)) + _stuff(body + struct.pack("<H", crc16_ccitt_false(body)))


@dataclass(frozen=True, slots=True)
class AltFrame:
    """A good frame: ``number`` None for the ping; ``data`` empty for the numbered empty frame."""

    number: int | None
    data: bytes


@dataclass(frozen=True, slots=True)
class AltCorrupted:
    """A frame that cannot be trusted (bad CRC, bad escape, LEN16 = 1, interrupted by a new STX)."""

    reason: str


@dataclass(frozen=True, slots=True)
class AltGarbage:
    count: int


AltEvent = AltFrame | AltCorrupted | AltGarbage


class AltDeframer:
    """Incremental deframer for the alternative link; never raises, resyncs on every bare ``8F``."""

    def __init__(self) -> None:
        self._body = bytearray()  # unstuffed bytes after STX
        self._in_frame = False
        self._escaped = False

    def reset(self) -> None:
        self._body.clear()
        self._in_frame = self._escaped = False

    def feed(self, data: bytes) -> list[AltEvent]:
        events: list[AltEvent] = []
        garbage = 0
        for byte in data:
            if byte == ALT_STX:
                if garbage:
                    events.append(AltGarbage(garbage))
                    garbage = 0
                if self._in_frame:
                    events.append(AltCorrupted("frame interrupted by a new start byte"))
                self.reset()
                self._in_frame = True
            elif not self._in_frame:
                garbage += 1
            else:
                event = self._take(byte)
                if event is not None:
                    events.append(event)
        if garbage:
            events.append(AltGarbage(garbage))
        return events

    def _take(self, byte: int) -> AltEvent | None:
        if self._escaped:
            self._escaped = False
            if byte == ESCAPED_STX:
                byte = ALT_STX
            elif byte == ESCAPED_ESCAPE:
                byte = ESCAPE
            else:
                self.reset()
                return AltCorrupted(f"escape 9F followed by {byte:02X}")
        elif byte == ESCAPE:
            self._escaped = True
            return None
        self._body.append(byte)
        if len(self._body) < 2:
            return None
        (length,) = struct.unpack_from("<H", self._body, 0)
        if length == 1:
            self.reset()
            return AltCorrupted("LEN16 = 1 is not a valid frame length")
        if len(self._body) < 2 + length + 2:
            return None
        body = bytes(self._body[: 2 + length])
        (received,) = struct.unpack_from("<H", self._body, 2 + length)
        self.reset()
        if received != crc16_ccitt_false(body):
            return AltCorrupted(f"CRC {received:04X} does not match {crc16_ccitt_false(body):04X}")
        if length == 0:
            return AltFrame(None, b"")
        (number,) = struct.unpack_from("<H", body, 2)
        return AltFrame(number, body[4:])
