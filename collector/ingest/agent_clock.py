"""Agent clocks: put every record on the collector's clock, and measure how far each agent's is off.

An agent's clock may be days off (a POS PC with a flat CMOS battery, a wrong time zone). Its
timestamps must never decide where a register's data lands in time: a clock 200 days behind once
had fresh history deleted by retention, and one 2 days behind made a 30-minute shift look blocked.
So each record's time is re-based on the collector's receive time (:func:`record_time`)::

    record time = received_at − (sent_ts − record ts)

where ``sent_ts`` is the agent clock when the message left (the envelope's own ``ts`` for a live
message, so its record time is its arrival; the ``hist`` batch's ``ts`` for a replayed one). Both
terms of the difference come from the agent's clock, so its error cancels: a replayed record keeps
the hours it waited in the outbox, a live one cannot be moved into the past or the future.

The agent's clock error is ``sent_ts − received_at``; the largest of a batch is kept (time spent
queued in the broker only makes it smaller) and stored on the agent for the ``agent_clock`` rule,
rewritten only when it moves by ``DEADBAND`` or more (network jitter must not rewrite the agent row
and re-evaluate its registers on every message). A larger error is stored at once; a smaller one
only once no reading for ``WINDOW`` came back up: a collector working through a queue (after a
restart, or a burst) reads every agent's clock as behind by the queue's age, and rewrote every agent
row — and re-evaluated every register — each time that age grew by two seconds, and raised
``agent_clock`` for a queue older than the threshold. A clock set back for real is seen ``WINDOW``
later. Each collector process starts from the stored errors, not from nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

import sqlalchemy as sa

from collector.ingest import bulk
from collector.storage.dialect import member_of
from collector.storage.schema import agents
from protocol.mqtt.wire import BirthPayload, EventPayload, HistBatch, StatePayload

if TYPE_CHECKING:  # writes.py uses record_time: a runtime import would be circular
    from collector.ingest.writes import Decoded

DEADBAND: Final = timedelta(seconds=2)
WINDOW: Final = timedelta(minutes=2)
_ZERO = timedelta(0)


def record_time(made: datetime, sent: datetime, received: datetime) -> datetime:
    """When a record was made, on the collector's clock (``made`` and ``sent`` are the agent's)."""
    return received - max(sent - made, _ZERO)


def clock_errors(items: list[Decoded]) -> dict[str, timedelta]:
    """Each agent's clock error (+ = ahead) as its messages of this batch show it."""
    errors: dict[str, timedelta] = {}
    for item in items:
        payload = item.payload
        # Not a status: its ts is the connect time even in a will fired hours later.
        if isinstance(payload, HistBatch | StatePayload | EventPayload | BirthPayload):
            error = payload.ts - item.inbound.received_at
            errors[payload.agent] = max(errors.get(payload.agent, error), error)
    return errors


class AgentClocks:
    """Stores each agent's measured clock error (seconds; + = ahead); :meth:`reset` after a rollback."""

    def __init__(self) -> None:
        self._stored: dict[str, timedelta | None] = {}  # None: nothing stored yet
        # Agent → (since when, the largest error since) while its readings stay below the stored one.
        self._lower: dict[str, tuple[datetime, timedelta]] = {}

    def reset(self) -> None:
        self._stored.clear()
        self._lower.clear()

    def store(self, conn: sa.Connection, errors: dict[str, timedelta], at: datetime) -> set[str]:
        """Write the errors that moved past the deadband (a lower one after ``WINDOW``); returns the agents written."""
        self._seed(conn, [agent for agent in errors if agent not in self._stored])
        due: dict[str, timedelta] = {}
        for agent, error in errors.items():
            stored = self._stored[agent]
            if stored is None or error >= stored + DEADBAND:
                due[agent] = error  # the first reading, or a truer one (less delay, or the clock moved ahead)
            elif error > stored - DEADBAND:
                self._lower.pop(agent, None)  # back within the deadband: the stored error holds
            else:
                since, largest = self._lower.get(agent, (at, error))
                self._lower[agent] = (since, max(largest, error))
                if at - since >= WINDOW:
                    due[agent] = max(largest, error)
        # Busy rows (another collector's batch holds them) are skipped, and stay due: see lock_idle_agents.
        free = bulk.lock_idle_agents(conn, due)
        due = {agent: error for agent, error in due.items() if agent in free}
        if not due:
            return set()
        stmt = (
            sa.update(agents)
            .where(agents.c.agent_id == sa.bindparam("b_agent"))
            .values(clock_offset=sa.bindparam("b_offset"), clock_checked_at=sa.bindparam("b_at", type_=agents.c.clock_checked_at.type))
        )
        conn.execute(stmt, [
            {"b_agent": agent, "b_offset": round(error.total_seconds(), 1), "b_at": at} for agent, error in sorted(due.items())
        ])  # fmt: skip
        self._stored.update(due)
        for agent in due:
            self._lower.pop(agent, None)
        return set(due)

    def _seed(self, conn: sa.Connection, unknown: list[str]) -> None:
        """What the database holds for agents this process has not seen yet (another collector, or
        this one before a restart, may have measured them)."""
        if not unknown:
            return
        rows = conn.execute(
            sa.select(agents.c.agent_id, agents.c.clock_offset).where(member_of(conn, agents.c.agent_id, unknown))
        )
        stored = {agent: offset for agent, offset in rows}
        for agent in unknown:
            offset = stored.get(agent)
            self._stored[agent] = None if offset is None else timedelta(seconds=float(offset))
