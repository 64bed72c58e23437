"""Whether the ingest writer is committing: what ``/readyz`` reports beside the database ping.

A reachable database is not enough: SQLite may answer ``SELECT 1`` while every write fails
(locked by another process, disk full, read-only file) and PostgreSQL may sit on a read-only
standby after a failover. The writer records each commit and each failed attempt here; the web
app asks :meth:`IngestHealth.check` on every probe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

STALL_AFTER = 60.0  # seconds one batch may take before the writer counts as stuck


@dataclass(frozen=True, slots=True)
class HealthReport:
    ok: bool
    detail: str


class IngestHealth:
    def __init__(self, *, stall_after: float = STALL_AFTER, clock: Callable[[], float] = time.monotonic) -> None:
        self._stall_after = stall_after
        self._clock = clock
        self._lock = threading.Lock()
        self._failing_since: float | None = None
        self._failure = ""
        self._busy_since: float | None = None
        self._last_commit: float | None = None

    def batch_started(self) -> None:
        with self._lock:
            self._busy_since = self._clock()

    def committed(self) -> None:
        with self._lock:
            self._failing_since = None
            self._failure = ""
            self._busy_since = None
            self._last_commit = self._clock()

    def failed(self, reason: str) -> None:
        """A batch could not be committed (it stays unacked and is retried)."""
        with self._lock:
            if self._failing_since is None:
                self._failing_since = self._clock()
            self._failure = reason[:300]

    def check(self) -> HealthReport:
        with self._lock:
            now = self._clock()
            if self._failing_since is not None:
                return HealthReport(False, f"cannot commit for {now - self._failing_since:.0f} s: {self._failure}")
            if self._busy_since is not None and now - self._busy_since > self._stall_after:
                return HealthReport(False, f"one batch has been writing for {now - self._busy_since:.0f} s")
            if self._last_commit is None:
                return HealthReport(True, "no message written yet")
            return HealthReport(True, f"last commit {now - self._last_commit:.0f} s ago")
