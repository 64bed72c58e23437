"""ATOL v3 task buffer, host side: one command through ADD → (REQ…) → ACK as a sans-I/O state machine.

:class:`HostTransaction` is fed link events and timeouts by the session, which performs the
:data:`Step` it returns; the message layouts it sends and reads are in :mod:`.tasks`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from protocol.kkt.atol.link import (
    BadPacket,
    Garbage,
    LinkEvent,
    Packet,
    encode_packet,
    encode_retransmit_request,
    next_packet_id,
)
from protocol.kkt.atol.tasks import (
    FINISHED,
    STILL_RUNNING,
    WITH_TASK_ID,
    Abort,
    Ack,
    Add,
    AddFlag,
    DeviceReply,
    Req,
    TaskStatus,
)
from protocol.kkt.errors import DecodeError

# ------------------------------------------------------------------------------ id counters


class IdCounter:
    """Host packet ids and task ids: 0x00..0xDF, wrapping. The first id handed out is 1 (as atol4j)."""

    def __init__(self, last: int = 0) -> None:
        self._last = last

    def next(self) -> int:
        self._last = next_packet_id(self._last)
        return self._last


# ------------------------------------------------------------------------------ host transaction


class FailureKind(Enum):
    NO_ANSWER = "no answer"
    CHECKSUM = "checksum"
    PROTOCOL = "protocol"
    REFUSED = "refused"  # the task buffer refused the task (overflow, stopped)


@dataclass(frozen=True, slots=True)
class Send:
    """Write ``frame``; ``poll`` marks a REQ for a running task (the session may pace those)."""

    frame: bytes
    poll: bool = False


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to send; keep reading."""


@dataclass(frozen=True, slots=True)
class Completed:
    """The task finished; send ``ack`` (no reply expected) and decode ``result``."""

    status: TaskStatus
    result: bytes
    ack: bytes


@dataclass(frozen=True, slots=True)
class Failed:
    kind: FailureKind
    detail: str
    status: TaskStatus | None = None


Step = Send | Wait | Completed | Failed


@dataclass
class HostTransaction:
    """One command through the task buffer: ADD → (A1/A2 → REQ…) → A3/A4 → ACK.

    With ``AddFlag.WAIT_ASYNC`` in ``flags`` the host waits for the device's ``F0`` packet
    (A6/A7 with our task id) instead of polling, and sends a REQ only when a wait times out
    (the result may have been lost). A device may answer either way, whatever was asked: an
    immediate A3, A2 then A6, or A3 to a REQ all complete the task (specs §3.2).

    Bounded: at most ``max_repeats`` repeats for each of timeouts, damaged answers and the
    device's retransmit requests, and ``max_polls`` REQs (or async waits) while the task runs.
    """

    command: bytes
    task_id: int
    packet_ids: IdCounter
    max_repeats: int = 3
    max_polls: int = 200
    flags: AddFlag = AddFlag.NEED_RESULT
    _frame: bytes = field(default=b"", init=False)
    _packet_id: int = field(default=-1, init=False)
    _timeouts: int = field(default=0, init=False)
    _damaged: int = field(default=0, init=False)
    _repeat_requests: int = field(default=0, init=False)
    _polls: int = field(default=0, init=False)
    _readds: int = field(default=0, init=False)
    _awaiting_async: bool = field(default=False, init=False)
    _done: bool = field(default=False, init=False)

    def start(self) -> Send:
        return self._send(Add(self.task_id, self.command, self.flags).encode())

    @property
    def done(self) -> bool:
        return self._done

    def _send(self, data: bytes) -> Send:
        self._packet_id = self.packet_ids.next()
        self._frame = encode_packet(self._packet_id, data)
        return Send(self._frame)

    def _fail(self, kind: FailureKind, detail: str, status: TaskStatus | None = None) -> Failed:
        self._done = True
        return Failed(kind, detail, status)

    def timeout(self) -> Step:
        """Nothing usable arrived in time: repeat the last packet with the same id (the device dedups).

        While waiting for an async result, ask for the task's state instead (REQ).
        """
        if self._awaiting_async:
            return self._poll()
        self._timeouts += 1
        if self._timeouts > self.max_repeats:
            return self._fail(FailureKind.NO_ANSWER, f"no answer after {self._timeouts} attempts")
        return Send(self._frame)

    def receive(self, event: LinkEvent) -> Step:
        if self._done or isinstance(event, Garbage):
            return Wait()
        if isinstance(event, BadPacket):
            if event.packet_id != self._packet_id:
                return Wait()  # damaged async or stale packet; a damaged id byte is covered by the timeout
            self._damaged += 1
            if self._damaged > self.max_repeats:
                return self._fail(FailureKind.CHECKSUM, f"{self._damaged} damaged answers ({event.reason})")
            return Send(encode_retransmit_request(event.packet_id))
        return self._on_packet(event)

    def _on_packet(self, packet: Packet) -> Step:
        if packet.is_async:
            return self._on_async(packet)
        if packet.packet_id != self._packet_id:
            return Wait()  # a late answer to an earlier packet
        if packet.is_retransmit_request:
            self._repeat_requests += 1
            if self._repeat_requests > self.max_repeats:
                return self._fail(FailureKind.CHECKSUM, "the device keeps asking for the packet again")
            return Send(self._frame)
        try:
            reply = DeviceReply.decode(packet.data)
        except DecodeError as exc:
            return self._fail(FailureKind.PROTOCOL, str(exc))
        if reply.status in WITH_TASK_ID and reply.task_id != self.task_id:
            return Wait()
        return self._on_reply(reply)

    def _on_async(self, packet: Packet) -> Step:
        try:
            reply = DeviceReply.decode(packet.data)
        except DecodeError:
            return Wait()  # async noise must not break a running command
        if reply.status in WITH_TASK_ID and reply.task_id == self.task_id:
            return self._on_reply(reply)
        return Wait()

    def _on_reply(self, reply: DeviceReply) -> Step:
        status = reply.status
        if status in FINISHED:
            self._done = True
            ack = encode_packet(self.packet_ids.next(), Ack(self.task_id).encode())
            return Completed(status, reply.result, ack)
        if status in STILL_RUNNING and self.flags & AddFlag.WAIT_ASYNC:
            self._awaiting_async = True  # the result comes as an F0 packet; a timeout REQs
            self._timeouts = 0
            return Wait()
        if status in STILL_RUNNING or status is TaskStatus.ALREADY_EXISTS:
            # B2: our own ADD arrived twice (or a stale task with this id exists): ask for its state.
            return self._poll()
        if status is TaskStatus.NOT_FOUND and self._readds < self.max_repeats:
            self._readds += 1  # the device lost the task (reset): add it again
            return self.start()
        if status in (TaskStatus.OVERFLOW, TaskStatus.STOPPED, TaskStatus.NOT_FOUND):
            return self._fail(FailureKind.REFUSED, status.meaning, status)
        return self._fail(FailureKind.PROTOCOL, status.meaning, status)


    def _poll(self) -> Step:
        self._polls += 1
        if self._polls > self.max_polls:
            return self._fail(FailureKind.NO_ANSWER, f"task still running after {self.max_polls} polls")
        self._timeouts = 0
        self._awaiting_async = False  # until the REQ's answer says the task still runs
        return Send(self._send(Req(self.task_id).encode()).frame, poll=True)


def encode_abort(packet_ids: IdCounter) -> bytes:
    """ABORT (clear the task buffer) as a ready frame; the device's A3 to it needs no reading."""
    return encode_packet(packet_ids.next(), Abort().encode())
