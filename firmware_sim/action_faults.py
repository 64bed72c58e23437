"""Scripted failures of the remote actions, and the register dropping off the line.

Tests (and scenarios) script what the next action of a kind does: the register refuses it with an
error code of its own protocol, or drops off the line in the middle of it (having carried it out
or not). :class:`LinkOutage` is how a device drops off: for a while it ignores every byte, as with
a pulled cable; the host sees silence and gives up by its timeouts. The register keeps its state
meanwhile (an unsent answer too, which a link layer may still recover); a reboot also resets it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class SimAction(StrEnum):
    """The register operations behind the remote actions, named the same in both protocols."""

    X_REPORT = "x_report"
    Z_REPORT = "z_report"
    OPEN_SHIFT = "open_shift"
    SET_DATETIME = "set_datetime"
    REBOOT = "reboot"


@dataclass(frozen=True)
class LinkDrop:
    seconds: float
    execute: bool  # the register carried the action out before it fell silent


class ActionFaults:
    """What the next actions of each kind do instead of succeeding; each scripted fault fires once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refusals: dict[SimAction, deque[int]] = {}
        self._drops: dict[SimAction, deque[LinkDrop]] = {}

    def refuse_next(self, action: SimAction, code: int) -> ActionFaults:
        """The next ``action`` is refused with the register's error ``code`` (nothing changes)."""
        if not 1 <= code <= 0xFF:
            raise ValueError(f"error code {code} must be 1..255")
        with self._lock:
            self._refusals.setdefault(action, deque()).append(code)
        return self

    def drop_link_during(self, action: SimAction, seconds: float = 2.0, *, execute: bool = True) -> ActionFaults:
        """The next ``action`` gets no answer: the register goes silent for ``seconds``."""
        if seconds <= 0:
            raise ValueError("a link drop lasts a positive number of seconds")
        with self._lock:
            self._drops.setdefault(action, deque()).append(LinkDrop(seconds, execute))
        return self

    def add_spec(self, spec: str) -> ActionFaults:
        """``kassa-sim --action-fault``: ``ACTION:refuse:CODE`` (decimal or 0x..) or
        ``ACTION:drop:SECONDS[:lost]`` (``lost``: the request never reaches the register)."""
        parts = spec.strip().split(":")
        try:
            action = SimAction(parts[0])
        except ValueError:
            known = ", ".join(a.value for a in SimAction)
            raise ValueError(f"action fault {spec!r}: unknown action {parts[0]!r} (known: {known})") from None
        try:
            if len(parts) == 3 and parts[1] == "refuse":
                return self.refuse_next(action, int(parts[2], 0))
            if len(parts) in (3, 4) and parts[1] == "drop" and parts[3:] in ([], ["lost"]):
                return self.drop_link_during(action, float(parts[2]), execute=len(parts) == 3)
        except ValueError as exc:
            raise ValueError(f"action fault {spec!r}: {exc}") from None
        raise ValueError(f"action fault {spec!r}: expected ACTION:refuse:CODE or ACTION:drop:SECONDS[:lost]")

    def before_action(self, action: SimAction, outage: LinkOutage) -> int | None:
        """Apply what is scripted for ``action`` as the register starts it: the error code to refuse
        it with, or None. A link drop starts ``outage``; its ``request_lost`` then tells the device
        to skip the action (the request never arrived) rather than carry it out unanswered."""
        with self._lock:
            refusals, drops = self._refusals.get(action), self._drops.get(action)
            if refusals:
                return refusals.popleft()
            drop = drops.popleft() if drops else None
        if drop is not None:
            outage.begin(drop.seconds, swallow_answer=True)
            outage.request_lost = not drop.execute
        return None


class LinkOutage:
    """A device off the line until a moment; the answer being made when it starts can be lost."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._from = 0.0
        self._until = 0.0
        self._swallow = False
        self.request_lost = False  # the request that started the outage never reached the register

    def begin(self, seconds: float, *, swallow_answer: bool, after: float = 0.0) -> None:
        """Silent for ``seconds``, starting ``after`` seconds from now. ``swallow_answer`` loses the
        answer of the current request too (a cable pulled mid-action); a reboot instead finishes
        its answer (``after`` covers a handshake that ends after the answer, as ATOL v2's EOT)."""
        start = self._monotonic() + after
        self._from, self._until = start, max(self._until, start + seconds)
        self._swallow = self._swallow or swallow_answer

    @property
    def active(self) -> bool:
        return self._from <= self._monotonic() < self._until

    @property
    def over(self) -> bool:
        """An outage happened and has ended."""
        return 0 < self._until <= self._monotonic()

    def outgoing(self, answer: bytes) -> bytes:
        """What leaves the device of ``answer``, made by the request that may have started an outage."""
        swallow, self._swallow = self._swallow, False
        return b"" if swallow else answer

    def take_request_lost(self) -> bool:
        """True once after a lost request: the device's link layer must keep no answer to it."""
        lost, self.request_lost = self.request_lost, False
        return lost
