"""Scoped SQL the API and the monitoring pages need on top of ``collector.storage.reads``.

The register list maps the API's filters onto the storage's summary-backed list
(``collector.storage.register_list``): connectivity status (online / offline / unreachable), a
minimum severity, the protocol filter and sorting by serial. Alert lists add sorting by time. Every query takes the
caller's ``Scope`` and filters in SQL; the page helpers only look up registers whose ids came out
of a scoped query, and re-check the scope anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from collector.storage import register_list
from collector.storage import repository as repo
from collector.storage.alert_store import alert_from_row
from collector.storage.reads import severity_rank, visible_register_ids
from collector.storage.register_list import RegisterPage, RegisterQuery
from collector.storage.rows import SEVERITY_LEVELS, AlertRow, ContractRow, DeadLetterRow, RegisterRow
from collector.storage.schema import alerts, dead_letters, nodes, registers
from collector.storage.scope import Scope, in_subtree
from collector.web.shared.fleet_models import AlertListQuery, RegisterFilters

_IN_CHUNK = 900  # ids per IN (...) list, well under every backend's parameter limit


def severities_at_least(minimum: str | None) -> list[str] | None:
    return None if minimum is None else list(SEVERITY_LEVELS[SEVERITY_LEVELS.index(minimum) :])


def register_query(filters: RegisterFilters) -> RegisterQuery:
    """The storage's form of the API's register filters."""
    return RegisterQuery(
        connectivity=filters.status,
        severities=severities_at_least(filters.severity),
        rule=filters.rule,
        node_id=filters.node,
        tag=filters.tag,
        search=filters.q,
        protocol=filters.protocol,
        sell=filters.sell,
        ofd_not_activated=filters.ofd is not None,
    )


def list_register_page(
    conn: sa.Connection,
    scope: Scope,
    filters: RegisterFilters,
    *,
    limit: int | None,
    offset: int,
    cursor: str | None = None,
) -> RegisterPage:
    """One page of registers in scope matching ``filters`` (with their latest state JSON), the total
    and the cursor of the next page."""
    return register_list.list_page(
        conn, scope, register_query(filters), sort=filters.sort, limit=limit, offset=offset, cursor=cursor, with_state=True
    )


def count_registers_each(conn: sa.Connection, scope: Scope, filter_sets: Sequence[RegisterFilters]) -> list[int]:
    """How many registers in scope match each filter set, in one pass (the list's own predicates)."""
    return register_list.count_each(conn, scope, [register_query(filters) for filters in filter_sets])


@dataclass(frozen=True, slots=True)
class PageContext:
    """What a page of registers needs besides its rows: alerts, tree names, contracts."""

    active_alerts: dict[str, list[AlertRow]]
    node_names: dict[int, str]
    contracts: dict[str, ContractRow]


def node_ids_on_path(path: str | None) -> list[int]:
    """``"/1/5/12/"`` → ``[1, 5, 12]``."""
    return [int(part) for part in (path or "").split("/") if part]


def page_context(conn: sa.Connection, scope: Scope, rows: Sequence[RegisterRow]) -> PageContext:
    ids = [row.register_id for row in rows]
    active: dict[str, list[AlertRow]] = {register_id: [] for register_id in ids}
    if ids:
        found = conn.execute(
            sa.select(alerts)
            .where(
                alerts.c.register_id.in_(ids),
                alerts.c.register_id.in_(visible_register_ids(scope)),
                alerts.c.status == "active",
            )
            .order_by(severity_rank(alerts.c.severity).desc(), alerts.c.started_at.asc(), alerts.c.id.asc())
        )
        for alert in found:
            active[alert.register_id].append(alert_from_row(alert))
    node_ids = sorted({node_id for row in rows for node_id in node_ids_on_path(row.node_path)})
    names: dict[int, str] = {}
    if node_ids:
        # Ancestors of a visible node may lie above the caller's grant; their names still make the
        # breadcrumb, but never across tenants.
        named = sa.select(nodes.c.id, nodes.c.name).where(nodes.c.id.in_(node_ids))
        if scope.tenant_id is not None:
            named = named.where(nodes.c.tenant_id == scope.tenant_id)
        names = {int(node_id): str(name) for node_id, name in conn.execute(named)}
    return PageContext(active_alerts=active, node_names=names, contracts=repo.load_contracts(conn, ids) if ids else {})


def list_alert_page(conn: sa.Connection, scope: Scope, query: AlertListQuery) -> tuple[list[AlertRow], int]:
    """Alerts of registers in scope matching ``query``, worst or newest first; and the total."""
    conditions: list[ColumnElement[bool]] = [alerts.c.register_id.in_(visible_register_ids(scope))]
    if query.state != "all":
        conditions.append(alerts.c.status == query.state)
    if query.acknowledged is not None:
        conditions.append(alerts.c.acknowledged.is_(query.acknowledged))
    severities = severities_at_least(query.severity)
    if severities is not None:
        conditions.append(alerts.c.severity.in_(severities))
    if query.rule is not None:
        conditions.append(alerts.c.rule == query.rule)
    if query.register_id is not None:
        conditions.append(alerts.c.register_id == query.register_id)
    if query.node is not None:
        conditions.append(alerts.c.register_id.in_(sa.select(registers.c.register_id).where(in_subtree(registers.c.node_id, query.node))))
    if query.sort == "time":
        order = [alerts.c.started_at.desc(), alerts.c.id.desc()]
    else:
        order = [severity_rank(alerts.c.severity).desc(), alerts.c.started_at.asc(), alerts.c.id.asc()]
    total = conn.execute(sa.select(sa.func.count()).select_from(alerts).where(*conditions)).scalar_one()
    page = conn.execute(sa.select(alerts).where(*conditions).order_by(*order).limit(query.limit).offset(query.offset))
    return [alert_from_row(row) for row in page], int(total)


def list_dead_letter_page(conn: sa.Connection, *, limit: int, offset: int) -> tuple[list[DeadLetterRow], int]:
    """Newest first. Dead letters belong to no tenant: only admins may call this."""
    total = conn.execute(sa.select(sa.func.count()).select_from(dead_letters)).scalar_one()
    return repo.dead_letter_page(conn, limit=limit, offset=offset), int(total)
