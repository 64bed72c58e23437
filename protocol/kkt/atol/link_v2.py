"""ATOL protocol v2 (legacy) link layer (specs §3.3): framing and the ENQ/ACK/EOT handshake, both roles.

Frame: ``STX(02) | DATA (DLE-escaped) | ETX(03) | CRC``. A DLE(10) goes before every ``03`` or
``10`` inside DATA; CRC is the XOR of every byte after STX up to and including ETX, the DLEs
included, and is itself not escaped (as atol4j ``TransportProtocolV2.wrap``). The command layer
inside DATA is the same as v3's, without the task buffer: ``password | code | params`` out,
the command's answer back.

One exchange: host ENQ → device ACK; host frame → ACK (NAK = resend); host EOT; device ENQ →
host ACK; device frame → host ACK (NAK on a bad CRC: the device resends); device EOT.
Inferred ([I]): the device answers a frame or EOT outside a transmission with nothing, and
gives up on a transmission after silence (``byte_timeout``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto

from protocol.kkt.errors import EncodeError
from protocol.kkt.handshake import (
    Deliver,
    DeviceAction,
    Execute,
    Fail,
    FailureKind,
    HostAction,
    Send,
    Wait,
    handle_until_finished,
)

STX, ETX, EOT, ENQ, ACK, DLE, NAK = 0x02, 0x03, 0x04, 0x05, 0x06, 0x10, 0x15
CONTROL_BYTES = frozenset((EOT, ENQ, ACK, NAK))
MAX_DATA = 0xFFFF  # no length field; a bound so a runaway "frame" of noise ends
ENQ_ATTEMPTS = 5  # §3.3 step 1
FRAME_ATTEMPTS = 10  # §3.3 step 2
T1 = 0.5  # ENQ → ACK
T4 = 0.5  # frame → ACK
T2 = 2.0  # device ENQ → its frame after our ACK


def encode_frame(data: bytes) -> bytes:
    if len(data) > MAX_DATA:
        raise EncodeError(f"{len(data)} bytes of DATA exceed {MAX_DATA}")
    body = bytearray()
    for byte in data:
        if byte in (ETX, DLE):
            body.append(DLE)
        body.append(byte)
    body.append(ETX)
    check = 0
    for byte in body:
        check ^= byte
    return bytes((STX,)) + bytes(body) + bytes((check,))


@dataclass(frozen=True, slots=True)
class V2Frame:
    data: bytes


@dataclass(frozen=True, slots=True)
class V2BadFrame:
    reason: str


@dataclass(frozen=True, slots=True)
class V2Control:
    byte: int


@dataclass(frozen=True, slots=True)
class V2Garbage:
    count: int


V2Event = V2Frame | V2BadFrame | V2Control | V2Garbage


class V2Deframer:
    """Incremental deframer: control bytes between frames, frames with their CRC checked; never raises."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._in_frame = False
        self._escaped = False
        self._after_etx = False
        self._raw = bytearray()  # after STX, DLEs and ETX included: what the CRC covers
        self._data = bytearray()

    def feed(self, data: bytes) -> list[V2Event]:
        events: list[V2Event] = []
        garbage = 0
        for byte in data:
            if not self._in_frame:
                if byte == STX:
                    self._in_frame = True
                elif byte in CONTROL_BYTES:
                    if garbage:
                        events.append(V2Garbage(garbage))
                        garbage = 0
                    events.append(V2Control(byte))
                else:
                    garbage += 1
                continue
            event = self._take(byte)
            if event is not None:
                if garbage:
                    events.append(V2Garbage(garbage))
                    garbage = 0
                events.append(event)
        if garbage:
            events.append(V2Garbage(garbage))
        return events

    def _take(self, byte: int) -> V2Event | None:
        if self._after_etx:
            check = 0
            for raw in self._raw:
                check ^= raw
            data = bytes(self._data)
            self.reset()
            if check != byte:
                return V2BadFrame(f"CRC {byte:02X}, expected {check:02X}")
            return V2Frame(data)
        self._raw.append(byte)
        if self._escaped:
            self._escaped = False
            self._data.append(byte)
        elif byte == DLE:
            self._escaped = True
        elif byte == ETX:
            self._after_etx = True
        else:
            self._data.append(byte)
        if len(self._data) > MAX_DATA:
            self.reset()
            return V2BadFrame("no ETX within the longest frame")
        return None


# ------------------------------------------------------------------------------ host role


class _HostState(Enum):
    ENQ_SENT = auto()
    FRAME_SENT = auto()
    AWAIT_DEVICE_ENQ = auto()  # after our EOT: the device is executing
    AWAIT_FRAME = auto()  # we ACKed its ENQ
    DONE = auto()


class V2HostExchange:
    """One command: ENQ, frame, EOT, then the device's ENQ, frame and EOT (§3.3).

    ``answer_timeout`` is T5, the wait for the device's ENQ while it executes. Attempts are
    bounded as in atol4j: up to 5 ENQs (``retries`` + 1), 10 frames, and ``retries`` NAKs of a
    damaged answer.
    """

    def __init__(
        self, request: bytes, *, retries: int = 3, control_timeout: float = T1, answer_timeout: float = 10.0
    ) -> None:
        self._frame = encode_frame(request)
        self._retries = retries
        self._control_timeout = control_timeout
        self._answer_timeout = answer_timeout
        self._deframer = V2Deframer()
        self._state = _HostState.ENQ_SENT
        self._enqs = 0
        self._frames = 0
        self._naks = 0
        self._valid_seen = False
        self._garbage_seen = False

    @property
    def finished(self) -> bool:
        return self._state is _HostState.DONE

    def bytes_wanted(self) -> int:
        return 1

    def start(self) -> list[HostAction]:
        return self._send_enq()

    def receive(self, data: bytes) -> list[HostAction]:
        return handle_until_finished(self._deframer.feed(data), self._handle, lambda: self.finished)

    def timeout(self) -> list[HostAction]:
        if self.finished:
            return []
        self._deframer.reset()
        if self._state is _HostState.ENQ_SENT:
            if self._garbage_seen and not self._valid_seen:
                return self._fail(FailureKind.PROTOCOL, "bytes came back, but not ATOL v2 control bytes")
            return self._send_enq()
        if self._state is _HostState.FRAME_SENT:
            return self._send_frame()
        where = "its answer" if self._state is _HostState.AWAIT_FRAME else "the device to finish (ENQ)"
        return self._fail(FailureKind.NO_ANSWER, f"no reply while waiting for {where}")

    def _handle(self, event: V2Event) -> list[HostAction]:
        if isinstance(event, V2Garbage):
            self._garbage_seen = True
            return []
        self._valid_seen = True
        state = self._state
        if isinstance(event, V2Control):
            if state is _HostState.ENQ_SENT and event.byte == ACK:
                return self._send_frame()
            if state is _HostState.FRAME_SENT and event.byte == ACK:
                self._state = _HostState.AWAIT_DEVICE_ENQ
                return [Send(bytes((EOT,))), Wait(self._answer_timeout)]
            if state is _HostState.FRAME_SENT and event.byte == NAK:
                return self._send_frame()
            if state is _HostState.AWAIT_DEVICE_ENQ and event.byte == ENQ:
                self._state = _HostState.AWAIT_FRAME
                return [Send(bytes((ACK,))), Wait(T2)]
            return []  # ENQ contention, a late EOT or NAK: the running wait decides
        if state is not _HostState.AWAIT_FRAME:
            return []  # a frame nobody asked for
        if isinstance(event, V2BadFrame):
            self._naks += 1
            if self._naks > self._retries:
                return self._fail(FailureKind.CHECKSUM, f"{self._naks} damaged answers ({event.reason})")
            return [Send(bytes((NAK,))), Wait(T2)]
        self._state = _HostState.DONE  # the device's EOT follows; the next exchange skips it
        return [Send(bytes((ACK,))), Deliver(event.data)]

    def _send_enq(self) -> list[HostAction]:
        self._enqs += 1
        if self._enqs > min(ENQ_ATTEMPTS, self._retries + 1):
            return self._fail(FailureKind.NO_ANSWER, f"no ACK to {self._enqs - 1} ENQ(s)")
        self._state = _HostState.ENQ_SENT
        return [Send(bytes((ENQ,))), Wait(self._control_timeout)]

    def _send_frame(self) -> list[HostAction]:
        self._frames += 1
        if self._frames > FRAME_ATTEMPTS:
            return self._fail(FailureKind.CHECKSUM, f"the device refused the frame {FRAME_ATTEMPTS} times")
        self._state = _HostState.FRAME_SENT
        return [Send(self._frame), Wait(T4)]

    def _fail(self, kind: FailureKind, reason: str) -> list[HostAction]:
        self._state = _HostState.DONE
        return [Fail(kind, reason)]


# ------------------------------------------------------------------------------ device role


class _DeviceState(Enum):
    IDLE = auto()
    RECEIVING = auto()  # ACKed the host's ENQ
    ENQ_SENT = auto()  # our answer is ready: waiting for the host's ACK
    FRAME_SENT = auto()  # waiting for the host's ACK of our answer


class V2DeviceLink:
    """Device role: ACK the host's ENQ and frame, execute on EOT, then send the answer the same way."""

    def __init__(self) -> None:
        self._deframer = V2Deframer()
        self._state = _DeviceState.IDLE
        self._request: bytes | None = None
        self._answer = b""
        self._resends = 0

    def reset(self) -> None:
        self._deframer.reset()
        self._state = _DeviceState.IDLE
        self._request = None
        self._answer = b""

    def byte_timeout(self) -> None:
        """Silence: a half-received frame is dropped; an unfinished transmission is abandoned [I]."""
        self._deframer.reset()
        if self._state is _DeviceState.RECEIVING:
            self._state, self._request = _DeviceState.IDLE, None

    def receive(self, data: bytes) -> list[DeviceAction]:
        actions: list[DeviceAction] = []
        for event in self._deframer.feed(data):
            actions += self._handle(event)
        return actions

    def answer(self, data: bytes) -> bytes:
        """Queue the executed request's answer; returns the ENQ that announces it."""
        self._answer = encode_frame(data)
        self._state = _DeviceState.ENQ_SENT
        self._resends = 0
        return bytes((ENQ,))

    def _handle(self, event: V2Event) -> list[DeviceAction]:
        state = self._state
        if isinstance(event, V2Garbage):
            return []
        if isinstance(event, V2Frame | V2BadFrame):
            if state is not _DeviceState.RECEIVING:
                return []
            if isinstance(event, V2BadFrame):
                return [Send(bytes((NAK,)))]
            self._request = event.data
            return [Send(bytes((ACK,)))]
        byte = event.byte
        if byte == ENQ and state in (_DeviceState.IDLE, _DeviceState.RECEIVING):
            self._state, self._request = _DeviceState.RECEIVING, None
            return [Send(bytes((ACK,)))]
        if byte == EOT and state is _DeviceState.RECEIVING:
            request, self._request = self._request, None
            self._state = _DeviceState.IDLE
            return [Execute(request)] if request is not None else []
        if byte == ACK and state is _DeviceState.ENQ_SENT:
            self._state = _DeviceState.FRAME_SENT
            return [Send(self._answer)]
        if byte == ACK and state is _DeviceState.FRAME_SENT:
            self._state = _DeviceState.IDLE
            return [Send(bytes((EOT,)))]
        if byte == NAK and state is _DeviceState.FRAME_SENT:
            self._resends += 1
            if self._resends > FRAME_ATTEMPTS:
                self._state = _DeviceState.IDLE
                return [Send(bytes((EOT,)))]
            return [Send(self._answer)]
        if byte == ENQ and state is not _DeviceState.IDLE:
            # The host gave up on our answer and starts anew: the answer is dropped.
            self._state, self._request = _DeviceState.RECEIVING, None
            return [Send(bytes((ACK,)))]
        return []
