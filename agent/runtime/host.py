"""What the runtime's parts (device workers, command handling, gap reports) need from the
runtime that assembles them: one protocol, so no part imports ``AgentRuntime``."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from agent.config import AgentConfig
from agent.drivers.actions import ActionOutcome
from agent.ofd_link import OfdLinkMonitor
from agent.outbox import GapInfo
from agent.supervision import SupervisedThread
from protocol.mqtt.actions import ActionName
from protocol.mqtt.rules import EventKind, StateReason
from protocol.mqtt.wire import RegisterState


class DeviceAccess(Protocol):
    """What a job may do on the device worker's thread, the one that owns the register's link."""

    def perform(self, action: ActionName, local_now: datetime) -> ActionOutcome: ...

    def poll_now(self) -> str | None:
        """Poll at once and publish the state even if nothing changed; the error if it failed."""
        ...


DeviceJob = Callable[[DeviceAccess], None]


class Pollable(Protocol):
    @property
    def register_id(self) -> str: ...

    def request_poll(self) -> None: ...

    def submit(self, job: DeviceJob) -> None:
        """Run ``job`` on the worker's thread before its next poll (no concurrent link access)."""
        ...


class RuntimeHost(Protocol):
    """Implemented by ``agent.runtime.assembly.AgentRuntime``."""

    config: AgentConfig
    stopping: threading.Event
    now: Callable[[], datetime]
    ofd_link: OfdLinkMonitor  # one for the agent: each OFD server is checked at most once a minute

    @property
    def workers(self) -> Sequence[Pollable]: ...

    def supervised(self, name: str, target: Callable[[], None]) -> SupervisedThread: ...

    def write_health(self) -> None: ...

    def publish_birth(self) -> None: ...

    def emit_state(self, register: str, state: RegisterState, reason: StateReason) -> tuple[int, int]: ...

    def emit_event(
        self,
        register: str | None,
        kind: EventKind | str,
        message: str,
        data: dict[str, Any],
        *,
        device_ts: datetime | None = None,
        resolves_gap: GapInfo | None = None,
    ) -> tuple[int, int]: ...
