"""Agents the collector refuses (not enrolled, revoked), read from what admission already records:
their messages in the dead letters under the reasons ``unknown_agent`` and ``agent_revoked``.

Grouped by topic in SQL (a refused agent repeats a handful of topics), folded per agent here.
A revoked agent still has its ``agents`` row, hence a company; an unknown one has none; one
enrolled since is admitted and no longer listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from collector.storage.schema import agents, dead_letters

REFUSAL_REASONS = ("unknown_agent", "agent_revoked")


@dataclass(frozen=True, slots=True)
class RefusedAgent:
    agent_id: str
    reason: str  # the latest refusal's reason
    messages: int
    first_at: datetime
    last_at: datetime
    tenant_id: int | None  # known only for a revoked agent


def _agent_of(topic: str) -> str | None:
    parts = topic.split("/")  # kassa/v1/{agent}/...
    return parts[2] if len(parts) > 2 and parts[2] else None


def refused_agents(conn: sa.Connection, *, tenant_id: int | None = None, limit: int = 100) -> list[RefusedAgent]:
    """Most recently refused first; ``tenant_id`` keeps the revoked agents of one company only."""
    rows = conn.execute(
        sa.select(
            dead_letters.c.topic,
            dead_letters.c.reason,
            sa.func.count().label("messages"),
            sa.func.min(dead_letters.c.received_at).label("first_at"),
            sa.func.max(dead_letters.c.received_at).label("last_at"),
        )
        .where(dead_letters.c.reason.in_(REFUSAL_REASONS))
        .group_by(dead_letters.c.topic, dead_letters.c.reason)
    ).all()
    folded: dict[str, RefusedAgent] = {}
    for row in rows:
        agent_id = _agent_of(row.topic)
        if agent_id is None:
            continue
        seen = folded.get(agent_id)
        if seen is None:
            folded[agent_id] = RefusedAgent(agent_id, row.reason, row.messages, row.first_at, row.last_at, None)
            continue
        latest = row if row.last_at > seen.last_at else seen
        folded[agent_id] = RefusedAgent(
            agent_id, latest.reason, seen.messages + row.messages, min(seen.first_at, row.first_at),
            max(seen.last_at, row.last_at), None,
        )
    known = {
        row.agent_id: row
        for row in conn.execute(
            sa.select(agents.c.agent_id, agents.c.tenant_id, agents.c.revoked).where(
                agents.c.agent_id.in_(list(folded))
            )
        )
    } if folded else {}
    found = [
        RefusedAgent(a.agent_id, a.reason, a.messages, a.first_at, a.last_at,
                     known[a.agent_id].tenant_id if a.agent_id in known else None)
        for a in folded.values()
        # enrolled since (and not revoked): admitted now, its old refusals are history
        if a.agent_id not in known or known[a.agent_id].revoked
    ]
    if tenant_id is not None:
        found = [a for a in found if a.tenant_id == tenant_id]
    found.sort(key=lambda a: (a.last_at, a.agent_id), reverse=True)
    return found[:limit]
