"""Gap accounting: records dropped before they were ever published, counted in ``meta`` until an
``outbox_gap`` event reports them (see the ``agent.outbox`` package doc)."""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from agent.outbox.records import GapInfo
from agent.outbox.schema import from_timestamp, meta_float, meta_int, set_meta, timestamp

GAP_CLAIM_TIMEOUT = timedelta(seconds=60)
LIVE_GRACE = timedelta(seconds=10)


@dataclass(slots=True)
class DropTally:
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
        self.first = earliest(self.first, first)
        self.last = latest(self.last, last)


def earliest(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def latest(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def gap_report(gap: GapInfo) -> str:
    """The counts an ``outbox_gap`` record carries in its ``gap_report`` column."""
    first = gap.first_dropped_at.timestamp() if gap.first_dropped_at else None
    last = gap.last_dropped_at.timestamp() if gap.last_dropped_at else None
    return json.dumps((gap.dropped_states, gap.dropped_events, first, last))


class GapClaim:
    """The gap handed out by ``take_gap`` and not yet resolved: no second report meanwhile."""

    def __init__(self, timeout: timedelta) -> None:
        self._timeout = timeout
        self._lock = threading.Lock()
        self._claim: tuple[GapInfo, datetime] | None = None

    def claimed(self, now: datetime) -> bool:
        with self._lock:
            claim = self._claim
            return claim is not None and now - claim[1] < self._timeout

    def claim(self, gap: GapInfo | None, now: datetime) -> GapInfo | None:
        """Claim ``gap`` unless another claim is still standing (then None)."""
        with self._lock:
            claim = self._claim
            if claim is not None and now - claim[1] < self._timeout:
                return None
            self._claim = (gap, now) if gap is not None else None
            return gap

    def release(self) -> None:
        with self._lock:
            self._claim = None


# --- gap counters in meta (called inside the outbox's transactions) ------------------------


def add_gap(
    db: sqlite3.Connection, states: int, events: int, first: float | None, last: float | None, *, new_drops: bool = True
) -> None:
    set_meta(db, "gap_states", meta_int(db, "gap_states") + states)
    set_meta(db, "gap_events", meta_int(db, "gap_events") + events)
    if new_drops:
        set_meta(db, "dropped_states_total", meta_int(db, "dropped_states_total") + states)
        set_meta(db, "dropped_events_total", meta_int(db, "dropped_events_total") + events)
    first, last = earliest(meta_float(db, "gap_first"), first), latest(meta_float(db, "gap_last"), last)
    if first is not None and last is not None:
        set_meta(db, "gap_first", first)
        set_meta(db, "gap_last", last)


def merge_lost(db: sqlite3.Connection, lost: DropTally) -> bool:
    """Write drops counted outside a transaction; False when there were none."""
    if not (lost.states or lost.events):
        return False
    add_gap(db, lost.states, lost.events, lost.first, lost.last)
    return True


def resolve_gap(db: sqlite3.Connection, gap: GapInfo) -> None:
    states = max(0, meta_int(db, "gap_states") - gap.dropped_states)
    events = max(0, meta_int(db, "gap_events") - gap.dropped_events)
    set_meta(db, "gap_states", states)
    set_meta(db, "gap_events", events)
    if states + events == 0:
        db.execute("DELETE FROM meta WHERE key IN ('gap_first', 'gap_last')")
    # Otherwise drops happened after the claim: the stored span still covers them (it may be wider).


def pending_gap(db: sqlite3.Connection, lost: DropTally) -> GapInfo | None:
    states, events = meta_int(db, "gap_states") + lost.states, meta_int(db, "gap_events") + lost.events
    if states + events == 0:
        return None
    first = earliest(meta_float(db, "gap_first"), lost.first)
    last = latest(meta_float(db, "gap_last"), lost.last)
    return GapInfo(states, events, from_timestamp(first), from_timestamp(last))


def fold_unsent_gap_reports(db: sqlite3.Connection, now: datetime) -> None:
    """Delete gap events nobody has seen and hand their counts back, for the next report to carry.

    Only rows never published and past the live-publish grace: one in flight is left alone.
    """
    cutoff = timestamp(now - LIVE_GRACE)
    rows = db.execute(
        "SELECT id, gap_report FROM records WHERE gap_report IS NOT NULL AND published_in IS NULL AND created_at < ?",
        (cutoff,),
    ).fetchall()
    for row_id, report in rows:
        db.execute("DELETE FROM records WHERE id = ?", (row_id,))
        states, events, first, last = json.loads(report)
        add_gap(db, states, events, first, last, new_drops=False)
