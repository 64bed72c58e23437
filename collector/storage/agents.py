"""Agents: enrollment and the online/offline status driven by the ``status`` topic (LWT)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa

from collector.storage.dialect import upsert_insert
from collector.storage.errors import UnknownNode
from collector.storage.register_summary import refresh_agents
from collector.storage.rows import check_seq
from collector.storage.schema import agents, nodes


class StatusOutcome(StrEnum):
    APPLIED = "applied"
    STALE = "stale"  # from an older session, or a late "online" after this session's death
    UNKNOWN_AGENT = "unknown_agent"


@dataclass(frozen=True, slots=True)
class AgentRow:
    agent_id: str
    tenant_id: int
    node_id: int | None
    enrolled_at: datetime
    revoked: bool
    last_session: int | None
    last_seen: datetime | None
    online: bool
    status_session: int | None
    status_at: datetime | None
    clock_offset: float | None = None  # seconds the agent's clock is ahead (negative: behind)
    clock_checked_at: datetime | None = None


def enroll_agent(
    conn: sa.Connection, agent_id: str, *, tenant_id: int, node_id: int, enrolled_at: datetime
) -> None:
    """Bind an agent to a store node of a tenant; enrolling again re-binds it and lifts a revocation."""
    node_ok = conn.execute(
        sa.select(nodes.c.id).where(nodes.c.id == node_id, nodes.c.tenant_id == tenant_id)
    ).first()
    if node_ok is None:
        raise UnknownNode(f"node {node_id} does not exist in tenant {tenant_id}")
    stmt = upsert_insert(conn, agents).values(
        agent_id=agent_id, tenant_id=tenant_id, node_id=node_id, enrolled_at=enrolled_at, revoked=False
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[agents.c.agent_id],
            set_={"tenant_id": tenant_id, "node_id": node_id, "enrolled_at": enrolled_at, "revoked": False},
        )
    )


def revoke_agent(conn: sa.Connection, agent_id: str) -> bool:
    result = conn.execute(
        sa.update(agents).where(agents.c.agent_id == agent_id).values(revoked=True, online=False)
    )
    refresh_agents(conn, [agent_id])
    return result.rowcount > 0


def get_agent(conn: sa.Connection, agent_id: str) -> AgentRow | None:
    row = conn.execute(sa.select(agents).where(agents.c.agent_id == agent_id)).first()
    return None if row is None else AgentRow(**row._asdict())


def upsert_agent_status(
    conn: sa.Connection, agent_id: str, *, online: bool, session: int, at: datetime, refresh_summary: bool = True
) -> StatusOutcome:
    """Apply a status message unless it is stale.

    Stale means: a session older than the last applied one (a retained or delayed LWT of a
    previous connection must not mark a reconnected agent offline), or an "online" of the same
    session arriving after that session's "offline" (a session never comes back after its death).
    """
    check_seq("session", session)
    current = agents.c
    same_session_ok = current.online.is_(True) if online else sa.true()
    applies = sa.or_(
        current.status_session.is_(None),
        current.status_session < session,
        sa.and_(current.status_session == session, same_session_ok),
    )
    result = conn.execute(
        sa.update(agents)
        .where(agents.c.agent_id == agent_id, applies)
        .values(online=online, status_session=session, status_at=at)
    )
    if result.rowcount > 0:
        if refresh_summary:  # the writer refreshes once per batch instead (lock order, writes.py)
            refresh_agents(conn, [agent_id])
        return StatusOutcome.APPLIED
    exists = conn.execute(sa.select(agents.c.agent_id).where(agents.c.agent_id == agent_id)).first()
    return StatusOutcome.STALE if exists is not None else StatusOutcome.UNKNOWN_AGENT


def mark_agent_seen(conn: sa.Connection, agent_id: str, *, session: int, at: datetime) -> None:
    """Advance last_seen/last_session monotonically (messages may arrive out of order)."""
    check_seq("session", session)
    current = agents.c
    conn.execute(
        sa.update(agents)
        .where(agents.c.agent_id == agent_id)
        .values(
            last_seen=sa.case(
                (
                    sa.or_(current.last_seen.is_(None), current.last_seen < at),
                    sa.literal(at, agents.c.last_seen.type),
                ),
                else_=current.last_seen,
            ),
            last_session=sa.case(
                (sa.or_(current.last_session.is_(None), current.last_session < session), session),
                else_=current.last_session,
            ),
        )
    )
