"""pyserial URL handler for ``sim://``: a simulated register inside the agent's own process.

- ``sim://NAME`` — a device registered with :func:`firmware_sim.hosts.register_sim` (tests keep the
  model and can change it, or unplug it, while the agent polls through pyserial);
- ``sim://shtrih?scenario=long-shift&speed=60`` / ``sim://atol?scenario=healthy`` — a fresh register
  per open: the scenario's model on a :class:`SimClock` running ``speed`` times real time, with
  optional ``fault=corrupt:0.1`` (repeatable) and ``seed=N``.

Contract (see pyserial's ``protocol_loop``): pyserial imports this module from the package listed
in ``serial.protocol_handler_packages`` and instantiates ``Serial``, a ``SerialBase`` subclass;
``open`` parses the URL. A write is answered synchronously; the answer becomes readable at once,
or later when a fault delays it, so ``read`` honours the port timeout like a real line.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections import deque
from datetime import datetime
from typing import Any

from serial.serialutil import PortNotOpenError, SerialBase, SerialException

from firmware_sim.clock import SimClock
from firmware_sim.devices import UnknownProtocol, device_protocols, make_device
from firmware_sim.endpoint import DeviceEndpoint
from firmware_sim.faults import FaultSpecError, FaultyEndpoint, parse_fault
from firmware_sim.hosts import SimRegistration, answer_steps, registered_sim
from firmware_sim.scenario import ScenarioError, ScenarioRunner, load_scenario

URL_FORM = "sim://NAME or sim://PROTOCOL[?scenario=NAME|PATH&speed=N&fault=KIND[:SEL]&seed=N]"


def endpoint_from_url(url: str) -> tuple[DeviceEndpoint, SimRegistration | None]:
    """The endpoint a ``sim://`` URL names, and its registration when it is a registered device."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() != "sim" or not parts.netloc:
        raise SerialException(f"expected {URL_FORM}, got {url!r}")
    name = parts.netloc.lower()
    registration = registered_sim(name)
    options = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
    if registration is not None:
        if options:
            raise SerialException(f"{url}: a registered sim device takes no options ({', '.join(options)})")
        return registration.endpoint, registration
    if name not in device_protocols():
        raise SerialException(
            f"{url}: no sim device {name!r} registered in this process and not a protocol "
            f"({', '.join(device_protocols())}); expected {URL_FORM}"
        )
    unknown = set(options) - {"scenario", "speed", "fault", "seed"}
    if unknown:
        raise SerialException(f"{url}: unknown option {sorted(unknown)[0]!r}; expected {URL_FORM}")
    try:
        speed = float(options.get("speed", ["1"])[-1])
        seed = int(options.get("seed", ["0"])[-1])
        scenario = load_scenario(options.get("scenario", ["healthy"])[-1])
        faults = [parse_fault(spec) for spec in options.get("fault", [])]
        clock = SimClock(scenario.start or datetime.now().replace(microsecond=0), speed)
        model = scenario.build(clock)
        runner = ScenarioRunner(scenario, model)
        simulated = make_device(name, model)
        scenario.arm_action_faults(simulated.action_faults, name)  # type: ignore[attr-defined]
        device = runner.guard(simulated)
    except (ValueError, ScenarioError, FaultSpecError, UnknownProtocol) as exc:
        raise SerialException(f"{url}: {exc}") from exc
    return (FaultyEndpoint(device, faults, seed=seed) if faults else device), None


class Serial(SerialBase):  # type: ignore[misc]  # pyserial ships no type hints
    """A pyserial port whose other end is a simulated register."""

    is_open: bool  # set by SerialBase

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._endpoint: DeviceEndpoint | None = None
        self._registration: SimRegistration | None = None
        self._incoming: deque[tuple[float, bytes]] = deque()  # (ready at, bytes)
        self._ready = threading.Condition()
        super().__init__(*args, **kwargs)

    def open(self) -> None:
        if self.is_open:
            raise SerialException("port is already open")
        if self._port is None:
            raise SerialException("port must be configured before it can be used")
        self._endpoint, self._registration = endpoint_from_url(str(self.portstr or ""))
        if self._registration is not None:
            if not self._registration.plugged:
                raise SerialException(2, f"could not open port {self.portstr}: device unplugged")
            self._endpoint.reset()
        self.is_open = True
        self._incoming.clear()

    def close(self) -> None:
        self.is_open = False
        with self._ready:
            self._ready.notify_all()
        super().close()

    def _reconfigure_port(self) -> None:
        """Baud rate, parity … mean nothing in-process; every setting is accepted."""

    def _check(self) -> DeviceEndpoint:
        if not self.is_open or self._endpoint is None:
            raise PortNotOpenError()
        if self._registration is not None and not self._registration.plugged:
            raise SerialException("device disconnected (sim device unplugged)")
        return self._endpoint

    @property
    def in_waiting(self) -> int:
        self._check()
        now = time.monotonic()
        with self._ready:
            return sum(len(chunk) for at, chunk in self._incoming if at <= now)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        endpoint = self._check()
        steps = answer_steps(endpoint, bytes(data))
        at = time.monotonic()
        with self._ready:
            for pause, chunk in steps:
                at += pause
                self._incoming.append((at, chunk))
            self._ready.notify_all()
        return len(data)

    def read(self, size: int = 1) -> bytes:
        self._check()
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        out = bytearray()
        with self._ready:
            while len(out) < size:
                now = time.monotonic()
                while self._incoming and self._incoming[0][0] <= now and len(out) < size:
                    at, chunk = self._incoming.popleft()
                    take = size - len(out)
                    out += chunk[:take]
                    if len(chunk) > take:
                        self._incoming.appendleft((at, chunk[take:]))
                if len(out) >= size or (deadline is not None and now >= deadline) or not self.is_open:
                    break
                wake = [t for t in (deadline, self._incoming[0][0] if self._incoming else None) if t is not None]
                self._ready.wait(max(0.0, min(wake) - now) if wake else None)
                self._check()
        return bytes(out)

    def reset_input_buffer(self) -> None:
        self._check()
        now = time.monotonic()
        with self._ready:  # what has arrived is discarded; a delayed answer is still on its way
            self._incoming = deque(item for item in self._incoming if item[0] > now)

    def reset_output_buffer(self) -> None:
        """Writes are delivered synchronously: nothing is ever waiting to go out."""

    def flush(self) -> None:
        """Nothing to flush (see ``reset_output_buffer``); also called by ``close``."""

    def _update_break_state(self) -> None:
        pass

    def _update_rts_state(self) -> None:
        pass

    def _update_dtr_state(self) -> None:
        pass

    @property
    def cts(self) -> bool:
        return True

    @property
    def dsr(self) -> bool:
        return True

    @property
    def ri(self) -> bool:
        return False

    @property
    def cd(self) -> bool:
        return True
