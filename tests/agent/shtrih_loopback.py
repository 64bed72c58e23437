"""In-memory ``ByteLink`` for Shtrih session tests: pumps a ``DeviceEndpoint`` in-process.

Device replies are "on the wire" until the next ``read``: ``discard_input`` only drops what has
already arrived, like a real port, so late bytes (the TCP stray FF) reach the next command.
An empty read means the timeout passed, without sleeping, so fault tests run in virtual time.
"""

from __future__ import annotations

from collections.abc import Callable

from firmware_sim.endpoint import DeviceEndpoint

Mangle = Callable[[bytes], bytes]


class ShtrihLoopback:
    url = "loopback://shtrih"

    def __init__(self, device: DeviceEndpoint, mangle: Mangle | None = None) -> None:
        self.device = device
        self.mangle = mangle
        self.written = bytearray()
        self.delivered = bytearray()  # everything the host has read, to check what reached it
        self.writes = 0
        self._in_flight = bytearray()
        self._arrived = bytearray()
        self._open = False

    def open(self) -> None:
        self._open = True

    def close(self) -> None:
        self._open = False

    @property
    def is_open(self) -> bool:
        return self._open

    def write(self, data: bytes) -> None:
        self.written += data
        self.writes += 1
        reply = self.device.feed(data)
        self._in_flight += self.mangle(reply) if self.mangle else reply

    def read(self, size: int, timeout: float) -> bytes:
        self._arrived += self._in_flight
        self._in_flight.clear()
        chunk = bytes(self._arrived[:size])
        del self._arrived[:size]
        self.delivered += chunk
        return chunk

    def discard_input(self) -> None:
        self._arrived.clear()


class CorruptFrames:
    """Flip the LRC of the next ``times`` answer frames the device sends (``None`` = all)."""

    def __init__(self, times: int | None) -> None:
        self.left = times

    def __call__(self, reply: bytes) -> bytes:
        if len(reply) < 4 or self.left == 0:
            return reply
        if self.left is not None:
            self.left -= 1
        return reply[:-1] + bytes((reply[-1] ^ 0x5A,))


def silent(_: bytes) -> bytes:
    return b""
