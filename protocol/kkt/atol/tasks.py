"""ATOL v3 task buffer: host requests C1…C5, device statuses A1…A8/B1…B4 (specs §3.2), both roles.

The host never sends a command bare: it ADDs a task (``C1 flags tid command``), the device
answers with a status byte, the host polls with REQ until the result (A3 OK / A4 error) arrives,
then ACKs the task. :class:`HostTransaction` runs that exchange as a sans-I/O state machine:
the session feeds it link events and timeouts and performs the :data:`Step` it returns.
:class:`DeviceTaskBuffer` is the device-side counterpart used by the simulator.

Inferred details ([I], the public sources do not pin them) and the tolerant choices made here:

* A reply carries the packet id of the host packet it answers; a repeat of the same packet
  (same id and DATA, sent after a timeout) gets the cached reply and is not executed twice.
* ACK gets no reply; ABORT is answered A3 (specs §3.2); A1/A2/A5/A8/B1…B4 are a bare status byte
  (trailing bytes tolerated).
* C5 ACK_ADD has the ADD body and first acknowledges every finished task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, IntEnum, IntFlag

from protocol.kkt.atol.link import (
    ASYNC_PACKET_ID,
    MAX_HOST_PACKET_ID,
    BadPacket,
    Garbage,
    LinkEvent,
    Packet,
    encode_packet,
    encode_retransmit_request,
    next_packet_id,
)
from protocol.kkt.errors import DecodeError, EncodeError


class TaskCommand(IntEnum):
    ADD = 0xC1
    ACK = 0xC2
    REQ = 0xC3
    ABORT = 0xC4
    ACK_ADD = 0xC5


class AddFlag(IntFlag):
    NEED_RESULT = 0x01
    IGNORE_ERROR = 0x02
    WAIT_ASYNC = 0x04


class TaskStatus(IntEnum):
    PENDING = 0xA1
    IN_PROGRESS = 0xA2
    RESULT = 0xA3
    ERROR = 0xA4
    STOPPED = 0xA5
    ASYNC_RESULT = 0xA6
    ASYNC_ERROR = 0xA7
    WAITING = 0xA8  # waiting for an external device
    OVERFLOW = 0xB1
    ALREADY_EXISTS = 0xB2
    NOT_FOUND = 0xB3
    ILLEGAL_VALUE = 0xB4

    @property
    def meaning(self) -> str:
        return _STATUS_MEANINGS[self]


_STATUS_MEANINGS = {
    TaskStatus.PENDING: "задание ожидает выполнения",
    TaskStatus.IN_PROGRESS: "задание выполняется",
    TaskStatus.RESULT: "задание выполнено",
    TaskStatus.ERROR: "задание выполнено с ошибкой",
    TaskStatus.STOPPED: "выполнение заданий остановлено",
    TaskStatus.ASYNC_RESULT: "асинхронный результат",
    TaskStatus.ASYNC_ERROR: "асинхронная ошибка",
    TaskStatus.WAITING: "ожидание внешнего устройства",
    TaskStatus.OVERFLOW: "переполнение буфера заданий",
    TaskStatus.ALREADY_EXISTS: "задание с таким номером уже есть",
    TaskStatus.NOT_FOUND: "задание не найдено",
    TaskStatus.ILLEGAL_VALUE: "недопустимое значение",
}

_FINISHED = frozenset((TaskStatus.RESULT, TaskStatus.ERROR, TaskStatus.ASYNC_RESULT, TaskStatus.ASYNC_ERROR))
_WITH_TASK_ID = frozenset((TaskStatus.ASYNC_RESULT, TaskStatus.ASYNC_ERROR))
_STILL_RUNNING = frozenset((TaskStatus.PENDING, TaskStatus.IN_PROGRESS, TaskStatus.WAITING))


# ------------------------------------------------------------------------------ host requests


@dataclass(frozen=True, slots=True)
class Add:
    task_id: int
    command: bytes
    flags: AddFlag = AddFlag.NEED_RESULT
    and_ack: bool = False  # True encodes C5 ACK_ADD

    def encode(self) -> bytes:
        _check_byte(self.task_id, "task id")
        code = TaskCommand.ACK_ADD if self.and_ack else TaskCommand.ADD
        return bytes((code, int(self.flags), self.task_id)) + self.command


@dataclass(frozen=True, slots=True)
class Ack:
    task_id: int

    def encode(self) -> bytes:
        _check_byte(self.task_id, "task id")
        return bytes((TaskCommand.ACK, self.task_id))


@dataclass(frozen=True, slots=True)
class Req:
    task_id: int

    def encode(self) -> bytes:
        _check_byte(self.task_id, "task id")
        return bytes((TaskCommand.REQ, self.task_id))


@dataclass(frozen=True, slots=True)
class Abort:
    def encode(self) -> bytes:
        return bytes((TaskCommand.ABORT,))


HostRequest = Add | Ack | Req | Abort


def _check_byte(value: int, what: str) -> None:
    if not 0 <= value <= 0xFF:
        raise EncodeError(f"{what} {value} is not a byte")


def decode_host_request(data: bytes) -> HostRequest:
    if not data:
        raise DecodeError("empty task-buffer request")
    try:
        code = TaskCommand(data[0])
    except ValueError:
        raise DecodeError(f"unknown task-buffer command {data[0]:#04x}") from None
    if code is TaskCommand.ABORT:
        return Abort()
    if code in (TaskCommand.ACK, TaskCommand.REQ):
        if len(data) < 2:
            raise DecodeError(f"{code.name} needs a task id")
        return Ack(data[1]) if code is TaskCommand.ACK else Req(data[1])
    if len(data) < 4:
        raise DecodeError(f"{code.name} needs flags, a task id and a command")
    return Add(data[2], bytes(data[3:]), AddFlag(data[1] & 0x07), and_ack=code is TaskCommand.ACK_ADD)


# ------------------------------------------------------------------------------ device replies


@dataclass(frozen=True, slots=True)
class DeviceReply:
    """Status byte, the task id for async results (A6/A7), and the command's answer for results."""

    status: TaskStatus
    result: bytes = b""
    task_id: int | None = None

    @property
    def finished(self) -> bool:
        return self.status in _FINISHED

    def encode(self) -> bytes:
        if self.status in _WITH_TASK_ID:
            if self.task_id is None:
                raise EncodeError(f"{self.status.name} needs a task id")
            return bytes((self.status, self.task_id)) + self.result
        return bytes((self.status,)) + self.result

    @classmethod
    def decode(cls, data: bytes) -> DeviceReply:
        if not data:
            raise DecodeError("empty device reply")
        try:
            status = TaskStatus(data[0])
        except ValueError:
            raise DecodeError(f"unknown ATOL task status {data[0]:#04x}") from None
        if status in _WITH_TASK_ID:
            if len(data) < 2:
                raise DecodeError(f"{status.name} without a task id")
            return cls(status, bytes(data[2:]), data[1])
        return cls(status, bytes(data[1:]))


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
        if reply.status in _WITH_TASK_ID and reply.task_id != self.task_id:
            return Wait()
        return self._on_reply(reply)

    def _on_async(self, packet: Packet) -> Step:
        try:
            reply = DeviceReply.decode(packet.data)
        except DecodeError:
            return Wait()  # async noise must not break a running command
        if reply.status in _WITH_TASK_ID and reply.task_id == self.task_id:
            return self._on_reply(reply)
        return Wait()

    def _on_reply(self, reply: DeviceReply) -> Step:
        status = reply.status
        if status in _FINISHED:
            self._done = True
            ack = encode_packet(self.packet_ids.next(), Ack(self.task_id).encode())
            return Completed(status, reply.result, ack)
        if status in _STILL_RUNNING and self.flags & AddFlag.WAIT_ASYNC:
            self._awaiting_async = True  # the result comes as an F0 packet; a timeout REQs
            self._timeouts = 0
            return Wait()
        if status in _STILL_RUNNING or status is TaskStatus.ALREADY_EXISTS:
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


# ------------------------------------------------------------------------------ device side

ASYNC_REDELIVERY_SECONDS = 0.5  # an unacknowledged A6/A7 is sent again after this much silence [I]


@dataclass(frozen=True, slots=True)
class TaskResult:
    ok: bool
    answer: bytes


@dataclass
class _Task:
    result: TaskResult | None  # None: queued behind a failed task while execution is stopped
    polls_left: int  # REQs/ticks still answered "in progress" (simulates a slow command)
    flags: AddFlag
    delivers_async: bool

    @property
    def running(self) -> bool:
        return self.result is not None and self.polls_left > 0

    @property
    def finished(self) -> bool:
        return self.result is not None and self.polls_left <= 0


@dataclass
class DeviceTaskBuffer:
    """Device role: turns link events into reply frames, executing ADDed commands via ``execute``.

    Follows specs §3.2 ("Asynchronous results"): an ADD with the async flag (or every ADD when
    ``async_results`` — firmware that always answers that way) is answered A2 at once and its
    result later arrives as an ``F0`` packet ``A6/A7 tid result``, sent again by :meth:`tick`
    until the host's ``C2``. REQ reports A1/A2/A3/A4/A5/B3; ABORT clears the buffer and answers
    A3; ADD of a known task id is B2, of one task too many B1.

    Inferred ([I]) and chosen here: a task that fails without IgnoreError stops execution —
    tasks added after it answer A5 and are not run — until that task is ACKed or the buffer is
    aborted. ``slow_polls`` keeps every task "in progress" for that many REQs or ticks.
    """

    execute: Callable[[bytes], TaskResult]
    capacity: int = 16
    slow_polls: int = 0
    async_results: bool = False
    _tasks: dict[int, _Task] = field(default_factory=dict, init=False)
    _stopped_by: int | None = field(default=None, init=False)
    _undelivered: dict[int, bytes] = field(default_factory=dict, init=False)  # tid → F0 frame until C2
    _last_delivery: float = field(default=0.0, init=False)
    _last_request: tuple[int, bytes] | None = field(default=None, init=False)
    _last_reply: bytes | None = field(default=None, init=False)

    def reset(self) -> None:
        self._tasks.clear()
        self._undelivered.clear()
        self._stopped_by = None
        self._last_request = None
        self._last_reply = None

    def receive(self, event: LinkEvent, now: float = 0.0) -> bytes:
        """The bytes to send back for one link event (maybe empty), async results that became due included."""
        if isinstance(event, Garbage):
            return b""
        if isinstance(event, BadPacket):
            return encode_retransmit_request(event.packet_id)
        if event.packet_id > MAX_HOST_PACKET_ID:
            return b""  # not a host packet id
        if event.is_retransmit_request or self._last_request == (event.packet_id, event.data):
            last = self._last_request
            return self._last_reply if self._last_reply and last and last[0] == event.packet_id else b""
        try:
            request = decode_host_request(event.data)
        except DecodeError:
            reply: DeviceReply | None = DeviceReply(TaskStatus.ILLEGAL_VALUE)
        else:
            reply = self._handle(request)
        frame = encode_packet(event.packet_id, reply.encode()) if reply else b""
        self._last_request, self._last_reply = (event.packet_id, event.data), frame
        return frame + self._deliver_new(now)

    def tick(self, now: float) -> bytes:
        """Time passed without host input: advance slow async tasks, re-send unacknowledged results."""
        for task in self._tasks.values():
            if task.running and task.delivers_async:
                task.polls_left -= 1
        fresh = self._deliver_new(now)
        if fresh or not self._undelivered or now - self._last_delivery < ASYNC_REDELIVERY_SECONDS:
            return fresh
        self._last_delivery = now
        return b"".join(self._undelivered.values())

    def _deliver_new(self, now: float) -> bytes:
        """F0 packets for async tasks that have just finished (each is queued until its C2)."""
        out = bytearray()
        for task_id, task in self._tasks.items():
            if task.delivers_async and task.finished and task_id not in self._undelivered:
                assert task.result is not None
                status = TaskStatus.ASYNC_RESULT if task.result.ok else TaskStatus.ASYNC_ERROR
                frame = encode_packet(ASYNC_PACKET_ID, DeviceReply(status, task.result.answer, task_id).encode())
                self._undelivered[task_id] = frame
                out += frame
        if out:
            self._last_delivery = now
        return bytes(out)

    def _handle(self, request: HostRequest) -> DeviceReply | None:
        if isinstance(request, Abort):
            self.reset()
            return DeviceReply(TaskStatus.RESULT)  # clients wait for A3 (specs §3.2)
        if isinstance(request, Ack):
            self._acknowledge(request.task_id)
            return None
        if isinstance(request, Req):
            task = self._tasks.get(request.task_id)
            return DeviceReply(TaskStatus.NOT_FOUND) if task is None else self._state(task)
        if request.and_ack:
            for task_id in [tid for tid, task in self._tasks.items() if task.finished]:
                self._acknowledge(task_id)
        return self._add(request)

    def _acknowledge(self, task_id: int) -> None:
        self._tasks.pop(task_id, None)
        self._undelivered.pop(task_id, None)
        if self._stopped_by == task_id:
            self._stopped_by = None

    def _add(self, request: Add) -> DeviceReply:
        if request.task_id in self._tasks:
            return DeviceReply(TaskStatus.ALREADY_EXISTS)
        if len(self._tasks) >= self.capacity:
            return DeviceReply(TaskStatus.OVERFLOW)
        delivers_async = self.async_results or bool(request.flags & AddFlag.WAIT_ASYNC)
        if self._stopped_by is not None:
            self._tasks[request.task_id] = _Task(None, 0, request.flags, delivers_async)
            return DeviceReply(TaskStatus.STOPPED)
        result = self.execute(request.command)
        task = _Task(result, self.slow_polls, request.flags, delivers_async)
        self._tasks[request.task_id] = task
        if not result.ok and not request.flags & AddFlag.IGNORE_ERROR:
            self._stopped_by = request.task_id
        if delivers_async:
            return DeviceReply(TaskStatus.IN_PROGRESS)
        if task.running or not request.flags & AddFlag.NEED_RESULT:
            return DeviceReply(TaskStatus.PENDING)
        return self._state(task)

    @staticmethod
    def _state(task: _Task) -> DeviceReply:
        if task.result is None:
            return DeviceReply(TaskStatus.STOPPED)
        if task.polls_left > 0:
            task.polls_left -= 1
            return DeviceReply(TaskStatus.IN_PROGRESS)
        status = TaskStatus.RESULT if task.result.ok else TaskStatus.ERROR
        return DeviceReply(status, task.result.answer)
