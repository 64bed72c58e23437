"""Housekeeping: the retention job that keeps the history tables to their configured horizon.

Every ``period`` seconds it creates the history's day partitions a week ahead (PostgreSQL,
``collector.storage.partitions``; whole days past the horizon are dropped there) and deletes state history, events (register and agent) and dead letters
older than their horizon, in chunks of ``chunk`` rows with one short transaction each, so ingest
commits between chunks instead of waiting behind one huge DELETE. A horizon of 0 days keeps
that table forever. A failed run is logged and retried at the next period; it never stops the
collector.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from collector.metrics import CollectorMetrics
from collector.storage import begin_write, partitions
from collector.storage.retention import purge_dead_letters, purge_events, purge_history

log = logging.getLogger(__name__)

Purge = Callable[..., int]


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    history_days: float = 180.0
    events_days: float = 365.0
    dead_letters_days: float = 30.0

    def horizons(self) -> list[tuple[str, float, Purge]]:
        """(table label, days, purge) for every table that is not kept forever."""
        every = [
            ("state_history", self.history_days, purge_history),
            ("events", self.events_days, purge_events),
            ("dead_letters", self.dead_letters_days, purge_dead_letters),
        ]
        return [entry for entry in every if entry[1] > 0]


class RetentionJob:
    def __init__(
        self,
        engine: sa.Engine,
        policy: RetentionPolicy,
        *,
        period: float = 3600.0,
        first_delay: float = 60.0,
        chunk: int = 5_000,
        metrics: CollectorMetrics | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._engine = engine
        self.policy = policy
        self.period = period
        self._first_delay = first_delay  # let start-up (migrations, the first ingest burst) settle
        self._chunk = chunk
        self._metrics = metrics or CollectorMetrics()
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0

    def run_once(self) -> dict[str, int]:
        """One pass over every table; returns rows deleted per table."""
        now = self._clock()
        with begin_write(self._engine) as conn:
            created = partitions.maintain(conn, now.date())
        if created:
            log.info("history partitions created ahead: %s", ", ".join(created))
        deleted: dict[str, int] = {}
        for table, days, purge in self.policy.horizons():
            cutoff = now - timedelta(days=days)
            total = 0
            while not self._stop.is_set():
                with begin_write(self._engine) as conn:
                    removed = purge(conn, cutoff, limit=self._chunk)
                total += removed
                if removed < self._chunk:
                    break
            deleted[table] = total
            if total:
                self._metrics.retention_deleted.labels(table=table).inc(total)
                log.info("retention: deleted %d rows of %s older than %s", total, table, cutoff.date())
        self.runs += 1
        return deleted

    def start(self) -> None:
        if not self.policy.horizons():
            log.info("retention: every table is kept forever")
            return
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        wait = self._first_delay
        while not self._stop.wait(wait):
            try:
                self.run_once()
            except Exception:  # the database may be away for a while: try again next period
                log.exception("retention run failed; retrying in %.0f s", self.period)
            wait = self.period
