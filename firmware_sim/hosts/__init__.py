"""Hosts: carry a ``DeviceEndpoint``'s bytes over a pty, a TCP socket or the in-process ``sim://`` URL.

This package is also the pyserial URL-handler package for ``sim://`` (pyserial imports
``firmware_sim.hosts.protocol_sim``); the agent learns it from the ``kassa.serial_url_handlers``
entry point. :func:`register_sim` makes an in-process device reachable as ``sim://NAME`` so tests
can poke the model behind a port the agent opens by URL.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from firmware_sim.endpoint import DeviceEndpoint

log = logging.getLogger(__name__)


class Host(Protocol):
    @property
    def address(self) -> str:
        """What a client opens: a pty path, ``socket://127.0.0.1:PORT`` or ``sim://NAME``."""
        ...

    def unplug(self) -> None: ...

    def replug(self) -> None: ...

    def close(self) -> None: ...


def answer_steps(endpoint: DeviceEndpoint, data: bytes) -> list[tuple[float, bytes]]:
    """Feed ``data``; return the answer as (seconds to wait first, bytes to write) steps.

    Endpoints with a ``pacing`` method (``FaultyEndpoint``) decide delays and 1-byte splits.
    """
    answer = endpoint.feed(data)
    if not answer:
        return []
    pacing = getattr(endpoint, "pacing", None)
    steps: list[tuple[float, bytes]] = pacing(answer) if callable(pacing) else [(0.0, answer)]
    return steps


def serve(endpoint: DeviceEndpoint, data: bytes, write: Callable[[bytes], None], where: str) -> None:
    """Answer ``data`` through ``write``, honouring pacing; a device bug is logged, never raised.

    Raising would end the host's pump thread and turn one bad request into a dead register.
    """
    try:
        steps = answer_steps(endpoint, data)
    except Exception:
        log.exception("%s: the simulated device failed on %s", where, data.hex(" "))
        return
    for pause, chunk in steps:
        if pause:
            time.sleep(pause)
        write(chunk)


class Pluggable:
    """Cable semantics shared by hosts: unplugged = gone; replug = the device starts clean."""

    endpoint: DeviceEndpoint
    plugged: bool = True

    def unplug(self) -> None:
        self.plugged = False

    def replug(self) -> None:
        self.endpoint.reset()
        self.plugged = True


@dataclass
class SimRegistration(Pluggable):
    """A device registered as ``sim://NAME``; ``unplug`` makes open ports fail and opening refused."""

    name: str
    endpoint: DeviceEndpoint
    plugged: bool = True

    @property
    def address(self) -> str:
        return f"sim://{self.name}"

    def close(self) -> None:
        unregister_sim(self.name)


_registry: dict[str, SimRegistration] = {}
_registry_lock = threading.Lock()


def register_sim(name: str, endpoint: DeviceEndpoint) -> SimRegistration:
    """Make ``endpoint`` reachable as ``sim://name`` in this process (replaces an earlier one)."""
    if not name or "/" in name or "?" in name:
        raise ValueError(f"sim device name {name!r} must be non-empty, without '/' or '?'")
    registration = SimRegistration(name.lower(), endpoint)
    with _registry_lock:
        _registry[registration.name] = registration
    return registration


def unregister_sim(name: str) -> None:
    with _registry_lock:
        _registry.pop(name.lower(), None)


def registered_sim(name: str) -> SimRegistration | None:
    with _registry_lock:
        return _registry.get(name.lower())


def install_sim_url_handler() -> None:
    """Teach pyserial ``sim://`` in this process without the agent's entry-point registration."""
    import serial

    if __name__ not in serial.protocol_handler_packages:
        serial.protocol_handler_packages.append(__name__)
