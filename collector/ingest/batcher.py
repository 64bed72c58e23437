"""The ingest writer: a queue fed by paho's thread, and one writer thread that commits batches.

Per batch: decode and validate every message (``protocol.mqtt.decode``) → dead-letter what is
invalid (reason + raw bytes) → admit agents (enrolled, or auto-registered) → write everything in
one transaction, including the durable ``ingest_marks`` → commit → only then PUBACK the MQTT
messages and publish each agent's ``ack {session, seq}`` → ask for a rebirth where a seq gap
outlived the reorder window → hand the changed registers to the alert engine, with the parsed
states that won the latest-state upsert (so it need not read their JSON back).

A batch closes when it holds ``batch_max_rows`` messages, when ``batch_max_delay`` passed since
its first message, or when the queue stays empty for ``batch_linger`` (group commit: under load
batches grow by themselves while the previous one is being written; at low load a message waits
at most the linger, 50 ms by default). A batch costs its transaction and a handful of statements
whatever its size (~0.5 ms of CPU on PostgreSQL, ~0.4 ms on SQLite, and ~0.2 ms of alert checks):
at 900 messages a second (50 000 registers, one state a minute each) a 20 ms linger made batches
of ~17 and that overhead ~40 µs per message, as it did for each of several collectors sharing the
stream, which get a share of it each. 50 ms keeps alerts well inside their 250 ms.

Failure policy: if the batch transaction fails, each message is retried in a transaction of its
own and a message the storage refuses — for whatever cause: an oversize field, text the backend
cannot store, a constraint, a bug — is dead-lettered, so one bad message never blocks the others.
Filing a dead letter cannot fail on the message's content (the storage bounds every field), so
when even that fails, or the database is unreachable, the database is the problem: nothing is
acked, the batch is retried (the broker keeps the messages meanwhile) and ``IngestHealth`` makes
``/readyz`` say so until a commit succeeds again.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
import uuid
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import sqlalchemy as sa

from collector.ingest import bulk
from collector.ingest.admission import DEFAULT_MAX_SESSION_JUMP, Admission, SessionGuard
from collector.ingest.agent_clock import AgentClocks, clock_errors
from collector.ingest.batch import (
    TOPIC_CACHE,
    BatchResult,
    CannotCommit,
    Rejected,
    classify,
    failure_text,
    first_line,
    highest_claim,
    kind_label,
    live_key,
    storage_reason,
)
from collector.ingest.consumer import InboundMessage
from collector.ingest.epochs import Epochs
from collector.ingest.health import IngestHealth
from collector.ingest.history_keeper import HistoryKeeper
from collector.ingest.history_policy import HistoryPolicy
from collector.ingest.refusals import RefusalNotices
from collector.ingest.sequence import NOTHING, SequenceTracker
from collector.ingest.thread_names import name_os_thread
from collector.ingest.writes import Decoded, FreshState, RefreshCache, WriteOutcome, write_messages
from collector.metrics import CollectorMetrics
from collector.storage import StorageError
from collector.storage import repository as repo
from collector.storage.dialect import member_of
from collector.storage.engine import begin_write
from collector.storage.schema import ingest_marks
from protocol.mqtt.models import MAX_ACK_RANGES, CommandPayload, encode, encode_ack, seq_ranges
from protocol.mqtt.topics import ack_topic, cmd_topic, quoted

log = logging.getLogger(__name__)

DB_RETRY_DELAY = 1.0
DEFAULT_HISTORY = HistoryPolicy()  # 15-minute chart samples plus every significant change
IDLE_TICK = 0.25  # how often an idle writer checks for stop and due rebirths
# Built once per agent, like the parsed topics in batch.py.
_ack_topic = functools.lru_cache(maxsize=TOPIC_CACHE)(ack_topic)


@dataclass(frozen=True)
class WriterSettings:
    batch_max_rows: int = 500
    batch_max_delay: float = 0.2
    batch_linger: float = 0.05  # how long a small batch waits for more before it is written
    queue_max: int = 50_000
    reorder_window: float = 2.0
    contiguous_acks: bool = True  # False under a shared subscription: selective acks (sequence.py)
    enforce_enrollment: bool = False
    default_tenant: str = "default"
    unassigned_node: str = "unassigned"
    company: str | None = None  # single-company install: unenrolled agents join its «Новые кассы»
    new_registers_node: str = "Новые кассы"
    max_session_jump: int = DEFAULT_MAX_SESSION_JUMP
    history: HistoryPolicy | None = DEFAULT_HISTORY  # None: every state becomes a history row


class ChangeListener(Protocol):
    """Told after each commit which registers and agents changed, with the parsed states the
    batch stored (a subset of the registers; the listener reads the rest from the database)."""

    def __call__(
        self, register_ids: Collection[str], agent_ids: Collection[str], states: Mapping[str, FreshState], /
    ) -> None: ...


class Downlink(Protocol):
    """What the writer needs from the MQTT connection (the consumer, or a test double)."""

    def ack(self, messages: Sequence[InboundMessage]) -> int: ...

    def publish_acks(self, acks: Sequence[tuple[str, bytes]]) -> int: ...

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> bool: ...


class IngestWriter:
    def __init__(
        self,
        engine: sa.Engine,
        downlink: Downlink,
        *,
        settings: WriterSettings | None = None,
        metrics: CollectorMetrics | None = None,
        on_changed: ChangeListener | None = None,
        health: IngestHealth | None = None,
    ) -> None:
        self.settings = settings or WriterSettings()
        self.health = health or IngestHealth()
        self._engine = engine
        self._downlink = downlink
        self._metrics = metrics or CollectorMetrics()
        self._on_changed = on_changed
        self._queue: queue.Queue[InboundMessage] = queue.Queue(self.settings.queue_max)
        self._admission = Admission(
            enforce=self.settings.enforce_enrollment,
            default_tenant=self.settings.default_tenant,
            unassigned_node=self.settings.unassigned_node,
            company=self.settings.company,
            new_registers_node=self.settings.new_registers_node,
        )
        self._refresh = RefreshCache()
        self._history = None if self.settings.history is None else HistoryKeeper(self.settings.history)
        self._sessions = SessionGuard(self.settings.max_session_jump)
        self._epochs = Epochs()
        self._clocks = AgentClocks()
        self._refusals = RefusalNotices()
        self.tracker = SequenceTracker(self.settings.reorder_window, contiguous=self.settings.contiguous_acks)
        self._stop = threading.Event()
        self._drain_until = float("inf")
        self._thread: threading.Thread | None = None
        self.batches = 0

    # --- feeding (paho's thread) ------------------------------------------------------------

    def submit(self, message: InboundMessage) -> None:
        """Blocks when the queue is full: backpressure on the broker instead of unbounded memory."""
        self._queue.put(message)

    # --- thread -----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ingest-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write and ack what is queued (for at most ``timeout``; the broker redelivers the rest)."""
        self._drain_until = time.monotonic() + timeout * 0.8
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        name_os_thread()
        while True:
            try:
                batch = self._take_batch()
                if batch:
                    self._write_until_done(batch)
                self._ask_rebirths()
            except Exception as exc:  # a bug must not end ingest; unacked messages come back on reconnect
                log.exception("ingest writer step failed")
                self.health.failed(f"writer step failed: {type(exc).__name__}: {exc}")
            if self._stop.is_set() and (self._queue.empty() or time.monotonic() > self._drain_until):
                return

    def _take_batch(self) -> list[InboundMessage]:
        try:
            first = self._queue.get(timeout=IDLE_TICK)
        except queue.Empty:
            return []
        batch = [first]
        started = time.monotonic()
        deadline = started + self.settings.batch_max_delay
        linger_until = started + min(self.settings.batch_linger, self.settings.batch_max_delay)
        while len(batch) < self.settings.batch_max_rows:
            now = time.monotonic()
            if now >= deadline:
                break
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                if now >= linger_until:
                    break
                try:  # a short linger turns a trickle into fewer, larger commits
                    batch.append(self._queue.get(timeout=linger_until - now))
                except queue.Empty:
                    break
        self._metrics.queue_depth.set(self._queue.qsize())
        return batch

    def _write_until_done(self, batch: list[InboundMessage]) -> None:
        """Retry while the database is away (nothing is acked meanwhile; the broker keeps the
        messages); give up only when stopping and the drain time is over."""
        self.health.batch_started()
        while True:
            try:
                self.process(batch)
                self.health.committed()
                return
            except (sa.exc.OperationalError, CannotCommit) as exc:
                log.error("database refuses writes, retrying the batch of %d: %s", len(batch), exc)
                self.health.failed(first_line(exc))
                self._stop.wait(DB_RETRY_DELAY)
                if self._stop.is_set() and time.monotonic() > self._drain_until:
                    return

    # --- one batch --------------------------------------------------------------------------

    def process(self, batch: list[InboundMessage]) -> BatchResult:
        """Validate, write and commit one batch, then ack and publish. Public for tests and benches."""
        started = time.perf_counter()
        result = BatchResult()
        decoded: list[Decoded] = []
        for kind, count in Counter(kind_label(message.topic) for message in batch).items():
            self._metrics.messages_in.labels(kind=kind).inc(count)  # per batch: labels() is not free
        for message in batch:
            item = classify(message)
            if isinstance(item, Rejected):
                result.dead_letters.append(item)
            elif item is not None:
                decoded.append(item)
            else:
                result.committed.append(message)
        self.tracker.begin()
        try:
            with begin_write(self._engine) as conn:
                self._write(conn, decoded, result)
        except sa.exc.OperationalError:
            self._undo()
            raise  # the database is away: the caller retries, nothing was acked
        except Exception as exc:  # a refusal (typed storage error, constraint) or a bug: isolate it
            log.warning("batch of %d refused (%s); writing its messages one by one", len(batch), exc)
            self._undo()
            result = self._process_one_by_one(batch)
        except BaseException:
            self._undo()
            raise
        self._after_commit(result, len(batch), started)
        return result

    def _undo(self) -> None:
        """The transaction rolled back: forget what it taught the tracker and the caches."""
        self.tracker.rollback()
        self._admission.reset()
        self._refresh.clear()
        if self._history is not None:
            self._history.clear()
        self._epochs.reset()
        self._clocks.reset()

    def _process_one_by_one(self, batch: list[InboundMessage]) -> BatchResult:
        merged = BatchResult()
        for message in batch:
            single = BatchResult()
            item = classify(message)
            self.tracker.begin()
            try:
                with begin_write(self._engine) as conn:
                    if isinstance(item, Rejected):
                        single.dead_letters.append(item)
                    if isinstance(item, Decoded):
                        self._write(conn, [item], single)
                    else:
                        self._write(conn, [], single)
                    if item is None:
                        single.committed.append(message)
            except sa.exc.OperationalError:
                self._undo()
                raise
            except Exception as exc:
                self._undo()
                if not isinstance(exc, StorageError | sa.exc.IntegrityError | sa.exc.DataError):
                    log.exception("storing a message from %s failed; dead-lettering it", quoted(message.topic))
                single = BatchResult(dead_letters=[Rejected(message, storage_reason(exc), failure_text(exc))])
                # Filed as a dead letter, the record counts as handled for the ack mark,
                # so one unstorable message does not hold the agent's outbox forever.
                handled = live_key(item) if isinstance(item, Decoded) else None
                try:
                    with begin_write(self._engine) as conn:
                        self._write(conn, [], single, handled=handled)
                except Exception as failure:
                    self._undo()
                    raise CannotCommit(f"filing a dead letter failed: {first_line(failure)}") from failure
            merged.merge(single)
        return merged

    def _write(
        self,
        conn: sa.Connection,
        decoded: list[Decoded],
        result: BatchResult,
        *,
        handled: tuple[str, str | None, int, int] | None = None,
    ) -> None:
        now = datetime.now(UTC)
        agent_ids = {item.topic.agent_id for item in decoded}
        refused = self._admission.check(conn, agent_ids, now)
        result.refusals.update(refused)
        admitted: list[Decoded] = []
        for item in decoded:
            refusal = refused.get(item.topic.agent_id)
            if refusal is None:
                admitted.append(item)
            else:
                result.dead_letters.append(Rejected(item.inbound, refusal.reason, refusal.detail))
        translated = self._epochs.translate(conn, admitted, now)
        for item, why in translated.refused:
            result.dead_letters.append(Rejected(item.inbound, "session_out_of_range", why))
        result.own_sessions.update(translated.own_sessions)
        result.reinstalls += len(translated.reinstalls)
        # Sessions are judged as stored (an installation's base added, epochs.py): a reinstalled agent
        # restarting at 1 is no jump, and a forged number cannot hide below another installation's base.
        self._sessions.load(conn, {item.topic.agent_id for item in translated.items})
        accepted: list[Decoded] = []
        for item in translated.items:
            agent, claim = item.topic.agent_id, highest_claim(item.payload)
            implausible = None
            if claim is not None:
                implausible = self._sessions.refusal(conn, agent, claim[0], floor=self._epochs.base(agent, claim[1]))
            if implausible is not None:  # dead-lettered only: the agent is not told (it may be the forger)
                result.dead_letters.append(Rejected(item.inbound, "implausible_session", implausible))
                continue
            accepted.append(item)
            if claim is not None:
                result.sessions[agent] = max(claim[0], result.sessions.get(agent, claim[0]))
        outcome = write_messages(conn, accepted, self._refresh, self._history)
        checked = max((item.inbound.received_at for item in accepted), default=now)  # when the readings were taken
        outcome.status_agents |= self._clocks.store(conn, clock_errors(accepted), checked)  # for agent_clock
        if handled is not None:
            agent, epoch, session, seq = handled
            stored = self._epochs.stored_session(conn, agent, epoch, session, now, result.own_sessions)
            outcome.live[(agent, stored)].append(seq)
        for event in outcome.agent_events:  # lost data on an agent is worth a line in the log too
            log.warning("agent %s reports %s: %s", event.agent_id, event.kind, event.data.get("message", ""))
        for rejected in result.dead_letters:
            inbound, oversize = rejected.inbound, rejected.inbound.oversize
            repo.dead_letter(
                conn, inbound.topic, rejected.reason, rejected.detail, inbound.payload,
                received_at=inbound.received_at, whole=None if oversize is None else (oversize.size, oversize.sha256),
            )
        result.acks.update(self._advance_marks(conn, outcome, result))
        by_identity = {
            id(m): m for m in [*result.committed, *(i.inbound for i in decoded), *(r.inbound for r in result.dead_letters)]
        }
        result.committed = list(by_identity.values())
        result.changed_registers |= outcome.registers
        result.fresh_states.update(outcome.states)
        result.status_agents |= outcome.status_agents
        result.duplicates += outcome.duplicates
        result.births |= set(outcome.births)

    def _advance_marks(self, conn: sa.Connection, outcome: WriteOutcome, result: BatchResult) -> dict[tuple[str, int], int]:
        for agent, session in outcome.births.items():
            self.tracker.supersede(agent, session)
        self._seed(conn, set(outcome.replayed) | set(outcome.live))
        marks: dict[tuple[str, int], int] = {}
        for (agent, session), replayed in outcome.replayed.items():
            top = max(replayed)
            self.tracker.commit_replayed(agent, session, top)
            marks[(agent, session)] = top
        if not self.settings.contiguous_acks:
            for key, seqs in [*outcome.replayed.items(), *outcome.live.items()]:
                result.committed_seqs.setdefault(key, []).extend(seqs)
        for (agent, session), seqs in outcome.live.items():
            mark = self.tracker.commit_live(agent, session, seqs)
            if mark is not None:
                marks[(agent, session)] = max(mark, marks.get((agent, session), mark))
        bulk.advance_ingest_marks(conn, marks)
        return marks  # one ack per advanced (agent, session): a hist batch may span sessions

    def _seed(self, conn: sa.Connection, keys: set[tuple[str, int]]) -> None:
        """Start tracking unknown (agent, session)s from their durable marks, in one query."""
        unknown = {(agent, session) for agent, session in keys if not self.tracker.knows(agent, session)}
        if not unknown:
            return
        rows = conn.execute(
            sa.select(ingest_marks.c.agent_id, ingest_marks.c.session, ingest_marks.c.max_seq).where(
                member_of(conn, ingest_marks.c.agent_id, {agent for agent, _ in unknown})
            )
        )
        stored = {(row.agent_id, int(row.session)): int(row.max_seq) for row in rows}
        for agent, session in sorted(unknown):
            self.tracker.seed(agent, session, stored.get((agent, session), NOTHING))

    def _after_commit(self, result: BatchResult, size: int, started: float) -> None:
        self._sessions.learn(result.sessions)
        self._sessions.forget(result.births)  # a birth may have lowered what is stored: read it again
        self._downlink.ack(result.committed)
        self._publish_acks(result)
        for agent, refusal in self._refusals.due(result.refusals):
            log.warning("refusing agent %s: %s", agent, result.refusals[agent].detail)
            self._downlink.publish(_ack_topic(agent), refusal)
        self.batches += 1
        metrics = self._metrics
        metrics.committed.inc(len(result.committed))
        metrics.deduplicated.inc(result.duplicates)
        metrics.agent_reinstalls.inc(result.reinstalls)
        for rejected in result.dead_letters:
            metrics.invalid.labels(reason=rejected.reason).inc()
        metrics.batch_seconds.observe(time.perf_counter() - started)
        metrics.batch_rows.observe(size)
        if self._on_changed is not None and (result.changed_registers or result.status_agents):
            self._on_changed(result.changed_registers, result.status_agents, result.fresh_states)

    def _publish_acks(self, result: BatchResult) -> None:
        """One collector acks the contiguous committed prefix; collectors sharing the stream each
        ack exactly the seqs they committed (a prefix would vouch for what another one holds — or
        what the broker lost)."""
        acks: list[tuple[str, bytes]] = []
        if self.settings.contiguous_acks:
            for (agent, session), seq in result.acks.items():
                own, epoch = result.own_sessions.get((agent, session), (session, None))
                acks.append((_ack_topic(agent), encode_ack(own, seq, epoch)))
        else:
            for (agent, session), seqs in result.committed_seqs.items():
                own, epoch = result.own_sessions.get((agent, session), (session, None))
                ranges = seq_ranges(seqs)
                for start in range(0, len(ranges), MAX_ACK_RANGES):
                    chunk = ranges[start : start + MAX_ACK_RANGES]
                    acks.append((_ack_topic(agent), encode_ack(own, None, epoch, chunk)))
        if acks:
            self._downlink.publish_acks(acks)

    def _ask_rebirths(self) -> None:
        for agent in self.tracker.due_rebirths():
            gap = self.tracker.open_gaps().get(agent)
            why = f"seq gap at {gap}" if gap else "a live message of a lower session than tracked"
            log.warning("%s from %s; asking for a rebirth", why, agent)
            command = CommandPayload(id=f"rebirth-{uuid.uuid4().hex[:12]}", cmd="rebirth")
            self._downlink.publish(cmd_topic(agent), encode(command))
            self._metrics.rebirths.inc()
