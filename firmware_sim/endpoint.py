"""The one interface between a protocol's device role and the hosts that carry its bytes.

A host (pty, TCP, ``sim://``, fake USB) pumps whatever the host computer wrote into
:meth:`DeviceEndpoint.feed` and writes back what it returns. Fault injection wraps an endpoint.
"""

from __future__ import annotations

from typing import Protocol


class DeviceEndpoint(Protocol):
    def feed(self, data: bytes) -> bytes:
        """Consume bytes from the host; return the bytes the device sends in reply (maybe empty)."""
        ...

    def reset(self) -> None:
        """Forget partial input and pending answers (cable unplugged/replugged)."""
        ...

    def idle(self) -> bytes:
        """The line has been silent longer than the byte timeout: abandon a half-received frame.

        Real firmware does this (Shtrih: ~50 ms, spec §1.1), which is what lets a device recover
        from stray bytes such as another protocol's probe during ``kassa-agent detect``. Returns
        what the device sends unasked meanwhile (ATOL async results, specs §3.2), maybe nothing.
        """
        ...
