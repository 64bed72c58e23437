"""The agent runtime: device workers → sequencer → outbox → MQTT, plus replay and commands.

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
import queue
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from agent.config import AgentConfig, DeviceConfig
from agent.events import derive_events
from agent.health import DeviceHealth, HealthReport, ThreadFailure, ThreadHealth, write_health
from agent.identity import AckFilter
from agent.outbox import GapInfo, Outbox, OutboxError, OutboxRecord
from agent.plausibility import PlausibilityGate
from agent.publisher import MqttPublisher, Will
from agent.refusal import CollectorRefusal
from agent.supervision import SupervisedThread
from protocol.kkt.state import RegisterState
from protocol.mqtt.errors import ContractError
from protocol.mqtt.models import (
    SCHEMA_VERSION,
    AckPayload,
    BirthPayload,
    CollectorStatusPayload,
    CommandPayload,
    DeviceInfo,
    EventKind,
    EventPayload,
    RefusalPayload,
    StatePayload,
    StatusPayload,
    decode,
    encode,
    pack_hist_batches,
)
from protocol.mqtt.topics import (
    COLLECTOR_STATUS_TOPIC,
    ack_topic,
    agent_filters,
    birth_topic,
    cmd_topic,
    event_topic,
    hist_topic,
    is_valid_id,
    state_topic,
    status_topic,
)

log = logging.getLogger(__name__)

AGENT_VERSION = "0.1.0"
# Status messages are not sequenced (the LWT is fixed before any seq is used): they carry seq 0,
# and birth/state/event draw from the per-session counter, which also starts at 0.
STATUS_SEQ = 0
FIRST_SEQ = 0
STARTUP_CONNECT_WAIT = 3.0
HOUSEKEEPING_INTERVAL = 1.0  # seconds between checks for outbox drops to report
# The replay also re-checks on a timer, not only after a connect: a live publish whose PUBACK
# never came (connection dropped after the send) becomes backlog once the outbox's grace ends.
REPLAY_RECHECK_INTERVAL = 2.0
StateReason = Literal["change", "heartbeat", "rebirth", "poll-now"]
# Fields that change on every poll without meaning anything changed.
_NOISE_FIELDS = {"read_at": True, "register_clock": True}


class DevicePoller(Protocol):
    def poll(self) -> RegisterState: ...

    def close(self) -> None: ...


DeviceOpener = Callable[[DeviceConfig], DevicePoller]


def open_driver(device: DeviceConfig) -> DevicePoller:
    """The production opener: a reconnecting driver connection from the drivers registry."""
    from agent.drivers.registry import DeviceConnection

    connection: DevicePoller = DeviceConnection(device.protocol, device.url, baudrate=device.baudrate)
    return connection


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


def topic_safe_id(derived: str) -> str:
    """A derived register id (vendor + serial as the register reports it) made fit for a topic."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", derived).lstrip("_.-")[:64]
    return cleaned if is_valid_id(cleaned) else "register-unknown"


def meaningful(state: RegisterState) -> dict[str, Any]:
    """The snapshot minus per-poll noise, for change detection."""
    return state.model_dump(exclude=_NOISE_FIELDS)


class DeviceWorker:
    """Polls one register on its own thread; never lets an exception end the loop."""

    def __init__(self, runtime: AgentRuntime, index: int, config: DeviceConfig, opener: DeviceOpener) -> None:
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

    def _run(self) -> None:
        stopping = self.runtime.stopping
        while not stopping.is_set():
            started = time.monotonic()
            try:
                self.poll_once()
            except Exception:
                log.exception("device worker %s: unexpected error", self.register_id)
            self.runtime.write_health()
            left = self.config.poll_interval - (time.monotonic() - started)
            if left > 0 and not self._poll_now:
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
        self._on_success(now, state.model_copy(update={"read_at": now}), forced)

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
        reason: StateReason | None = None
        if prev is None or meaningful(prev) != meaningful(state):
            reason = "change"
        elif forced:
            reason = "poll-now"
        elif time.monotonic() - self._last_state_publish >= self.runtime.config.heartbeat:
            reason = "heartbeat"
        if reason is not None:
            self._last_state_publish = time.monotonic()
            self.runtime.emit_state(register, state, reason)


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
        self.workers = [DeviceWorker(self, i, d, opener) for i, d in enumerate(config.devices)]
        self.epoch, since_session = self.outbox.epoch()
        self._acks = AckFilter(self.epoch, since_session)
        self.refusal = CollectorRefusal(self.outbox)
        self._seq_lock = threading.Lock()
        self._session = self.outbox.next_session()  # records made before the first connect
        self._next_seq = FIRST_SEQ
        self._live_session: int | None = None
        self._collector_online: bool | None = None  # None: never seen its retained status
        self._replay_wake = threading.Event()
        self._commands: queue.Queue[bytes] = queue.Queue()
        self._health_lock = threading.Lock()
        self._threads: list[SupervisedThread] = []
        self.failure: ThreadFailure | None = None  # the thread that could not recover, and why
        self.replayed = 0
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
            (self._replay_loop, "replay"),
            (self._command_loop, "commands"),
            (self._housekeeping_loop, "housekeeping"),
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
        self._replay_wake.set()
        self._commands.put(b"")
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
        self._replay_wake.set()
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
            self._on_collector_status(raw)
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
                    self.outbox.ack(ack.session, ack.seq)
                    self.refusal.accepted()
                else:
                    log.warning("ignoring an ack for another installation of this agent (epoch %s)", ack.epoch)
        elif topic == cmd_topic(self.agent_id):
            self._commands.put(raw)

    def _on_collector_status(self, raw: bytes) -> None:
        if not raw:  # retained status cleared
            self._collector_online = None
            return
        try:
            status = CollectorStatusPayload.model_validate_json(raw)
        except ValueError as exc:
            log.warning("ignoring malformed collector status: %s", exc)
            return
        self._collector_online = status.status == "online"
        log.info("collector is %s", status.status)
        if self._collector_online:
            self._replay_wake.set()

    def _command_loop(self) -> None:
        topic = cmd_topic(self.agent_id)
        while not self.stopping.is_set():
            raw = self._commands.get()
            if self.stopping.is_set():
                return
            try:
                self.handle_command(topic, raw)
            except Exception:
                log.exception("command handling failed")

    def handle_command(self, topic: str, raw: bytes) -> None:
        try:
            command = decode(topic, raw)
        except ContractError as exc:
            log.warning("malformed command: %s", exc)
            self.emit_event(
                None,
                EventKind.COMMAND_ERROR,
                f"Некорректная команда: {exc}",
                {"reason": exc.reason, "error": str(exc)},
            )
            return
        if not isinstance(command, CommandPayload):
            return
        log.info("command %s (%s)", command.cmd, command.id, extra={"command": command.cmd})
        if command.cmd == "rebirth":
            self.publish_birth()
        elif command.cmd == "poll-now":
            for worker in self.workers:
                worker.request_poll()
        else:
            self.emit_event(
                None,
                EventKind.COMMAND_ERROR,
                f"Неизвестная команда: {command.cmd}",
                {"id": command.id, "cmd": command.cmd, "reason": "unknown_command"},
            )

    # --- replay -------------------------------------------------------------------------

    def replay_allowed(self) -> bool:
        if self._collector_online is None:
            return self.config.ack_mode == "puback"
        return self._collector_online

    def _replay_loop(self) -> None:
        while not self.stopping.is_set():
            self._replay_wake.wait(REPLAY_RECHECK_INTERVAL)
            self._replay_wake.clear()
            try:
                self._replay_backlog()
            except Exception:
                log.exception("backlog replay failed; retrying later")

    def _replay_backlog(self) -> None:
        """Send older sessions' rows on ``hist`` oldest first, at most ``replay.rate`` records/s."""
        interval_per_record = 1.0 / self.config.replay.rate
        cursor: tuple[int, int] | None = None
        connection = self._live_session
        while not self.stopping.is_set():
            live = self._live_session
            if live is None or live != connection or not self.replay_allowed():
                return
            rows: list[OutboxRecord] = self.outbox.backlog(
                self.config.replay.batch, exclude_session=live, after=cursor
            )
            if not rows:
                return
            cursor = (rows[-1].session, rows[-1].seq)
            started = time.monotonic()
            batches = pack_hist_batches(self.agent_id, self.now(), [(row.kind, row.payload) for row in rows])
            for raw in batches:
                done = threading.Event()
                if not self.publisher.publish(hist_topic(self.agent_id), raw, on_ack=done.set):
                    return
                if not done.wait(10.0):
                    return  # connection trouble; the next connect replays again
            self.outbox.mark_published_many((row.session, row.seq) for row in rows)
            self.replayed += len(rows)
            pause = len(rows) * interval_per_record - (time.monotonic() - started)
            if pause > 0 and self.stopping.wait(pause):
                return

    # --- housekeeping -------------------------------------------------------------------

    def _housekeeping_loop(self) -> None:
        # The outbox group-commits on its own thread; here only drops are turned into events, at
        # most one report per gap_report_interval: a full outbox keeps dropping, and a report per
        # second would mostly report itself.
        next_report = 0.0
        while not self.stopping.wait(HOUSEKEEPING_INTERVAL):
            if time.monotonic() < next_report:
                continue
            try:
                attempted = self._report_gap()
            except Exception as exc:
                log.error("outbox gap report failed, retrying in %.0f s: %s", self.config.outbox.gap_report_interval, exc)
                attempted = True
            if attempted:
                next_report = time.monotonic() + self.config.outbox.gap_report_interval

    def _report_gap(self) -> bool:
        """Write one ``outbox_gap`` event for the pending drops; False when nothing is pending."""
        gap = self.outbox.take_gap()
        if gap is None:
            return False
        log.warning("outbox dropped records", extra=gap.as_data())
        try:
            self.emit_event(None, EventKind.OUTBOX_GAP, gap.describe(), gap.as_data(), resolves_gap=gap)
        except Exception:
            self.outbox.release_gap()  # stays pending: reported on the next round
            raise
        return True

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
