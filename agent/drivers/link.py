"""``ByteLink``: the small byte-stream interface every device session talks through.

Implementations live in ``agent.drivers.transport`` (pyserial ``serial_for_url``, TCP) and
``agent.drivers.usb`` (pyusb bulk endpoints). Sessions never import pyserial or pyusb.
"""

from __future__ import annotations

from typing import Protocol


class LinkError(Exception):
    """The transport itself failed; ``hint`` tells the installer what to do about it."""

    def __init__(self, message: str, hint: str = "") -> None:
        self.hint = hint
        super().__init__(f"{message}. {hint}" if hint else message)


class PortNotFound(LinkError):
    pass


class PortPermissionDenied(LinkError):
    pass


class LinkClosed(LinkError):
    """The device went away (cable unplugged, TCP connection dropped)."""


class ByteLink(Protocol):
    url: str

    def open(self) -> None: ...

    def close(self) -> None: ...

    @property
    def is_open(self) -> bool: ...

    def write(self, data: bytes) -> None: ...

    def read(self, size: int, timeout: float) -> bytes:
        """Up to ``size`` bytes; returns early with what arrived when ``timeout`` seconds pass."""
        ...

    def discard_input(self) -> None: ...
