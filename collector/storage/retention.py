"""Retention: delete what is older than the configured horizon, by the record's own time."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from collector.storage.schema import agent_events, dead_letters, events, state_history


def purge_history(conn: sa.Connection, older_than: datetime) -> int:
    """Delete state history recorded (agent time) before ``older_than``; returns rows deleted.

    Latest state, alerts and the ingest marks (the agents' acks) are untouched.
    """
    return conn.execute(sa.delete(state_history).where(state_history.c.ts < older_than)).rowcount


def purge_events(conn: sa.Connection, older_than: datetime) -> int:
    """Register and agent events from before ``older_than`` (agent time); returns rows deleted."""
    deleted = conn.execute(sa.delete(events).where(events.c.ts < older_than)).rowcount
    return deleted + conn.execute(sa.delete(agent_events).where(agent_events.c.ts < older_than)).rowcount


def purge_dead_letters(conn: sa.Connection, older_than: datetime) -> int:
    return conn.execute(sa.delete(dead_letters).where(dead_letters.c.received_at < older_than)).rowcount
