"""Which ``DriverSession`` class speaks each protocol, imported only when first used.

Dotted names keep ``kassa-agent --help`` fast and keep one broken driver from breaking the
others. :class:`DeviceConnection` is what the runtime polls: it (re)opens the link lazily, so a
register that was unplugged and plugged back is polled again without restarting the agent.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar, cast

from agent.drivers.actions import ActionOutcome, ActionSession, OutcomeKind, perform_action
from agent.drivers.errors import ChecksumError, DriverError, NoAnswer, split_hint
from agent.drivers.link import ByteLink, LinkError, PortNotFound, PortPermissionDenied
from agent.drivers.session import DriverSession
from agent.drivers.transport import open_link
from protocol.mqtt.actions import ActionName
from protocol.mqtt.wire import RegisterState

log = logging.getLogger(__name__)
T = TypeVar("T")
# Failures of the line rather than of the register: worth one more try of the whole call.
RETRIED_ONCE = (LinkError, NoAnswer, ChecksumError)

SESSION_CLASSES: dict[str, str] = {
    "shtrih": "agent.drivers.shtrih:ShtrihSession",
    "shtrih-alt": "agent.drivers.shtrih:ShtrihAltSession",
    "atol": "agent.drivers.atol:AtolSession",
    "atol2": "agent.drivers.atol:AtolV2Session",
}
# Shtrih first: its probe starts with a lone ENQ that other devices ignore, while an ATOL
# frame may contain 02h, which a Shtrih takes for STX and then waits for a long "frame". The
# alternative link next: a register set to it ignores the standard probe's bytes. ATOL v2 last:
# older firmware, and its ENQ/ACK probe costs the most per baud rate.
DETECTION_ORDER = ("shtrih", "shtrih-alt", "atol", "atol2")
DEFAULT_TIMEOUT = 1.0
DEFAULT_RETRIES = 3


class UnknownProtocol(ValueError):
    def __init__(self, protocol: str) -> None:
        self.protocol = protocol
        super().__init__(f"unknown protocol {protocol!r}: known protocols are {', '.join(available_protocols())}")


class DriverUnavailable(ImportError):
    """The protocol is known but its driver module cannot be imported (a broken install)."""


def available_protocols() -> list[str]:
    return sorted(SESSION_CLASSES)


def detection_order() -> list[str]:
    """Protocols in the order auto-detection tries them (see :data:`DETECTION_ORDER`)."""
    return [name for name in DETECTION_ORDER if name in SESSION_CLASSES]


def get_session_class(protocol: str) -> type[DriverSession]:
    try:
        module_name, _, attr = SESSION_CLASSES[protocol.lower()].partition(":")
    except KeyError:
        raise UnknownProtocol(protocol) from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise DriverUnavailable(f"the {protocol} driver ({module_name}) cannot be loaded: {exc}") from exc
    session_class: type[DriverSession] = getattr(module, attr)
    return session_class


def default_baudrate(protocol: str) -> int:
    return get_session_class(protocol).default_baudrates[0]


class DeviceConnection:
    """One register: a session over a link that is reopened on the next ``poll`` after it fails.

    A line failure (``LinkError``, no answer, checksum) is retried once — a lost answer or two
    should not fail a whole poll — and when the retry fails too, the first error is raised with
    the retry's reason added.
    A ``LinkError`` closes the link (unplugged cable, dropped TCP, port gone), so the retry, and
    later the next ``poll``, opens the port again. Other driver errors leave the link open.
    """

    def __init__(
        self,
        protocol: str,
        url: str,
        *,
        baudrate: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        access_password: int | None = None,
        action_password: int | None = None,
    ) -> None:
        """``access_password`` (what the status reads carry) and ``action_password`` (what the
        register-changing actions run with) default to the session class's own defaults."""
        self.session_class = get_session_class(protocol)
        self.protocol = protocol.lower()
        self.url = url
        self.baudrate = baudrate or self.session_class.default_baudrates[0]
        self.timeout = timeout
        self.retries = retries
        self.passwords: dict[str, int] = {}
        if access_password is not None:
            self.passwords["password"] = access_password
        if action_password is not None:
            self.passwords["action_password"] = action_password
        self.link: ByteLink | None = None
        self.session: DriverSession | None = None
        self.reconnects = 0

    def _ensure_session(self) -> DriverSession:
        if self.session is None or self.link is None or not self.link.is_open:
            self._drop()
            self.link = open_link(self.url, self.baudrate)
            self.session = self.session_class(self.link, timeout=self.timeout, retries=self.retries, **self.passwords)
            self.reconnects += 1
            log.debug("%s: link to %s opened (%d)", self.protocol, self.url, self.reconnects)
        return self.session

    def _drop(self) -> None:
        if self.link is not None:
            self.link.close()
        self.link = self.session = None

    def _use(self, call: Callable[[DriverSession], T]) -> T:
        try:
            return self._once(call)
        except (PortNotFound, PortPermissionDenied):
            raise  # the port cannot even be opened: trying again at once changes nothing
        except RETRIED_ONCE as first:
            log.debug("%s: %s; retrying once", self.url, first)
            try:
                return self._once(call)
            except (*RETRIED_ONCE, PortNotFound, PortPermissionDenied) as second:
                raise with_retry_failure(first, second) from second

    def _once(self, call: Callable[[DriverSession], T]) -> T:
        try:
            return call(self._ensure_session())
        except LinkError:
            self._drop()  # the next call reopens the port
            raise

    def identify(self) -> str:
        return self._use(lambda session: session.identify())

    def poll(self) -> RegisterState:
        return self._use(lambda session: session.poll())

    def perform(self, action: ActionName, local_now: datetime) -> ActionOutcome:
        """Run a remote action once — never retried like a poll (see ``agent.drivers.actions``).
        Opening the port may fail: that too is the link lost, the action not started."""
        try:
            session = self._ensure_session()
        except LinkError as exc:
            return ActionOutcome(OutcomeKind.LINK_LOST, meaning=str(exc))
        outcome = perform_action(cast(ActionSession, session), action, local_now)
        if outcome.kind is OutcomeKind.LINK_LOST:
            self._drop()  # the next poll reopens the port and finds out what the register did
        return outcome

    def close(self) -> None:
        self._drop()

    def __enter__(self) -> DeviceConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def with_retry_failure(first: LinkError | DriverError, retry: Exception) -> LinkError | DriverError:
    """The first failure (same type and hint: it is the cause) with how the retry failed added."""
    text, hint = split_hint(first)
    retry_text, _ = split_hint(retry)
    text = f"{text} (twice)" if retry_text == text else f"{text} (retried once: {retry_text})"
    return type(first)(text, hint)


def open_session(
    protocol: str,
    url: str,
    *,
    baudrate: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
) -> DeviceConnection:
    """A reconnecting connection to one register (the link opens on first use)."""
    return DeviceConnection(protocol, url, baudrate=baudrate, timeout=timeout, retries=retries)
