"""The device worker: polls one register on its own thread, passes each reading through the
plausibility gate, and turns what changed into states and events (link lost/regained, events
derived from two snapshots, heartbeats) for the runtime to sequence and publish."""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from msgspec.structs import replace

from agent.config import DeviceConfig
from agent.drivers.actions import ActionOutcome, OutcomeKind
from agent.events import derive_events
from agent.health import DeviceHealth
from agent.plausibility import PlausibilityGate
from agent.runtime.host import DeviceJob, RuntimeHost
from agent.runtime.publish_policy import PublishPolicy
from protocol.mqtt.actions import ActionName
from protocol.mqtt.rules import EventKind
from protocol.mqtt.topics import is_valid_id
from protocol.mqtt.wire import DeviceInfo, RegisterState

log = logging.getLogger(__name__)

class DevicePoller(Protocol):
    def poll(self) -> RegisterState: ...

    def close(self) -> None: ...


DeviceOpener = Callable[[DeviceConfig], DevicePoller]


def open_driver(device: DeviceConfig) -> DevicePoller:
    """The production opener: a reconnecting driver connection from the drivers registry."""
    from agent.drivers.registry import DeviceConnection

    connection: DevicePoller = DeviceConnection(
        device.protocol,
        device.url,
        baudrate=device.baudrate,
        access_password=device.access_password,
        action_password=device.action_password,
    )
    return connection


def topic_safe_id(derived: str) -> str:
    """A derived register id (vendor + serial as the register reports it) made fit for a topic."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", derived).lstrip("_.-")[:64]
    return cleaned if is_valid_id(cleaned) else "register-unknown"


class DeviceWorker:
    """Polls one register on its own thread; never lets an exception end the loop."""

    def __init__(self, runtime: RuntimeHost, index: int, config: DeviceConfig, opener: DeviceOpener) -> None:
        self.runtime = runtime
        self.config = config
        self._opener = opener
        self._poller: DevicePoller | None = None
        self._wake = threading.Event()
        self._poll_now = False
        self._lock = threading.Lock()
        self.state: RegisterState | None = None
        self.link_up = False
        self.ever_up = False
        self.error: str | None = None
        self.down_since: datetime | None = None
        self.last_poll: datetime | None = None
        self.last_ok: datetime | None = None
        self._last_state_publish = 0.0
        self._published: RegisterState | None = None  # the last state sent, for the publishing policy
        self._policy = PublishPolicy(counter_interval=runtime.config.counter_interval, heartbeat=runtime.config.heartbeat)
        self._jobs: queue.SimpleQueue[DeviceJob] = queue.SimpleQueue()
        self._fallback_id = f"device-{index + 1}"
        self.gate = PlausibilityGate(lambda: self.register_id)
        self.thread = runtime.supervised(f"device-{index + 1}", self._run)

    @property
    def register_id(self) -> str:
        if self.config.register_id:
            return self.config.register_id
        return topic_safe_id(self.state.register_id) if self.state is not None else self._fallback_id

    def info(self) -> DeviceInfo:
        with self._lock:
            return DeviceInfo(
                register_id=self.register_id,
                protocol=self.config.protocol,
                url=self.config.url,
                link_up=self.link_up,
                error=self.error,
                state=self.state,
            )

    def health(self) -> DeviceHealth:
        return DeviceHealth(
            register_id=self.register_id,
            protocol=self.config.protocol,
            url=self.config.url,
            link_up=self.link_up,
            last_poll=self.last_poll,
            last_ok=self.last_ok,
            error=self.error,
        )

    def request_poll(self) -> None:
        self._poll_now = True
        self._wake.set()

    def stop(self) -> None:
        self._wake.set()

    def submit(self, job: DeviceJob) -> None:
        self._jobs.put(job)
        self._wake.set()

    def perform(self, action: ActionName, local_now: datetime) -> ActionOutcome:
        """Run a remote action through the driver (on this worker's thread, via a submitted job)."""
        try:
            if self._poller is None:
                self._poller = self._opener(self.config)
        except Exception as exc:
            return ActionOutcome(OutcomeKind.LINK_LOST, meaning=f"{type(exc).__name__}: {exc}")
        perform = getattr(self._poller, "perform", None)
        if perform is None:
            return ActionOutcome(OutcomeKind.UNSUPPORTED, meaning="драйвер этой кассы не выполняет удалённые действия")
        outcome: ActionOutcome = perform(action, local_now)
        return outcome

    def poll_now(self) -> str | None:
        self._poll_now = True
        self.poll_once()
        return None if self.link_up else self.error or "no answer"

    def _run_jobs(self) -> bool:
        """Run the submitted jobs; True if any ran (each polls after touching the register)."""
        ran = False
        while not self.runtime.stopping.is_set():
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            ran = True
            try:
                job(self)
            except Exception:
                log.exception("device worker %s: a submitted job failed", self.register_id)
        return ran

    def _run(self) -> None:
        stopping = self.runtime.stopping
        while not stopping.is_set():
            started = time.monotonic()
            try:
                if not self._run_jobs():
                    self.poll_once()
            except Exception:
                log.exception("device worker %s: unexpected error", self.register_id)
            self.runtime.write_health()
            left = self.config.poll_interval - (time.monotonic() - started)
            if left > 0 and not self._poll_now and self._jobs.empty():
                self._wake.wait(left)
            self._wake.clear()
        if self._poller is not None:
            self._close_poller()

    def _close_poller(self) -> None:
        try:
            if self._poller is not None:
                self._poller.close()
        except Exception as exc:
            log.debug("closing %s: %s", self.config.url, exc)
        self._poller = None

    def poll_once(self) -> None:
        forced = self._poll_now
        self._poll_now = False
        now = self.runtime.now()
        self.last_poll = now
        try:
            if self._poller is None:
                self._poller = self._opener(self.config)
            poller = self._poller
            raw = poller.poll()
        except Exception as exc:  # driver, link and decode errors alike: the register is unreachable
            self._on_failure(now, exc)
            return
        state = self.gate.review(raw, reread=poller.poll)  # a checksum is no proof: values that matter are checked
        # After the gate: the PC's own network test needs no re-read. It runs on its own thread.
        state = self.runtime.ofd_link.attach(state)
        self._on_success(now, replace(state, read_at=now), forced)

    def _on_failure(self, now: datetime, exc: Exception) -> None:
        message = f"{type(exc).__name__}: {exc}"
        was_up = self.link_up
        with self._lock:
            previous_error, self.error = self.error, message
            self.link_up = False
            if was_up:
                self.down_since = now
        if was_up:
            log.warning("link to %s lost: %s", self.register_id, message, extra={"register": self.register_id})
            self.runtime.emit_event(
                self.register_id,
                EventKind.LINK_LOST,
                f"Связь с ККТ потеряна: {message}",
                {"error": message, "url": self.config.url},
                device_ts=None,
            )
        elif message != previous_error:  # never reached yet, or failing differently: tell the installer
            log.warning("cannot poll %s: %s", self.config.url, message, extra={"register": self.register_id})
            if not self.ever_up and previous_error is None:
                # The birth went out before this first poll, with error null: re-announce with the reason
                # (e.g. a wrong protocol), which no link_lost event carries for a register never reached.
                self.runtime.publish_birth()
        else:
            log.debug("poll of %s failed again: %s", self.config.url, message)

    def _on_success(self, now: datetime, state: RegisterState, forced: bool) -> None:
        prev = self.state
        was_down = self.ever_up and not self.link_up
        with self._lock:
            self.state = state
            self.link_up = True
            self.ever_up = True
            self.error = None
            self.last_ok = now
            down_since, self.down_since = self.down_since, None
        register = self.register_id
        if prev is None and self.config.register_id is None:
            # The birth went out before this register was first read, under a placeholder id:
            # re-announce so the collector's view names the register its states arrive under.
            self.runtime.publish_birth()
        if was_down:
            down_for = (now - down_since).total_seconds() if down_since else None
            log.info("link to %s regained", register, extra={"register": register})
            self.runtime.emit_event(
                register,
                EventKind.LINK_REGAINED,
                "Связь с ККТ восстановлена",
                {"url": self.config.url, "down_seconds": down_for},
                device_ts=state.register_clock,
            )
        if prev is not None:
            for event in derive_events(prev, state):
                self.runtime.emit_event(
                    register, event.kind, event.message, event.data, device_ts=state.register_clock
                )
        reason = self._policy.decide(
            self._published, state, forced=forced, since_publish=time.monotonic() - self._last_state_publish
        )
        if reason is not None:
            self._last_state_publish = time.monotonic()
            self._published = state
            self.runtime.emit_state(register, state, reason)
