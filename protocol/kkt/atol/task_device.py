"""ATOL v3 task buffer, device side: the buffer state machine the simulator answers the host with.

Inferred ([I]): a reply carries the packet id of the host packet it answers, and a repeat of the
same packet (same id and DATA, sent after a timeout) gets the cached reply and is not executed
twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from protocol.kkt.atol.link import (
    ASYNC_PACKET_ID,
    MAX_HOST_PACKET_ID,
    BadPacket,
    Garbage,
    LinkEvent,
    encode_packet,
    encode_retransmit_request,
)
from protocol.kkt.atol.tasks import (
    Abort,
    Ack,
    Add,
    AddFlag,
    DeviceReply,
    HostRequest,
    Req,
    TaskStatus,
    decode_host_request,
)
from protocol.kkt.errors import DecodeError

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
