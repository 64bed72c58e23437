"""Store-and-forward outbox: every state/event is written here before it is published.

SQLite in WAL mode (stdlib ``sqlite3``), one file per agent, shared by the device worker threads
and the MQTT thread:

* **Group commit.** ``append``/``mark_published``/``ack`` only queue an operation; a committer
  thread applies the queue in one transaction every ``commit_interval`` (or at once when the
  queue fills). ``append(..., durable=True)`` blocks until its transaction is committed. Queued
  operations are applied in call order, so a PUBACK that arrives before its record is committed
  still finds it. Readers (``backlog``, ``stats``…) commit the queue first.
* **Sessions.** ``next_session()`` durably increments a counter kept in the same file (+1 per
  MQTT connection; it never goes backwards, even after kill -9). Sequence numbers are *not*
  persisted: every connection — and every process start — is a new session, so ``seq`` restarts
  at 0 per session and a (session, seq) pair can never be handed out twice. ``epoch()`` is the
  file's random installation id: a new file restarts sessions at 1 under a new epoch, so the
  collector can tell its records from a lost outbox's.
* **Delivery.** A record is deleted when the collector's ack high-water mark covers it
  (``ack_mode="collector"``) or, with no collector acking, on its PUBACK (``ack_mode="puback"``).
  ``mark_published`` remembers the connection (session) the record was published in, so a replay
  loop sends each unacked record at most once per connection, and again after a reconnect.
* **Bounds.** Over ``max_bytes`` (payload bytes, not the file size): states coalesce to the latest
  per register, then the oldest events go, then — only if the latest states alone are too big —
  the oldest states. Older than ``max_age``: states that have a newer state of the same register
  and events go; the latest state of each register is kept as the last known point. Every record
  dropped before it was ever published is counted, persisted, and reported through ``take_gap()``
  as an ``outbox_gap`` event (a published one only awaited its ack: it is not a gap). A batch
  whose transaction fails is counted the same way. Nothing is dropped silently.
* **Gap reports survive a full outbox.** ``outbox_gap`` events are never dropped by the bounds;
  an unpublished one is folded into the next report instead (``take_gap`` deletes it and hands
  its counts back), so a long outage keeps one pending gap report, not one per report.

One process must own an outbox file at a time (the session counter assumes it).
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import groupby
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

RecordKind = Literal["state", "event"]
AckMode = Literal["collector", "puback"]
KINDS: tuple[RecordKind, ...] = ("state", "event")

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_AGE = timedelta(days=14)
MAX_BATCH_OPS = 512  # a fuller queue is committed at once instead of waiting for the interval
DURABLE_WAIT_S = 30.0  # an fsync that takes this long means the disk is in trouble
GAP_CLAIM_TIMEOUT = timedelta(seconds=60)
LIVE_GRACE = timedelta(seconds=10)

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY,
    session INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('state', 'event')),
    register_id TEXT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at REAL NOT NULL,
    published_in INTEGER,
    gap_report TEXT,  -- on an outbox_gap event: the counts it reports, restored if it is folded
    UNIQUE (session, seq)
);
CREATE INDEX IF NOT EXISTS records_by_age ON records (created_at);
CREATE INDEX IF NOT EXISTS records_by_register ON records (kind, register_id, session, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value NOT NULL);
CREATE TABLE IF NOT EXISTS totals (kind TEXT PRIMARY KEY, records INTEGER NOT NULL, bytes INTEGER NOT NULL);
INSERT OR IGNORE INTO totals VALUES ('state', 0, 0), ('event', 0, 0);
CREATE TRIGGER IF NOT EXISTS records_added AFTER INSERT ON records BEGIN
    UPDATE totals SET records = records + 1, bytes = bytes + length(NEW.payload) WHERE kind = NEW.kind;
END;
CREATE TRIGGER IF NOT EXISTS records_removed AFTER DELETE ON records BEGIN
    UPDATE totals SET records = records - 1, bytes = bytes - length(OLD.payload) WHERE kind = OLD.kind;
END;
"""
_COLUMNS = "kind, register_id, session, seq, topic, payload, created_at, published_in"
# meta keys: the session counter, pending gap counters, lifetime drop counters.
_GAP_KEYS = ("gap_states", "gap_events", "gap_first", "gap_last")


class OutboxError(Exception):
    """The outbox cannot store or commit (disk full, file damaged, closed)."""


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    kind: RecordKind
    register_id: str | None
    session: int
    seq: int
    topic: str
    payload: bytes
    created_at: datetime
    published_in: int | None = None  # the connection (session) it was last published in

    @property
    def published(self) -> bool:
        return self.published_in is not None


@dataclass(frozen=True, slots=True)
class GapInfo:
    """Records dropped since the last reported gap; times are the dropped records' ``created_at``."""

    dropped_states: int
    dropped_events: int
    first_dropped_at: datetime | None
    last_dropped_at: datetime | None

    @property
    def total(self) -> int:
        return self.dropped_states + self.dropped_events

    def as_data(self) -> dict[str, Any]:
        """JSON-ready ``data`` of the ``outbox_gap`` event."""
        return {
            "dropped_states": self.dropped_states,
            "dropped_events": self.dropped_events,
            "first_dropped_at": self.first_dropped_at.isoformat() if self.first_dropped_at else None,
            "last_dropped_at": self.last_dropped_at.isoformat() if self.last_dropped_at else None,
        }

    def describe(self) -> str:
        span = ""
        if self.first_dropped_at and self.last_dropped_at:
            span = f" за период {self.first_dropped_at:%Y-%m-%d %H:%M:%S} – {self.last_dropped_at:%Y-%m-%d %H:%M:%S} UTC"
        return (
            f"Буфер отправки переполнен: отброшено состояний {self.dropped_states}, "
            f"событий {self.dropped_events}{span}"
        )


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """What ``kassa-agent outbox status`` prints."""

    states: int
    events: int
    bytes: int
    oldest_at: datetime | None
    awaiting_ack: int  # published, not yet covered by an ack
    dropped_states_total: int
    dropped_events_total: int
    pending_gap: GapInfo | None
    session: int  # the latest session handed out (0 before the first)
    ack_mode: AckMode

    @property
    def depth(self) -> int:
        return self.states + self.events


@dataclass(slots=True)
class _Batch:
    ops: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    started: float = 0.0


@dataclass(slots=True)
class _Drops:
    """Drop counts not yet written to ``meta`` (from a failed commit), merged by the next one."""

    states: int = 0
    events: int = 0
    first: float | None = None
    last: float | None = None

    def add(self, kind: str, count: int, first: float | None, last: float | None) -> None:
        if count <= 0:
            return
        if kind == "state":
            self.states += count
        else:
            self.events += count
        self.first = _earliest(self.first, first)
        self.last = _latest(self.last, last)


def _earliest(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _latest(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def _ts(value: datetime) -> float:
    if value.tzinfo is None:
        raise ValueError("created_at must be an aware datetime (the agent's UTC clock)")
    return value.timestamp()


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _gap_tuple(gap: GapInfo) -> tuple[int, int, float | None, float | None]:
    first = gap.first_dropped_at.timestamp() if gap.first_dropped_at else None
    last = gap.last_dropped_at.timestamp() if gap.last_dropped_at else None
    return gap.dropped_states, gap.dropped_events, first, last


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Outbox:
    def __init__(
        self,
        path: str | Path,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_age: timedelta = DEFAULT_MAX_AGE,
        commit_interval: float = 0.05,
        ack_mode: AckMode = "collector",
        clock: Callable[[], datetime] = _utc_now,
        gap_claim_timeout: timedelta = GAP_CLAIM_TIMEOUT,
    ) -> None:
        if max_bytes <= 0 or commit_interval <= 0:
            raise ValueError("max_bytes and commit_interval must be positive")
        if ack_mode not in ("collector", "puback"):
            raise ValueError(f"unknown ack mode {ack_mode!r}")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.commit_interval = commit_interval
        self._clock = clock
        self._gap_claim_timeout = gap_claim_timeout
        self._db = self._open(self.path)
        self._db_lock = threading.Lock()  # the connection, and the order in which batches commit
        self._cond = threading.Condition()  # the queue, session/seq counters, claims
        self._batch = _Batch()
        self._closed = False
        self._ack_mode: AckMode = ack_mode  # as requested (readers see a switch at once)
        self._applied_mode: AckMode = "collector"  # as of the last commit; the queued mode op sets it
        self._session = 0  # this process has not started a session yet
        self._seq = 0
        self._lost = _Drops()
        self._gap_claim: tuple[GapInfo, datetime] | None = None
        self._committer = threading.Thread(target=self._commit_loop, name="outbox-commit", daemon=True)
        self._committer.start()
        # Entering puback mode treats records published by an earlier run as delivered.
        self._enqueue([("mode", (ack_mode,))])
        self.epoch()  # made with the file, so its every session carries it

    # --- lifecycle ----------------------------------------------------------------------

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        if path.parent and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        db = None
        try:
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10.0)
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: each group commit fsyncs the WAL, so a durable append survives power loss too;
            # grouping keeps that to ~20 fsyncs/s.
            db.execute("PRAGMA synchronous=FULL")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > _SCHEMA_VERSION:
                raise OutboxError(f"{path} has outbox schema {version}, newer than this agent ({_SCHEMA_VERSION})")
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        except (sqlite3.Error, OutboxError) as exc:
            if db is not None:
                db.close()
            if isinstance(exc, OutboxError):
                raise
            raise OutboxError(f"cannot open outbox {path}: {exc}") from exc
        return db

    def close(self) -> None:
        """Commit everything queued, stop the committer and close the file (idempotent)."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._committer.join()
        self._commit_pending()
        with self._db_lock:
            self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- sessions and sequence numbers --------------------------------------------------

    def next_session(self) -> int:
        """Durably take the next session number (+1 per MQTT connection, starts at 1)."""
        with self._db_lock, self._transaction():
            current = self._meta_int("session")
            session = current + 1
            self._set_meta("session", session)
        with self._cond:
            self._session, self._seq = session, 0
        return session

    def epoch(self) -> tuple[str, int]:
        """``(epoch, first session)``: this file's installation id, made on first use, and the first
        session number taken under it (an outbox from before epochs existed keeps its counter)."""
        with self._db_lock, self._transaction():
            row = self._db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
            if row is None:
                self._set_meta("epoch", secrets.token_hex(16))
                self._set_meta("epoch_since", self._meta_int("session") + 1)
            epoch = str(self._db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()[0])
            return epoch, self._meta_int("epoch_since")

    def refusal(self) -> dict[str, Any] | None:
        """The collector's standing refusal of this agent (see ``agent.refusal``), or None."""
        with self._db_lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'refusal'").fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def set_refusal(self, refusal: dict[str, Any] | None) -> None:
        with self._db_lock, self._transaction():
            if refusal is None:
                self._db.execute("DELETE FROM meta WHERE key = 'refusal'")
            else:
                self._set_meta("refusal", json.dumps(refusal, ensure_ascii=False))

    @property
    def current_session(self) -> int:
        """The session last handed out by this process (0 before the first ``next_session``)."""
        with self._cond:
            return self._session

    def next_seq(self) -> int:
        """Next seq of the current session (from 0); starts a session first if there is none."""
        return self.allocate()[1]

    def allocate(self) -> tuple[int, int]:
        """``(session, seq)`` taken atomically: safe against a concurrent ``next_session``."""
        with self._cond:
            if self._session:
                seq = self._seq
                self._seq += 1
                return self._session, seq
        self.next_session()
        return self.allocate()

    # --- writing --------------------------------------------------------------------------

    def append(
        self,
        kind: RecordKind,
        register_id: str | None,
        session: int,
        seq: int,
        topic: str,
        payload: bytes,
        created_at: datetime,
        *,
        durable: bool = False,
        resolves_gap: GapInfo | None = None,
    ) -> None:
        """Queue a record; with ``durable`` (forced when ``resolves_gap`` is given) wait for its commit.

        ``resolves_gap``: this record is the ``outbox_gap`` event for a ``take_gap()`` result; the
        gap counters are reduced in the same transaction, so the report is neither lost nor doubled.
        """
        if kind not in KINDS:
            raise ValueError(f"outbox record kind must be 'state' or 'event', got {kind!r}")
        if session < 1 or seq < 0:
            raise ValueError(f"invalid session/seq {session}/{seq}")
        report = json.dumps(_gap_tuple(resolves_gap)) if resolves_gap is not None else None
        row = (kind, register_id, session, seq, topic, bytes(payload), _ts(created_at), report)
        ops: list[tuple[str, tuple[Any, ...]]] = [("append", row)]
        if resolves_gap is not None:
            ops.append(("resolve_gap", (resolves_gap,)))
        batch = self._enqueue(ops)
        if durable or resolves_gap is not None:
            self._wait(batch)

    def mark_published(self, session: int, seq: int) -> None:
        """PUBACK arrived: remember the connection it went out on (puback mode: delete it)."""
        self.mark_published_many([(session, seq)])

    def mark_published_many(self, keys: Iterable[tuple[int, int]]) -> None:
        with self._cond:
            live = self._session
        ops = [("published", (live, session, seq)) for session, seq in keys]
        if ops:
            self._enqueue(ops)

    def ack(self, session: int, seq: int) -> None:
        """The collector committed every record of ``session`` with seq ≤ ``seq``: delete them."""
        self._enqueue([("ack", (session, seq))])

    def set_ack_mode(self, mode: AckMode) -> None:
        """Switch delivery bookkeeping; entering puback mode deletes records already published."""
        if mode not in ("collector", "puback"):
            raise ValueError(f"unknown ack mode {mode!r}")
        self._enqueue([("mode", (mode,))])
        with self._cond:
            self._ack_mode = mode

    @property
    def ack_mode(self) -> AckMode:
        return self._ack_mode

    def flush(self) -> None:
        """Commit everything queued so far, now (shutdown, before reads)."""
        self._commit_pending()

    # --- reading --------------------------------------------------------------------------

    def backlog(
        self,
        limit: int,
        *,
        exclude_session: int | None = None,
        after: tuple[int, int] | None = None,
        live_grace: timedelta = LIVE_GRACE,
    ) -> list[OutboxRecord]:
        """Unacked records to replay, oldest (session, seq) first.

        With ``exclude_session`` (the live connection's session) it leaves out what was already
        published on that connection, and that session's own records younger than ``live_grace``
        (their live publish may still be in flight); its older never-published records count.
        ``after`` pages on from a previous batch's last ``(session, seq)``.
        """
        self._commit_pending()
        where, params = ["1"], []
        if exclude_session is not None:
            grace_cutoff = _ts(self._clock() - live_grace)
            where.append("(published_in IS NULL OR published_in != ?)")
            where.append("NOT (session = ? AND created_at > ?)")
            params += [exclude_session, exclude_session, grace_cutoff]
        if after is not None:
            where.append("(session > ? OR (session = ? AND seq > ?))")
            params += [after[0], after[0], after[1]]
        sql = f"SELECT {_COLUMNS} FROM records WHERE {' AND '.join(where)} ORDER BY session, seq LIMIT ?"
        with self._db_lock:
            rows = self._db.execute(sql, [*params, limit]).fetchall()
        return [self._record(row) for row in rows]

    def depth(self) -> int:
        self._commit_pending()
        with self._db_lock:
            return int(self._db.execute("SELECT SUM(records) FROM totals").fetchone()[0])

    def oldest(self) -> OutboxRecord | None:
        """The first record a replay would send, or None when empty."""
        rows = self.backlog(1)
        return rows[0] if rows else None

    def stats(self) -> OutboxStats:
        self._commit_pending()
        with self._db_lock:
            totals = {kind: (n, b) for kind, n, b in self._db.execute("SELECT kind, records, bytes FROM totals")}
            oldest = self._db.execute("SELECT MIN(created_at) FROM records").fetchone()[0]
            awaiting = self._db.execute("SELECT COUNT(*) FROM records WHERE published_in IS NOT NULL").fetchone()[0]
            dropped_states = self._meta_int("dropped_states_total") + self._lost.states
            dropped_events = self._meta_int("dropped_events_total") + self._lost.events
            gap = self._pending_gap()
        with self._cond:
            session, mode = self._session, self._ack_mode
        return OutboxStats(
            states=totals["state"][0],
            events=totals["event"][0],
            bytes=totals["state"][1] + totals["event"][1],
            oldest_at=_dt(oldest),
            awaiting_ack=int(awaiting),
            dropped_states_total=dropped_states,
            dropped_events_total=dropped_events,
            pending_gap=gap,
            session=session,
            ack_mode=mode,
        )

    # --- gap reporting ----------------------------------------------------------------------

    def take_gap(self) -> GapInfo | None:
        """Drops not yet reported, claimed for one ``outbox_gap`` event; None when nothing is pending.

        Older gap events that were never published are folded in first (see the module doc).
        Write the event with ``append(..., resolves_gap=gap)``. A claim that is not resolved within
        ``gap_claim_timeout`` (the event was never written) is handed out again.
        """
        self._commit_pending()
        now = self._clock()
        if self._claimed(now):
            return None
        with self._db_lock:  # never nested inside the condition: commits take the two the other way
            try:
                with self._transaction():
                    self._fold_unsent_gap_reports()
            except sqlite3.Error as exc:  # e.g. disk full: the older report stays, nothing is lost
                log.warning("could not fold unsent gap reports: %s", exc)
            gap = self._pending_gap()
        with self._cond:
            if self._claimed(now):
                return None
            self._gap_claim = (gap, now) if gap is not None else None
            return gap

    def _claimed(self, now: datetime) -> bool:
        with self._cond:
            claim = self._gap_claim
            return claim is not None and now - claim[1] < self._gap_claim_timeout

    def release_gap(self) -> None:
        """Give up a claim without reporting (the gap stays pending for the next ``take_gap``)."""
        with self._cond:
            self._gap_claim = None

    def _pending_gap(self) -> GapInfo | None:
        states, events = self._meta_int("gap_states") + self._lost.states, self._meta_int("gap_events") + self._lost.events
        if states + events == 0:
            return None
        first = _earliest(self._meta_float("gap_first"), self._lost.first)
        last = _latest(self._meta_float("gap_last"), self._lost.last)
        return GapInfo(states, events, _dt(first), _dt(last))

    # --- group commit ---------------------------------------------------------------------

    def _enqueue(self, ops: list[tuple[str, tuple[Any, ...]]]) -> _Batch:
        with self._cond:
            if self._closed:
                raise OutboxError("outbox is closed")
            batch = self._batch
            if not batch.ops:
                batch.started = time.monotonic()
            batch.ops.extend(ops)
            if len(batch.ops) == len(ops) or len(batch.ops) >= MAX_BATCH_OPS:
                self._cond.notify_all()
            return batch

    def _wait(self, batch: _Batch) -> None:
        if not batch.done.wait(DURABLE_WAIT_S):
            raise OutboxError(f"outbox commit did not finish within {DURABLE_WAIT_S:.0f} s")
        if batch.error is not None:
            raise OutboxError(f"outbox commit failed: {batch.error}") from batch.error

    def _commit_loop(self) -> None:
        while True:
            with self._cond:
                while not self._batch.ops and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return  # close() commits the remainder itself
                deadline = self._batch.started + self.commit_interval
                while len(self._batch.ops) < MAX_BATCH_OPS and not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
            try:
                self._commit_pending()
            except Exception:  # never let the committer die: waiters get the error via their batch
                log.exception("outbox commit loop error")

    def _commit_pending(self) -> None:
        # The batch is swapped while holding the connection lock, so batches commit in queue order.
        with self._db_lock:
            with self._cond:
                batch, self._batch = self._batch, _Batch()
            if not batch.ops:
                batch.done.set()
                return
            try:
                with self._transaction():
                    lost = self._merge_lost()
                    mode = self._apply(batch.ops)
                    self._enforce_bounds()
                self._applied_mode = mode
                self._lost = _Drops() if lost else self._lost
            except Exception as exc:  # disk full, I/O error, a bad value: counted, never fatal
                self._count_failed(batch, exc)
            finally:
                batch.done.set()
        if any(op == "resolve_gap" for op, _ in batch.ops):
            with self._cond:
                self._gap_claim = None

    def _count_failed(self, batch: _Batch, exc: BaseException) -> None:
        batch.error = exc
        # A record whose PUBACK came in the same batch reached the broker: lost from the file, not a gap.
        published = {(args[1], args[2]) for op, args in batch.ops if op == "published"}
        rows = [args for op, args in batch.ops if op == "append" and (args[2], args[3]) not in published]
        for kind in KINDS:
            times = [row[6] for row in rows if row[0] == kind]
            self._lost.add(kind, len(times), min(times, default=None), max(times, default=None))
        log.error("outbox commit of %d operations failed (%d records counted as dropped): %s", len(batch.ops), len(rows), exc)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _apply(self, ops: list[tuple[str, tuple[Any, ...]]]) -> AckMode:
        """Run the queued operations in order; returns the ack mode in force after them."""
        mode = self._applied_mode
        for op, group in groupby(ops, key=lambda item: item[0]):
            args = [item[1] for item in group]
            if op == "append":
                cursor = self._db.executemany(
                    "INSERT OR IGNORE INTO records"
                    " (kind, register_id, session, seq, topic, payload, created_at, gap_report)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    args,
                )
                if cursor.rowcount != len(args):
                    log.warning("outbox ignored %d records whose (session, seq) was already stored", len(args) - cursor.rowcount)
            elif op == "published":
                if mode == "puback":
                    self._db.executemany("DELETE FROM records WHERE session = ? AND seq = ?", [a[1:] for a in args])
                else:
                    self._db.executemany("UPDATE records SET published_in = ? WHERE session = ? AND seq = ?", args)
            elif op == "ack":
                self._db.executemany("DELETE FROM records WHERE session = ? AND seq <= ?", args)
            elif op == "mode":
                mode = args[-1][0]
                if mode == "puback":
                    self._db.execute("DELETE FROM records WHERE published_in IS NOT NULL")
            elif op == "resolve_gap":
                for (gap,) in args:
                    self._resolve_gap(gap)
        return mode

    # --- bounds -------------------------------------------------------------------------------

    def _enforce_bounds(self) -> None:
        cutoff = _ts(self._clock() - self.max_age)
        oldest = self._db.execute("SELECT MIN(created_at) FROM records").fetchone()[0]
        if oldest is not None and oldest < cutoff:
            self._drop_superseded_states(cutoff)
            old_events = (
                "SELECT id, created_at, published_in FROM records"
                " WHERE kind = 'event' AND created_at < ? AND gap_report IS NULL"
            )
            self._drop_rows("event", self._db.execute(old_events, (cutoff,)).fetchall())
        excess = self._bytes() - self.max_bytes
        if excess <= 0:
            return
        self._drop_superseded_states(None)
        for kind in ("event", "state"):
            excess = self._bytes() - self.max_bytes
            if excess <= 0:
                return
            self._drop_oldest(kind, excess)

    def _bytes(self) -> int:
        return int(self._db.execute("SELECT SUM(bytes) FROM totals").fetchone()[0])

    def _drop_superseded_states(self, older_than: float | None) -> None:
        """Drop state records that have a newer state of the same register (optionally only old ones)."""
        sql = (
            "SELECT r.id, r.created_at, r.published_in FROM records r WHERE r.kind = 'state'"
            + (" AND r.created_at < ?" if older_than is not None else "")
            + " AND EXISTS (SELECT 1 FROM records n WHERE n.kind = 'state' AND n.register_id IS r.register_id"
            " AND (n.session > r.session OR (n.session = r.session AND n.seq > r.seq)))"
        )
        params = (older_than,) if older_than is not None else ()
        self._drop_rows("state", self._db.execute(sql, params).fetchall())

    def _drop_oldest(self, kind: RecordKind, excess: int) -> None:
        victims, freed = [], 0
        cursor = self._db.execute(
            "SELECT id, created_at, published_in, length(payload) FROM records"
            " WHERE kind = ? AND gap_report IS NULL ORDER BY session, seq",
            (kind,),
        )
        for row_id, created_at, published_in, size in cursor:
            victims.append((row_id, created_at, published_in))
            freed += size
            if freed >= excess:
                break
        cursor.close()
        self._drop_rows(kind, victims)

    def _drop_rows(self, kind: RecordKind, rows: list[tuple[int, float, int | None]]) -> None:
        """Delete ``(id, created_at, published_in)`` rows; those never published are a gap."""
        if not rows:
            return
        self._db.executemany("DELETE FROM records WHERE id = ?", [(row[0],) for row in rows])
        lost = [created_at for _, created_at, published_in in rows if published_in is None]
        if lost:
            count = len(lost)
            self._add_gap(count if kind == "state" else 0, count if kind == "event" else 0, min(lost), max(lost))
        log.warning(
            "outbox over its bounds: dropped %d %s record(s), %d of them never published", len(rows), kind, len(lost)
        )

    def _fold_unsent_gap_reports(self) -> None:
        """Delete gap events nobody has seen and hand their counts back, for the next report to carry.

        Only rows never published and past the live-publish grace: one in flight is left alone.
        """
        cutoff = _ts(self._clock() - LIVE_GRACE)
        rows = self._db.execute(
            "SELECT id, gap_report FROM records WHERE gap_report IS NOT NULL AND published_in IS NULL AND created_at < ?",
            (cutoff,),
        ).fetchall()
        for row_id, report in rows:
            self._db.execute("DELETE FROM records WHERE id = ?", (row_id,))
            states, events, first, last = json.loads(report)
            self._add_gap(states, events, first, last, new_drops=False)

    # --- gap counters in meta ---------------------------------------------------------------

    def _add_gap(self, states: int, events: int, first: float | None, last: float | None, *, new_drops: bool = True) -> None:
        self._set_meta("gap_states", self._meta_int("gap_states") + states)
        self._set_meta("gap_events", self._meta_int("gap_events") + events)
        if new_drops:
            self._set_meta("dropped_states_total", self._meta_int("dropped_states_total") + states)
            self._set_meta("dropped_events_total", self._meta_int("dropped_events_total") + events)
        first, last = _earliest(self._meta_float("gap_first"), first), _latest(self._meta_float("gap_last"), last)
        if first is not None and last is not None:
            self._set_meta("gap_first", first)
            self._set_meta("gap_last", last)

    def _merge_lost(self) -> bool:
        lost = self._lost
        if not (lost.states or lost.events):
            return False
        self._add_gap(lost.states, lost.events, lost.first, lost.last)
        return True

    def _resolve_gap(self, gap: GapInfo) -> None:
        states = max(0, self._meta_int("gap_states") - gap.dropped_states)
        events = max(0, self._meta_int("gap_events") - gap.dropped_events)
        self._set_meta("gap_states", states)
        self._set_meta("gap_events", events)
        if states + events == 0:
            self._db.execute("DELETE FROM meta WHERE key IN ('gap_first', 'gap_last')")
        # Otherwise drops happened after the claim: the stored span still covers them (it may be wider).

    def _meta_int(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _meta_float(self, key: str) -> float | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return float(row[0]) if row else None

    def _set_meta(self, key: str, value: int | float | str) -> None:
        self._db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    @staticmethod
    def _record(row: tuple[Any, ...]) -> OutboxRecord:
        kind, register_id, session, seq, topic, payload, created_at, published_in = row
        return OutboxRecord(
            kind=kind,
            register_id=register_id,
            session=session,
            seq=seq,
            topic=topic,
            payload=bytes(payload),
            created_at=datetime.fromtimestamp(created_at, UTC),
            published_in=published_in,
        )
