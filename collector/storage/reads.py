"""Scoped reads for the API and pages. Every query takes the caller's ``Scope`` and filters in SQL,
so a register outside it is never loaded, counted or rolled up."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from collector.storage.alert_store import alert_from_row, check_alert_status
from collector.storage.errors import InvalidValue
from collector.storage.ranks import CANNOT_SELL as CANNOT_SELL
from collector.storage.ranks import UNKNOWN_SELL_RANK as UNKNOWN_SELL_RANK
from collector.storage.ranks import severity_rank as severity_rank
from collector.storage.rows import (
    AgentEventRow,
    AlertRow,
    EventRow,
    HistoryRow,
    RegisterRow,
    check_severity,
)
from collector.storage.schema import (
    agent_events,
    agents,
    alerts,
    events,
    nodes,
    register_state,
    register_tags,
    registers,
    tags,
)
from collector.storage.schema import state_history as history_table
from collector.storage.scope import Scope, agent_visible, in_subtree, register_visible

# ok = no active alert, problem = at least one active alert, offline = the agent is offline or
# it cannot talk to the register.
REGISTER_STATUSES: tuple[str, ...] = ("ok", "problem", "offline")
MAX_PAGE = 10_000


def _check_page(limit: int, offset: int) -> None:
    if not 0 < limit <= MAX_PAGE or offset < 0:
        raise InvalidValue(f"page limit must be 1..{MAX_PAGE} and offset ≥ 0 (got {limit}, {offset})")


def _check_severities(severities: Collection[str] | None) -> list[str] | None:
    if severities is None:
        return None
    for label in severities:
        check_severity(label)
    return list(severities)


REGISTER_FROM = (
    registers.outerjoin(nodes, nodes.c.id == registers.c.node_id)
    .outerjoin(register_state, register_state.c.register_id == registers.c.register_id)
    .outerjoin(agents, agents.c.agent_id == registers.c.agent_id)
)

REGISTER_COLUMNS = (
    registers.c.register_id,
    registers.c.tenant_id,
    registers.c.node_id,
    nodes.c.name.label("node_name"),
    nodes.c.path.label("node_path"),
    registers.c.agent_id,
    agents.c.online.label("agent_online"),
    registers.c.protocol,
    registers.c.serial,
    registers.c.rnm,
    registers.c.fn_serial,
    registers.c.model,
    registers.c.first_seen,
    registers.c.last_seen,
    register_state.c.shift_status,
    register_state.c.unsent_count,
    register_state.c.oldest_unsent_at,
    register_state.c.fn_valid_until,
    register_state.c.link_up,
    register_state.c.time_to_block_seconds,
    register_state.c.blocks_at,
    register_state.c.worst_severity,
    register_state.c.received_at.label("state_received_at"),
    register_state.c.sell_status,
    register_state.c.verdict,
)


def get_register(conn: sa.Connection, scope: Scope, register_id: str) -> RegisterRow | None:
    """The register with its latest state and tags; None when it does not exist or is out of scope."""
    row = conn.execute(
        sa.select(*REGISTER_COLUMNS, register_state.c.state)
        .select_from(REGISTER_FROM)
        .where(registers.c.register_id == register_id, register_visible(scope))
    ).first()
    if row is None:
        return None
    tag_names = conn.execute(
        sa.select(tags.c.name)
        .join(register_tags, register_tags.c.tag_id == tags.c.id)
        .where(register_tags.c.register_id == register_id)
        .order_by(tags.c.name)
    ).scalars()
    return RegisterRow(**row._mapping, tags=tuple(tag_names))


def find_registers(conn: sa.Connection, scope: Scope, identifier: str, *, limit: int = 20) -> list[tuple[str, str | None]]:
    """In-scope registers whose id, serial, РНМ or ФН number is exactly ``identifier`` (what people
    copy from a receipt or a list), as (register id, serial)."""
    text = identifier.strip()
    if not text:
        return []
    matches = sa.or_(registers.c.register_id == text, registers.c.serial == text, registers.c.rnm == text,
                     registers.c.fn_serial == text)
    rows = conn.execute(
        sa.select(registers.c.register_id, registers.c.serial)
        .where(matches, register_visible(scope))
        .order_by(registers.c.register_id)
        .limit(limit)
    )
    return [(row.register_id, row.serial) for row in rows]


def visible_register_ids(scope: Scope) -> sa.Select[tuple[str]]:
    return sa.select(registers.c.register_id).where(register_visible(scope))


def list_alerts(
    conn: sa.Connection,
    scope: Scope,
    *,
    status: str | None = "active",
    severities: Collection[str] | None = None,
    rule: str | None = None,
    register_id: str | None = None,
    node_id: int | None = None,
    acknowledged: bool | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[AlertRow], int]:
    """Alerts of registers in scope, most severe first, then oldest first; and the total count."""
    _check_page(limit, offset)
    conditions: list[ColumnElement[bool]] = [alerts.c.register_id.in_(visible_register_ids(scope))]
    if status is not None:
        conditions.append(alerts.c.status == check_alert_status(status))
    checked = _check_severities(severities)
    if checked is not None:
        conditions.append(alerts.c.severity.in_(checked))
    if rule is not None:
        conditions.append(alerts.c.rule == rule)
    if register_id is not None:
        conditions.append(alerts.c.register_id == register_id)
    if node_id is not None:
        below = sa.select(registers.c.register_id).where(in_subtree(registers.c.node_id, node_id))
        conditions.append(alerts.c.register_id.in_(below))
    if acknowledged is not None:
        conditions.append(alerts.c.acknowledged.is_(acknowledged))
    total = conn.execute(sa.select(sa.func.count()).select_from(alerts).where(*conditions)).scalar_one()
    page = conn.execute(
        sa.select(alerts)
        .where(*conditions)
        .order_by(severity_rank(alerts.c.severity).desc(), alerts.c.started_at.asc(), alerts.c.id.asc())
        .limit(limit)
        .offset(offset)
    )
    return [alert_from_row(r) for r in page], int(total)


def get_alert(conn: sa.Connection, scope: Scope, alert_id: int) -> AlertRow | None:
    """One alert by id; None when it does not exist or its register is out of scope."""
    row = conn.execute(
        sa.select(alerts).where(
            alerts.c.id == alert_id, alerts.c.register_id.in_(visible_register_ids(scope))
        )
    ).first()
    return None if row is None else alert_from_row(row)


def _register_records(
    table: sa.Table,
    row_type: type[Any],
    scope: Scope,
    register_id: str,
    since: datetime | None,
    until: datetime | None,
) -> sa.Select[Any]:
    """Rows of ``table`` for one in-scope register with ``since <= ts < until``, selecting exactly
    the columns named like ``row_type``'s fields."""
    query = sa.select(*(table.c[f.name] for f in fields(row_type))).where(
        table.c.register_id == register_id,
        table.c.register_id.in_(visible_register_ids(scope)),
    )
    if since is not None:
        query = query.where(table.c.ts >= since)
    if until is not None:
        query = query.where(table.c.ts < until)
    return query


def list_events(
    conn: sa.Connection,
    scope: Scope,
    register_id: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    kinds: Collection[str] | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[EventRow]:
    """The register's events in [since, until), newest first; empty when out of scope."""
    _check_page(limit, offset)
    query = _register_records(events, EventRow, scope, register_id, since, until)
    if kinds is not None:
        query = query.where(events.c.kind.in_(list(kinds)))
    query = query.order_by(events.c.ts.desc(), events.c.id.desc()).limit(limit).offset(offset)
    return [EventRow(**r._mapping) for r in conn.execute(query)]


def agent_in_scope(conn: sa.Connection, scope: Scope, agent_id: str) -> bool:
    found = conn.execute(sa.select(agents.c.agent_id).where(agents.c.agent_id == agent_id, agent_visible(scope)))
    return found.first() is not None


def list_agent_events(
    conn: sa.Connection, scope: Scope, agent_id: str, *, limit: int = 100, offset: int = 0
) -> list[AgentEventRow]:
    """The agent's own events (outbox_gap, command_error), newest first; empty when out of scope."""
    _check_page(limit, offset)
    query = (
        sa.select(*(agent_events.c[f.name] for f in fields(AgentEventRow)))
        .join(agents, agents.c.agent_id == agent_events.c.agent_id)
        .where(agent_events.c.agent_id == agent_id, agent_visible(scope))
        .order_by(agent_events.c.ts.desc(), agent_events.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [AgentEventRow(**r._mapping) for r in conn.execute(query)]


def state_history(
    conn: sa.Connection,
    scope: Scope,
    register_id: str,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    limit: int = MAX_PAGE,
    offset: int = 0,
) -> list[HistoryRow]:
    """The register's states in [since, until) by agent time, oldest first; empty when out of scope."""
    _check_page(limit, offset)
    query = _register_records(history_table, HistoryRow, scope, register_id, since, until)
    query = query.order_by(history_table.c.ts.asc(), history_table.c.id.asc()).limit(limit).offset(offset)
    return [HistoryRow(**r._mapping) for r in conn.execute(query)]
