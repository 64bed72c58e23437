"""ATOL protocol v3 link layer: ``FE | LEN_lo7 | LEN_hi | ID | DATA (escaped) | CRC8 (escaped)`` (specs §3.2).

LEN is the *unescaped* DATA length split into 7-bit groups, so neither LEN byte can be FE/FD.
CRC8 (poly 0x31, init 0xFF, MSB-first) covers ID + unescaped DATA. Inside DATA and CRC,
``FE`` travels as ``FD EE`` and ``FD`` as ``FD ED``; a bare ``FE`` therefore always starts a
packet, which is what lets :class:`Deframer` resynchronise after noise.

An empty DATA packet is a retransmit request for the packet carrying that ID. The device sends
asynchronous packets with ID ``F0``; the host numbers its packets 0x00..0xDF and wraps.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.kkt.errors import EncodeError

STX = 0xFE
ESC = 0xFD
ESCAPED_STX = 0xEE  # FD EE stands for FE
ESCAPED_ESC = 0xED  # FD ED stands for FD
ASYNC_PACKET_ID = 0xF0
MAX_HOST_PACKET_ID = 0xDF
MAX_DATA_LENGTH = 0x3FFF  # two 7-bit LEN groups

_CRC_POLY = 0x31
_CRC_INIT = 0xFF


def _crc_table() -> tuple[int, ...]:
    table = []
    for value in range(256):
        crc = value
        for _ in range(8):
            crc = ((crc << 1) ^ _CRC_POLY) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc8(data: bytes) -> int:
    """CRC8 poly 0x31, init 0xFF, no reflection, no final XOR, over ``ID + DATA``."""
    crc = _CRC_INIT
    for byte in data:
        crc = _CRC_TABLE[crc ^ byte]
    return crc


def escape(data: bytes) -> bytes:
    return data.replace(bytes((ESC,)), bytes((ESC, ESCAPED_ESC))).replace(
        bytes((STX,)), bytes((ESC, ESCAPED_STX))
    )


def next_packet_id(packet_id: int) -> int:
    """The host's next packet id: 0x00..0xDF, wrapping (0xE0..0xFF are reserved for the device)."""
    return 0 if packet_id >= MAX_HOST_PACKET_ID else packet_id + 1


def encode_packet(packet_id: int, data: bytes) -> bytes:
    if not 0 <= packet_id <= 0xFF:
        raise EncodeError(f"packet id {packet_id} is not a byte")
    if len(data) > MAX_DATA_LENGTH:
        raise EncodeError(f"{len(data)} bytes of DATA exceed the 14-bit LEN ({MAX_DATA_LENGTH})")
    if packet_id in (STX, ESC):
        raise EncodeError(f"packet id {packet_id:#04x} would be taken for a control byte (ID is not escaped)")
    length = len(data)
    check = crc8(bytes((packet_id,)) + data)
    return bytes((STX, length & 0x7F, length >> 7, packet_id)) + escape(data) + escape(bytes((check,)))


def encode_retransmit_request(packet_id: int) -> bytes:
    """Empty DATA with the id of the packet that must be sent again."""
    return encode_packet(packet_id, b"")


@dataclass(frozen=True, slots=True)
class Packet:
    """A complete packet with a good CRC. Empty ``data`` means "repeat packet ``packet_id``"."""

    packet_id: int
    data: bytes

    @property
    def is_retransmit_request(self) -> bool:
        return not self.data

    @property
    def is_async(self) -> bool:
        return self.packet_id == ASYNC_PACKET_ID


@dataclass(frozen=True, slots=True)
class BadPacket:
    """A packet whose header was read but whose body is damaged (CRC mismatch or bad escape).

    ``packet_id`` is always known here because the ID precedes the damaged part; the receiver
    answers with a retransmit request for it.
    """

    packet_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class Garbage:
    """``count`` bytes dropped while looking for the next FE (noise, truncated packets)."""

    count: int


LinkEvent = Packet | BadPacket | Garbage


class Deframer:
    """Incremental v3 deframer: feed any split of the stream, get events in stream order; never raises.

    An FE inside a packet can only be the start of the next packet (real FE bytes are escaped),
    so a truncated packet is dropped as garbage and parsing restarts there.
    """

    def __init__(self) -> None:
        self._header = bytearray()  # FE, LEN_lo, LEN_hi, ID as they arrive
        self._data = bytearray()  # unescaped DATA + CRC
        self._escaped = False
        self._raw_count = 0  # bytes of the current packet, for the garbage count on abort

    def reset(self) -> None:
        self._header.clear()
        self._data.clear()
        self._escaped = False
        self._raw_count = 0

    @property
    def in_packet(self) -> bool:
        return bool(self._header)

    def bytes_wanted(self) -> int:
        """The fewest raw bytes that can complete the current packet (a whole empty packet between
        packets): a reader asking for exactly this many never blocks past the end of a packet."""
        if len(self._header) < 4:
            return 5 - len(self._header)
        return self._wanted()

    def feed(self, data: bytes) -> list[LinkEvent]:
        events: list[LinkEvent] = []
        garbage = 0
        for byte in data:
            if byte == STX:
                garbage += self._raw_count  # a packet cut short by a new FE
                self.reset()
                if garbage:
                    events.append(Garbage(garbage))
                    garbage = 0
                self._header.append(byte)
                self._raw_count = 1
                continue
            if not self._header:
                garbage += 1
                continue
            self._raw_count += 1
            event = self._take(byte)
            if isinstance(event, Garbage):
                garbage += event.count
            elif event is not None:
                if garbage:
                    events.append(Garbage(garbage))
                    garbage = 0
                events.append(event)
        if garbage:
            events.append(Garbage(garbage))
        return events

    def _take(self, byte: int) -> LinkEvent | None:
        if len(self._header) < 4:
            # A LEN byte ≥ 0x80, or an ID of FD (IDs are not escaped, so no sender uses it), is
            # impossible: the FE was noise.
            if (len(self._header) in (1, 2) and byte & 0x80) or (len(self._header) == 3 and byte == ESC):
                count = self._raw_count
                self.reset()
                return Garbage(count)
            self._header.append(byte)
            return None
        packet_id = self._header[3]
        if self._escaped:
            self._escaped = False
            if byte == ESCAPED_STX:
                self._data.append(STX)
            elif byte == ESCAPED_ESC:
                self._data.append(ESC)
            else:
                self.reset()
                return BadPacket(packet_id, f"invalid escape sequence FD {byte:02X}")
        elif byte == ESC:
            self._escaped = True
            return None
        else:
            self._data.append(byte)
        if self._wanted() > 0:
            return None
        return self._finish(packet_id)

    def _length(self) -> int:
        return self._header[1] | (self._header[2] << 7)

    def _wanted(self) -> int:
        """Unescaped bytes (DATA + CRC) still missing from the current packet."""
        return self._length() + 1 - len(self._data)

    def _finish(self, packet_id: int) -> LinkEvent:
        body = bytes(self._data[:-1])
        received = self._data[-1]
        self.reset()
        expected = crc8(bytes((packet_id,)) + body)
        if received != expected:
            return BadPacket(packet_id, f"CRC {received:02X}, expected {expected:02X}")
        return Packet(packet_id, body)
