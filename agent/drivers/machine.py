"""Drive a sans-I/O host-role link machine (``protocol.kkt.handshake`` actions) over a ``ByteLink``.

Each ``Wait`` becomes a read deadline and an empty read means the deadline passed (the
``ByteLink`` contract), so a silent device costs at most the machine's bounded waits.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Protocol

from agent.drivers.link import ByteLink
from protocol.kkt.handshake import Deliver, Fail, HostAction, Send, Wait


class HostMachine(Protocol):
    """A host-role link machine: Shtrih standard or alternative link, ATOL v2."""

    def start(self) -> list[HostAction]: ...

    def receive(self, data: bytes) -> list[HostAction]: ...

    def timeout(self) -> list[HostAction]: ...

    def bytes_wanted(self) -> int: ...


def run_exchange(link: ByteLink, machine: HostMachine) -> bytes | Fail:
    """The delivered answer, or the machine's ``Fail`` for the session to turn into its error."""
    if not link.is_open:
        link.open()
    link.discard_input()
    actions: deque[HostAction] = deque(machine.start())
    deadline = time.monotonic()
    while True:
        while actions:
            action = actions.popleft()
            if isinstance(action, Send):
                link.write(action.data)
            elif isinstance(action, Wait):
                deadline = time.monotonic() + action.seconds
            elif isinstance(action, Deliver):
                return action.payload
            elif isinstance(action, Fail):
                return action
        remaining = deadline - time.monotonic()
        data = link.read(machine.bytes_wanted(), remaining) if remaining > 0 else b""
        actions.extend(machine.receive(data) if data else machine.timeout())
