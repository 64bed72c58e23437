"""ATOL v3 task buffer messages: host requests C1…C5, device statuses A1…A8/B1…B4 (specs §3.2).

The host never sends a command bare: it ADDs a task (``C1 flags tid command``), the device
answers with a status byte, the host polls with REQ until the result (A3 OK / A4 error) arrives,
then ACKs the task. This module holds the byte layouts both roles share;
:class:`~protocol.kkt.atol.task_host.HostTransaction` runs the host's exchange and
:class:`~protocol.kkt.atol.task_device.DeviceTaskBuffer` is the device-side counterpart used by the simulator.

Inferred details ([I], the public sources do not pin them) and the tolerant choices made here:

* ACK gets no reply; ABORT is answered A3 (specs §3.2); A1/A2/A5/A8/B1…B4 are a bare status byte
  (trailing bytes tolerated).
* C5 ACK_ADD has the ADD body (the device first acknowledges every finished task).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, IntFlag

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

# Status groups both roles act on.
FINISHED = frozenset((TaskStatus.RESULT, TaskStatus.ERROR, TaskStatus.ASYNC_RESULT, TaskStatus.ASYNC_ERROR))
WITH_TASK_ID = frozenset((TaskStatus.ASYNC_RESULT, TaskStatus.ASYNC_ERROR))
STILL_RUNNING = frozenset((TaskStatus.PENDING, TaskStatus.IN_PROGRESS, TaskStatus.WAITING))


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
        return self.status in FINISHED

    def encode(self) -> bytes:
        if self.status in WITH_TASK_ID:
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
        if status in WITH_TASK_ID:
            if len(data) < 2:
                raise DecodeError(f"{status.name} without a task id")
            return cls(status, bytes(data[2:]), data[1])
        return cls(status, bytes(data[1:]))
