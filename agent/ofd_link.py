"""The agent's own test of the OFD server the register is set to use: DNS, then one TCP connect.

It answers "does the store's network reach the OFD?" from the register's PC. Bounded on every
side: a 3 s connect timeout, at most one check per host:port a minute, never a byte of payload
(the socket is closed right after the handshake), and it runs on its own daemon thread so a slow
resolver never delays polling. The device worker attaches the latest result to each state after
the plausibility gate (``OfdLinkMonitor.attach``), so the gate never holds it back.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from msgspec.structs import replace

from protocol.mqtt.wire import OfdLinkCheck, RegisterState

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 3.0  # seconds for the TCP handshake
CHECK_INTERVAL = 60.0  # seconds between checks of one host:port


def check_ofd_link(host: str, port: int, *, timeout: float = CONNECT_TIMEOUT) -> OfdLinkCheck:
    """Resolve ``host`` and open (then close) one TCP connection to ``port``; never raises."""
    started = time.monotonic()

    def result(*, resolved: bool, connected: bool, error: str | None) -> OfdLinkCheck:
        elapsed = int((time.monotonic() - started) * 1000)
        return OfdLinkCheck(
            host=host, port=port, resolved=resolved, connected=connected, error=error,
            elapsed_ms=elapsed, checked_at=datetime.now(UTC),
        )

    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        return result(resolved=False, connected=False, error=f"DNS: {exc}")
    last_error = "no address to connect to"
    for family, kind, proto, _, address in addresses:
        left = timeout - (time.monotonic() - started)
        if left <= 0:
            last_error = f"timed out after {timeout:g} s"
            break
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(left)
                sock.connect(address)
        except TimeoutError:
            last_error = f"timed out after {timeout:g} s"
        except OSError as exc:
            last_error = exc.strerror or str(exc)
        else:
            return result(resolved=True, connected=True, error=None)
    return result(resolved=True, connected=False, error=f"TCP: {last_error}")


Checker = Callable[[str, int], OfdLinkCheck]


class OfdLinkMonitor:
    """Runs ``check_ofd_link`` in the background for the server a register reports."""

    def __init__(self, checker: Checker = check_ofd_link, *, interval: float = CHECK_INTERVAL) -> None:
        self._checker = checker
        self.interval = interval
        self._lock = threading.Lock()
        self._results: dict[tuple[str, int], OfdLinkCheck] = {}
        self._started: dict[tuple[str, int], float] = {}  # monotonic time of the last check's start
        self._running: set[tuple[str, int]] = set()

    def attach(self, state: RegisterState) -> RegisterState:
        """``state`` with the latest check of its OFD server; starts a check when one is due."""
        host, port = state.ofd.server_host, state.ofd.server_port
        if not host or not port:
            return state
        target = (host, port)
        self._start_if_due(target)
        with self._lock:
            latest = self._results.get(target)
        if latest is None:
            return state
        return replace(state, ofd=replace(state.ofd, link_check=latest))

    def wait_idle(self, timeout: float) -> bool:
        """Block until no check runs (tests and shutdown); False if one still runs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._running:
                    return True
            time.sleep(0.01)
        return False

    def _start_if_due(self, target: tuple[str, int]) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._started.get(target)
            if target in self._running or (last is not None and now - last < self.interval):
                return
            self._started[target] = now
            self._running.add(target)
        threading.Thread(target=self._run, args=(target,), name=f"ofd-link {target[0]}", daemon=True).start()

    def _run(self, target: tuple[str, int]) -> None:
        try:
            outcome = self._checker(*target)
            log.info(
                "OFD link check %s:%s: resolved=%s connected=%s %s",
                target[0], target[1], outcome.resolved, outcome.connected, outcome.error or "",
            )
            with self._lock:
                self._results[target] = outcome
        except Exception:  # a checker bug must not kill the worker's view; the next minute retries
            log.exception("OFD link check of %s:%s failed", *target)
        finally:
            with self._lock:
                self._running.discard(target)
