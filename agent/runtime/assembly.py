"""The agent runtime: device workers → sequencer → outbox → MQTT, plus replay and commands.

This module assembles the parts and sequences what they emit; the parts live beside it:
``device`` (the device worker), ``replay`` (backlog → ``hist``), ``commands`` (``cmd``
handling), ``actions`` (remote actions on a register), ``gap_reports`` (outbox drops →
``outbox_gap`` events), ``host`` (what they need from the runtime).

Threads: one worker per device (poll, change detection, heartbeat, events), the MQTT
supervisor (``agent.publisher``), one replay thread (backlog → ``hist``), one command thread
(``cmd`` messages are queued off paho's network thread so a command may publish), and a
housekeeping thread (outbox group commit, gap reports, health file).

Every state/event takes the next ``(session, seq)`` under one lock, is written to the outbox,
and — only when that session is the live connection — published at QoS 1 in seq order.
Anything not published live stays in the outbox and is replayed on ``hist`` after the next
connect, with its original envelope.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import socket
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from agent.config import AgentConfig
from agent.health import HealthReport, ThreadFailure, ThreadHealth, write_health
from agent.identity import AckFilter
from agent.ofd_link import OfdLinkMonitor
from agent.outbox import GapInfo, Outbox, OutboxError
from agent.publisher import MqttPublisher, Will
from agent.refusal import CollectorRefusal
from agent.runtime.actions import ActionRunner
from agent.runtime.commands import CommandHandler
from agent.runtime.device import DeviceOpener, DeviceWorker, open_driver
from agent.runtime.gap_reports import GapReporter
from agent.runtime.replay import BacklogReplay
from agent.supervision import SupervisedThread
from protocol.mqtt.errors import ContractError
from protocol.mqtt.rules import SCHEMA_VERSION, EventKind, StateReason
from protocol.mqtt.topics import (
    COLLECTOR_STATUS_TOPIC,
    ack_topic,
    agent_filters,
    birth_topic,
    cmd_topic,
    event_topic,
    state_topic,
    status_topic,
)
from protocol.mqtt.wire import (
    AckPayload,
    BirthPayload,
    EventPayload,
    RefusalPayload,
    RegisterState,
    StatePayload,
    StatusPayload,
    decode,
    encode,
)

log = logging.getLogger(__name__)

AGENT_VERSION = "0.1.0"
# Status messages are not sequenced (the LWT is fixed before any seq is used): they carry seq 0,
# and birth/state/event draw from the per-session counter, which also starts at 0.
STATUS_SEQ = 0
FIRST_SEQ = 0
STARTUP_CONNECT_WAIT = 3.0


def release_freed_memory() -> None:
    """Hand the heap freed after imports and model building back to the OS (glibc only).

    Building the pydantic schemas leaves megabytes of freed-but-kept heap; on a POS PC the
    agent should not sit on it (footprint target: 40 MB RSS).
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def utc_now() -> datetime:
    return datetime.now(UTC)


class AgentRuntime:
    """Owns the outbox, the sequencer, the MQTT connection and the device workers."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        opener: DeviceOpener = open_driver,
        now: Callable[[], datetime] = utc_now,
        outbox: Outbox | None = None,
    ) -> None:
        self.config = config
        self.agent_id = config.agent_id
        self.now = now
        self.stopping = threading.Event()
        self.outbox = outbox or Outbox(
            config.outbox.path,
            max_bytes=config.outbox.max_bytes,
            max_age=timedelta(seconds=config.outbox.max_age),
            commit_interval=config.outbox.commit_interval,
            ack_mode=config.ack_mode,
        )
        self.ofd_link = OfdLinkMonitor()
        self.workers = [DeviceWorker(self, i, d, opener) for i, d in enumerate(config.devices)]
        self.epoch, since_session = self.outbox.epoch()
        self._acks = AckFilter(self.epoch, since_session)
        self.refusal = CollectorRefusal(self.outbox)
        self._seq_lock = threading.Lock()
        self._session = self.outbox.next_session()  # records made before the first connect
        self._next_seq = FIRST_SEQ
        self._live_session: int | None = None
        self._commands = CommandHandler(self, ActionRunner(self, self.outbox))
        self._gap_reports = GapReporter(self, self.outbox)
        self._health_lock = threading.Lock()
        self._threads: list[SupervisedThread] = []
        self.failure: ThreadFailure | None = None  # the thread that could not recover, and why
        self.publisher = MqttPublisher(
            config.broker,
            self.agent_id,
            new_session=self.outbox.next_session,
            will=self._lwt,
            subscriptions=agent_filters(self.agent_id),
            on_connected=self._on_connected,
            on_message=self._on_message,
            on_disconnected=self._on_disconnected,
            on_fatal=self.fail,
            supervision=config.supervision,
        )
        self._replay = BacklogReplay(
            config, self.outbox, self.publisher, live_session=lambda: self._live_session, now=now, stopping=self.stopping
        )

    @property
    def replayed(self) -> int:
        """Backlog records replayed on ``hist`` so far."""
        return self._replay.replayed

    @property
    def unacked_resent(self) -> int:
        """Records sent again because no collector acked them (selective acks)."""
        return self._replay.unacked_resent

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        log.info(
            "agent %s starting with %d device(s)",
            self.agent_id,
            len(self.workers),
            extra={"agent": self.agent_id, "broker": self.config.broker.host},
        )
        self.publisher.start()
        for target, name in (
            (self._replay.run, "replay"),
            (self._commands.run, "commands"),
            (self._gap_reports.run, "housekeeping"),
        ):
            thread = self.supervised(name, target)
            thread.start()
            self._threads.append(thread)
        # Give the first connection a moment so the first snapshot goes out live, after the
        # birth; with the broker down the workers start anyway and the outbox keeps everything.
        self.publisher.wait_connected(STARTUP_CONNECT_WAIT)
        for worker in self.workers:
            worker.thread.start()
        release_freed_memory()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling, commit the outbox, publish ``offline`` (reason shutdown) and disconnect."""
        self.stopping.set()
        for worker in self.workers:
            worker.stop()
        for worker in self.workers:
            worker.thread.join(timeout)
        self._replay.wake.set()
        self._commands.stop()
        for thread in self._threads:
            thread.join(timeout)
        self.outbox.flush()
        self.publisher.stop(farewell=self._farewell, timeout=timeout)
        self.write_health()
        self.outbox.close()
        log.info("agent %s stopped", self.agent_id)

    def supervised(self, name: str, target: Callable[[], None]) -> SupervisedThread:
        return SupervisedThread(
            name, target, stopping=self.stopping, on_fatal=self.fail, policy=self.config.supervision
        )

    def fail(self, thread: str, reason: str) -> None:
        """A thread cannot recover: record it in the health file and stop (the process exits non-zero)."""
        with self._health_lock:
            if self.failure is None:
                self.failure = ThreadFailure(thread=thread, error=reason, at=self.now())
        self.stopping.set()  # first: nothing below may keep the process from exiting
        self.write_health()

    def run_forever(self) -> None:
        self.start()
        try:
            while not self.stopping.wait(1.0):
                pass
        finally:
            self.stop()

    # --- sequencing and emission --------------------------------------------------------

    def _emit(
        self,
        kind: Literal["state", "event"],
        register: str | None,
        topic: str,
        build: Callable[[int, int], Any],
        resolves_gap: GapInfo | None = None,
    ) -> tuple[int, int]:
        with self._seq_lock:
            session, seq = self._session, self._next_seq
            self._next_seq += 1
            payload = build(session, seq)
            raw = encode(payload)
            self.outbox.append(
                kind,
                register,
                session,
                seq,
                topic,
                raw,
                created_at=payload.ts,
                durable=kind == "event",
                resolves_gap=resolves_gap,
            )
            if self._live_session == session:
                self.publisher.publish(topic, raw, on_ack=lambda: self.outbox.mark_published(session, seq))
        return session, seq

    def _envelope(self, session: int, seq: int, device_ts: datetime | None = None) -> dict[str, Any]:
        """The fields every published payload starts with (see protocol.mqtt.models.Envelope)."""
        return {
            "v": SCHEMA_VERSION,
            "agent": self.agent_id,
            "session": session,
            "seq": seq,
            "epoch": self.epoch,
            "ts": self.now(),
            "device_ts": device_ts,
        }

    def emit_state(self, register: str, state: RegisterState, reason: StateReason) -> tuple[int, int]:
        def build(session: int, seq: int) -> StatePayload:
            return StatePayload(
                **self._envelope(session, seq, state.register_clock),
                register=register,
                reason=reason,
                state=state,
            )

        return self._emit("state", register, state_topic(self.agent_id, register), build)

    def emit_event(
        self,
        register: str | None,
        kind: EventKind | str,
        message: str,
        data: dict[str, Any],
        *,
        device_ts: datetime | None = None,
        resolves_gap: GapInfo | None = None,
    ) -> tuple[int, int]:
        def build(session: int, seq: int) -> EventPayload:
            return EventPayload(
                **self._envelope(session, seq, device_ts),
                register=register,
                kind=EventKind(kind),
                message=message,
                data=data,
            )

        return self._emit("event", register, event_topic(self.agent_id, register), build, resolves_gap)

    # --- connection hooks ---------------------------------------------------------------

    def _status(self, session: int, seq: int, status: Literal["online", "offline"], reason: str | None) -> bytes:
        return encode(
            StatusPayload(
                **self._envelope(session, seq),
                status=status,
                agent_version=AGENT_VERSION,
                reason=reason,
            )
        )

    def _lwt(self, session: int) -> Will:
        return Will(status_topic(self.agent_id), self._status(session, STATUS_SEQ, "offline", "lwt"))

    def _farewell(self, session: int) -> Will:
        with self._seq_lock:
            self._live_session = None
        return Will(status_topic(self.agent_id), self._status(session, STATUS_SEQ, "offline", "shutdown"))

    def _birth(self, session: int, seq: int) -> bytes:
        return encode(
            BirthPayload(
                **self._envelope(session, seq),
                agent_version=AGENT_VERSION,
                hostname=socket.gethostname(),
                devices=[w.info() for w in self.workers],
            )
        )

    def publish_birth(self) -> None:
        with self._seq_lock:
            session = self._live_session
            if session is None:
                return
            seq = self._next_seq
            self._next_seq += 1
            self.publisher.publish(birth_topic(self.agent_id), self._birth(session, seq))

    def _on_connected(self, session: int) -> None:
        # Under the sequencer lock so nothing live can slip in before status and birth.
        with self._seq_lock:
            self._session = session
            self._next_seq = FIRST_SEQ
            self._live_session = session
            self.publisher.publish(
                status_topic(self.agent_id), self._status(session, STATUS_SEQ, "online", None), retain=True
            )
            seq = self._next_seq
            self._next_seq += 1
            self.publisher.publish(birth_topic(self.agent_id), self._birth(session, seq))
        self._replay.wake.set()
        self.write_health()

    def _on_disconnected(self, session: int) -> None:
        with self._seq_lock:
            if self._live_session == session:
                self._live_session = None
        self.write_health()

    # --- downlink -----------------------------------------------------------------------

    def _on_message(self, topic: str, raw: bytes) -> None:
        """Runs on paho's network thread: cheap work only, commands are queued."""
        if topic == COLLECTOR_STATUS_TOPIC:
            self._replay.on_collector_status(raw)
        elif topic == ack_topic(self.agent_id):
            try:
                ack = decode(topic, raw)
            except ContractError as exc:
                log.warning("ignoring malformed ack: %s", exc)
                return
            if isinstance(ack, RefusalPayload):
                self.refusal.refused(ack)
                self.write_health()
            elif isinstance(ack, AckPayload):
                if self._acks.owns(ack):
                    if isinstance(ack.seq, int):  # absent or null: selective only
                        self.outbox.ack(ack.session, ack.seq)
                    if ack.ranges:
                        self.outbox.ack_ranges(ack.session, ack.ranges)
                    self.refusal.accepted()
                else:
                    log.warning("ignoring an ack for another installation of this agent (epoch %s)", ack.epoch)
        elif topic == cmd_topic(self.agent_id):
            self._commands.put(raw)

    # --- health ---------------------------------------------------------------------------

    def _all_threads(self) -> list[SupervisedThread]:
        publisher_thread = self.publisher.thread
        return [*([publisher_thread] if publisher_thread else []), *(w.thread for w in self.workers), *self._threads]

    @staticmethod
    def _thread_health(thread: SupervisedThread) -> ThreadHealth:
        return ThreadHealth(
            name=thread.name,
            alive=thread.is_alive(),
            restarts=thread.restarts,
            last_error=thread.last_error,
        )

    def _outbox_depth(self) -> int | None:
        try:
            return self.outbox.depth()
        except (sqlite3.Error, OutboxError) as exc:  # the health file must still be written
            log.warning("cannot read the outbox depth: %s", exc)
            return None

    def write_health(self) -> None:
        path = self.config.health_file
        if path is None:
            return
        report = HealthReport(
            agent_id=self.agent_id,
            written_at=self.now(),
            broker_connected=self.publisher.connected,
            session=self.publisher.session,
            outbox_depth=self._outbox_depth(),
            devices=[w.health() for w in self.workers],
            threads=[self._thread_health(t) for t in self._all_threads()],
            failure=self.failure,
            refused=self.refusal.current,
        )
        with self._health_lock:
            try:
                write_health(path, report)
            except OSError as exc:
                log.warning("cannot write health file %s: %s", path, exc)
