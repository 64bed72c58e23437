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
and re-evaluate its registers on every message).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

import sqlalchemy as sa

from collector.ingest import bulk
from collector.storage.schema import agents
from protocol.mqtt.models import BirthPayload, EventPayload, HistBatch, StatePayload

if TYPE_CHECKING:  # writes.py uses record_time: a runtime import would be circular
    from collector.ingest.writes import Decoded

DEADBAND: Final = timedelta(seconds=2)
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
        self._stored: dict[str, timedelta] = {}

    def reset(self) -> None:
        self._stored.clear()

    def store(self, conn: sa.Connection, errors: dict[str, timedelta], at: datetime) -> set[str]:
        """Write the errors that moved past the deadband; returns the agents written."""
        due = {
            agent: error for agent, error in errors.items()
            if agent not in self._stored or abs(error - self._stored[agent]) >= DEADBAND
        }
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
        return set(due)
