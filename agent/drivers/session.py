"""The device-session interface: the only layer that drives a ``ByteLink``.

A session owns the link-level state machine of its protocol (from ``protocol.kkt``), retries
and per-command timeouts, and turns answers into a ``RegisterState``.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

from agent.drivers.link import ByteLink
from protocol.mqtt.wire import RegisterState


class DriverSession(Protocol):
    protocol: ClassVar[str]
    default_baudrates: ClassVar[tuple[int, ...]]  # tried in this order by `kassa-agent detect`

    def __init__(
        self, link: ByteLink, *, timeout: float = 1.0, retries: int = 3, password: int = ..., action_password: int | None = None
    ) -> None:
        """``password``: what the status commands carry (Shtrih: the system administrator's; ATOL:
        the access password); ``action_password``: what the register-changing actions run with."""
        ...

    def identify(self) -> str:
        """Cheap check that a register of this protocol answers; returns its model name.

        Raises ``NoAnswer``/``ProtocolViolation`` quickly when it is not one (used by detect).
        """
        ...

    def poll(self) -> RegisterState:
        """Run the full status poll and return the snapshot (``read_at`` left for the agent)."""
        ...
