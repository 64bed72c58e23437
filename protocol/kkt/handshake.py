"""The action vocabulary of the sans-I/O host-role link machines (Shtrih standard and
alternative link, ATOL v2): a session performs ``Send``/``Wait`` and ends on ``Deliver`` or ``Fail``.

The machines never read, write or look at a clock; the session does the I/O (``agent.drivers``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum, auto
from typing import TypeVar


@dataclass(frozen=True, slots=True)
class Send:
    data: bytes


@dataclass(frozen=True, slots=True)
class Wait:
    """Start a new wait window: call ``timeout()`` if it passes without another ``Wait``."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Deliver:
    """The answer payload (the command's answer bytes), already acknowledged."""

    payload: bytes


class FailureKind(StrEnum):
    NO_ANSWER = auto()  # nothing valid came back
    CHECKSUM = auto()  # frames kept being damaged (either direction)
    PROTOCOL = auto()  # bytes came back, but not this protocol, or the wrong answer


@dataclass(frozen=True, slots=True)
class Fail:
    kind: FailureKind
    reason: str


HostAction = Send | Wait | Deliver | Fail


@dataclass(frozen=True, slots=True)
class Execute:
    """Device role: a good request, already acknowledged: run it and pass the answer to ``answer()``."""

    payload: bytes


DeviceAction = Send | Execute
E = TypeVar("E")


def handle_until_finished(
    events: Iterable[E], handle: Callable[[E], list[HostAction]], finished: Callable[[], bool]
) -> list[HostAction]:
    """A host machine's actions for received events, in order; events after Deliver/Fail are dropped."""
    actions: list[HostAction] = []
    for event in events:
        if finished():
            break
        actions += handle(event)
    return actions
