"""The outbox's one facade: records are queued, group-committed, published, acked and read back.

The committer thread applies the queue in one transaction every ``commit_interval`` (or at once
when the queue fills); what goes on in that transaction besides the queued operations — drops
over the bounds, gap counters — lives in ``bounds`` and ``gaps``. See the package doc.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import groupby
from pathlib import Path
from typing import Any

from agent.outbox import ledger
from agent.outbox.bounds import DEFAULT_MAX_AGE, DEFAULT_MAX_BYTES, enforce_bounds
from agent.outbox.gaps import (
    GAP_CLAIM_TIMEOUT,
    LIVE_GRACE,
    DropTally,
    GapClaim,
    fold_unsent_gap_reports,
    gap_report,
    merge_lost,
    pending_gap,
    resolve_gap,
)
from agent.outbox.records import (
    KINDS,
    AckMode,
    ActionRecord,
    GapInfo,
    OutboxError,
    OutboxRecord,
    OutboxStats,
    RecordKind,
)
from agent.outbox.schema import (
    RECORD_COLUMNS,
    from_timestamp,
    meta_int,
    meta_json,
    open_database,
    record_from_row,
    set_meta,
    timestamp,
    transaction,
)
from agent.outbox.sessions import installation_epoch, take_next_session

log = logging.getLogger(__name__)

MAX_BATCH_OPS = 512  # a fuller queue is committed at once instead of waiting for the interval
DURABLE_WAIT_S = 30.0  # an fsync that takes this long means the disk is in trouble


@dataclass(slots=True)
class _Batch:
    ops: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    started: float = 0.0


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Outbox:
    """The store-and-forward outbox (see the package doc), shared by the agent's threads."""

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
        self._db = open_database(self.path)
        self._db_lock = threading.Lock()  # the connection, and the order in which batches commit
        self._cond = threading.Condition()  # the queue, session/seq counters
        self._batch = _Batch()
        self._closed = False
        self._ack_mode: AckMode = ack_mode  # as requested (readers see a switch at once)
        self._applied_mode: AckMode = "collector"  # as of the last commit; the queued mode op sets it
        self._session = 0  # this process has not started a session yet
        self._seq = 0
        self._selective_sessions: set[int] = set()  # sessions a collector acked seq by seq
        self._lost = DropTally()
        self._gap_claim = GapClaim(gap_claim_timeout)
        self._committer = threading.Thread(target=self._commit_loop, name="outbox-commit", daemon=True)
        self._committer.start()
        # Entering puback mode treats records published by an earlier run as delivered.
        self._enqueue([("mode", (ack_mode,))])
        self.epoch()  # made with the file, so its every session carries it

    # --- lifecycle ----------------------------------------------------------------------

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
        with self._db_lock, transaction(self._db):
            session = take_next_session(self._db)
        with self._cond:
            self._session, self._seq = session, 0
        return session

    def epoch(self) -> tuple[str, int]:
        """``(epoch, first session)``: this file's installation id, made on first use, and the first
        session number taken under it (an outbox from before epochs existed keeps its counter)."""
        with self._db_lock, transaction(self._db):
            return installation_epoch(self._db)

    def refusal(self) -> dict[str, Any] | None:
        """The collector's standing refusal of this agent (see ``agent.refusal``), or None."""
        with self._db_lock:
            return meta_json(self._db, "refusal")

    def set_refusal(self, refusal: dict[str, Any] | None) -> None:
        with self._db_lock, transaction(self._db):
            if refusal is None:
                self._db.execute("DELETE FROM meta WHERE key = 'refusal'")
            else:
                set_meta(self._db, "refusal", json.dumps(refusal, ensure_ascii=False))

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
        report = gap_report(resolves_gap) if resolves_gap is not None else None
        row = (kind, register_id, session, seq, topic, bytes(payload), timestamp(created_at), report)
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

    def ack_ranges(self, session: int, ranges: Iterable[tuple[int, int]]) -> None:
        """A collector sharing the stream committed exactly these inclusive seq ranges: delete them.
        From then on this session's records are acked one by one, so one left unacked is lost
        (:meth:`unacked`)."""
        ops = [("ack_range", (session, low, high)) for low, high in ranges]
        if not ops:
            return
        with self._cond:
            self._selective_sessions.add(session)
        self._enqueue(ops)

    def unacked(self, session: int, older_than: timedelta, limit: int) -> list[OutboxRecord]:
        """Published records of ``session`` older than ``older_than`` that no selective ack covered,
        once collectors ack that session selectively: the broker or a collector lost them. (With a
        prefix ack a lost record holds the prefix back and the collector asks for a rebirth.)"""
        with self._cond:
            if session not in self._selective_sessions:
                return []
        self._commit_pending()
        cutoff = timestamp(self._clock() - older_than)
        sql = (
            f"SELECT {RECORD_COLUMNS} FROM records WHERE session = ? AND published_in IS NOT NULL"
            " AND created_at < ? ORDER BY seq LIMIT ?"
        )
        with self._db_lock:
            rows = self._db.execute(sql, (session, cutoff, limit)).fetchall()
        return [record_from_row(row) for row in rows]

    def unacked_replayed(self, live: int, through: tuple[int, int], limit: int) -> list[OutboxRecord]:
        """Older sessions' records replayed on the live connection, up to ``(session, seq)`` ``through``,
        that no ack has deleted since — once collectors ack selectively. A ``hist`` batch the broker
        lost (a stream without a leader for a moment) is otherwise sent only on the next connection."""
        with self._cond:
            if not self._selective_sessions:
                return []
        self._commit_pending()
        sql = (
            f"SELECT {RECORD_COLUMNS} FROM records WHERE published_in = ? AND session != ?"
            " AND (session < ? OR (session = ? AND seq <= ?)) ORDER BY session, seq LIMIT ?"
        )
        with self._db_lock:
            rows = self._db.execute(sql, (live, live, through[0], through[0], through[1], limit)).fetchall()
        return [record_from_row(row) for row in rows]

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
            grace_cutoff = timestamp(self._clock() - live_grace)
            where.append("(published_in IS NULL OR published_in != ?)")
            where.append("NOT (session = ? AND created_at > ?)")
            params += [exclude_session, exclude_session, grace_cutoff]
        if after is not None:
            where.append("(session > ? OR (session = ? AND seq > ?))")
            params += [after[0], after[0], after[1]]
        sql = f"SELECT {RECORD_COLUMNS} FROM records WHERE {' AND '.join(where)} ORDER BY session, seq LIMIT ?"
        with self._db_lock:
            rows = self._db.execute(sql, [*params, limit]).fetchall()
        return [record_from_row(row) for row in rows]

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
            dropped_states = meta_int(self._db, "dropped_states_total") + self._lost.states
            dropped_events = meta_int(self._db, "dropped_events_total") + self._lost.events
            gap = pending_gap(self._db, self._lost)
        with self._cond:
            session, mode = self._session, self._ack_mode
        return OutboxStats(
            states=totals["state"][0],
            events=totals["event"][0],
            bytes=totals["state"][1] + totals["event"][1],
            oldest_at=from_timestamp(oldest),
            awaiting_ack=int(awaiting),
            dropped_states_total=dropped_states,
            dropped_events_total=dropped_events,
            pending_gap=gap,
            session=session,
            ack_mode=mode,
        )

    # --- remote actions (agent.outbox.ledger) -------------------------------------------------

    def claim_action(self, record: ActionRecord, *, keep: timedelta) -> ActionRecord | None:
        """Remember a command id before its action runs (committed on return); if the id is known
        already, nothing is stored and its record is returned. Records older than ``keep`` go."""
        with self._db_lock, transaction(self._db):
            return ledger.claim(self._db, record, record.received_at - keep)

    def finish_action(self, command_id: str, result: str) -> None:
        with self._db_lock, transaction(self._db):
            ledger.finish(self._db, command_id, result)

    def unfinished_actions(self) -> list[ActionRecord]:
        with self._db_lock:
            return ledger.unfinished(self._db)

    # --- gap reporting ----------------------------------------------------------------------

    def take_gap(self) -> GapInfo | None:
        """Drops not yet reported, claimed for one ``outbox_gap`` event; None when nothing is pending.

        Older gap events that were never published are folded in first (see the module doc).
        Write the event with ``append(..., resolves_gap=gap)``. A claim that is not resolved within
        ``gap_claim_timeout`` (the event was never written) is handed out again.
        """
        self._commit_pending()
        now = self._clock()
        if self._gap_claim.claimed(now):
            return None
        with self._db_lock:  # never nested inside the condition: commits take the two the other way
            try:
                with transaction(self._db):
                    fold_unsent_gap_reports(self._db, self._clock())
            except sqlite3.Error as exc:  # e.g. disk full: the older report stays, nothing is lost
                log.warning("could not fold unsent gap reports: %s", exc)
            gap = pending_gap(self._db, self._lost)
        return self._gap_claim.claim(gap, now)

    def release_gap(self) -> None:
        """Give up a claim without reporting (the gap stays pending for the next ``take_gap``)."""
        self._gap_claim.release()

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
                with transaction(self._db):
                    lost = merge_lost(self._db, self._lost)
                    mode = self._apply(batch.ops)
                    enforce_bounds(self._db, self._clock(), max_bytes=self.max_bytes, max_age=self.max_age)
                self._applied_mode = mode
                self._lost = DropTally() if lost else self._lost
            except Exception as exc:  # disk full, I/O error, a bad value: counted, never fatal
                self._count_failed(batch, exc)
            finally:
                batch.done.set()
        if any(op == "resolve_gap" for op, _ in batch.ops):
            self._gap_claim.release()

    def _count_failed(self, batch: _Batch, exc: BaseException) -> None:
        batch.error = exc
        # A record whose PUBACK came in the same batch reached the broker: lost from the file, not a gap.
        published = {(args[1], args[2]) for op, args in batch.ops if op == "published"}
        rows = [args for op, args in batch.ops if op == "append" and (args[2], args[3]) not in published]
        for kind in KINDS:
            times = [row[6] for row in rows if row[0] == kind]
            self._lost.add(kind, len(times), min(times, default=None), max(times, default=None))
        log.error("outbox commit of %d operations failed (%d records counted as dropped): %s", len(batch.ops), len(rows), exc)

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
            elif op == "ack_range":
                self._db.executemany("DELETE FROM records WHERE session = ? AND seq BETWEEN ? AND ?", args)
            elif op == "mode":
                mode = args[-1][0]
                if mode == "puback":
                    self._db.execute("DELETE FROM records WHERE published_in IS NOT NULL")
            elif op == "resolve_gap":
                for (gap,) in args:
                    resolve_gap(self._db, gap)
        return mode

