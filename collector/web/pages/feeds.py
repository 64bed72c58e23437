"""Adapters that feed the ``EventHub`` from the collector's threads, so the service wires live
updates with two lines and neither ingest nor the alert engine learns about the web layer:

* ``register_change_feed(engine, hub)`` — a callable with the ingest writer's ``on_changed``
  signature ``(register_ids, agent_ids)``; publishes one "register" notice per changed register;
* ``alert_notice_feed(engine, hub, then=notify)`` — wraps the alert engine's ``Notify`` callable,
  publishes an "alert" notice, then passes the notice on.

Both look up each register's tenant and tree path (the hub filters by scope with them) and never
raise into the caller's loop: a failed lookup is logged and the notice is skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import Any

import sqlalchemy as sa

from collector.storage.schema import nodes, register_state, registers
from collector.web.pages.sse import EventHub

log = logging.getLogger(__name__)

ChangeFeed = Callable[[Collection[str], Collection[str]], None]
_LOOKUP_CHUNK = 500


def locate_registers(
    conn: sa.Connection, register_ids: Collection[str], agent_ids: Collection[str] = ()
) -> list[dict[str, Any]]:
    """Tenant, tree path and the list columns of the given registers (and those of the agents)."""
    wanted = [registers.c.register_id.in_(list(register_ids))] if register_ids else []
    if agent_ids:
        wanted.append(registers.c.agent_id.in_(list(agent_ids)))
    if not wanted:
        return []
    query = (
        sa.select(
            registers.c.register_id,
            registers.c.tenant_id,
            nodes.c.path,
            register_state.c.worst_severity,
            register_state.c.blocks_at,
            register_state.c.sell_status,
            register_state.c.unsent_count,
            register_state.c.shift_status,
            register_state.c.link_up,
        )
        .select_from(
            registers.outerjoin(nodes, nodes.c.id == registers.c.node_id).outerjoin(
                register_state, register_state.c.register_id == registers.c.register_id
            )
        )
        .where(sa.or_(*wanted))
    )
    return [dict(row._mapping) for row in conn.execute(query)]


def _publish_rows(hub: EventHub, kind: str, rows: list[dict[str, Any]], extra: dict[str, Any]) -> None:
    for row in rows:
        payload = {
            key: value for key, value in row.items() if key not in ("register_id", "tenant_id", "path")
        }
        blocks_at = payload.get("blocks_at")
        payload["blocks_at"] = blocks_at.isoformat() if blocks_at is not None else None
        hub.publish(kind, row["register_id"], row["path"], {**payload, **extra}, tenant_id=row["tenant_id"])


def register_change_feed(engine: sa.Engine, hub: EventHub) -> ChangeFeed:
    def changed(register_ids: Collection[str], agent_ids: Collection[str] = ()) -> None:
        if hub.subscriber_count == 0:  # nobody watching: spare the writer thread the lookup
            hub.skipped()
            return
        ids = sorted(set(register_ids))
        try:
            with engine.connect() as conn:
                rows = locate_registers(conn, ids[:_LOOKUP_CHUNK], agent_ids)
                for start in range(_LOOKUP_CHUNK, len(ids), _LOOKUP_CHUNK):
                    rows.extend(locate_registers(conn, ids[start : start + _LOOKUP_CHUNK]))
            _publish_rows(hub, "register", rows, {})
        except Exception:  # live updates are best effort; the writer loop must go on
            log.exception("could not publish register changes to the live feed")

    return changed


def alert_notice_feed(
    engine: sa.Engine, hub: EventHub, then: Callable[[Any], None] | None = None
) -> Callable[[Any], None]:
    """``then`` is the notifier the engine would otherwise call (``AlertNotice`` → None)."""

    def forward(notice: Any) -> None:
        if hub.subscriber_count == 0:
            hub.skipped()
        else:
            try:
                with engine.connect() as conn:
                    rows = locate_registers(conn, [notice.register_id])
                extra = {"rule": notice.rule, "severity": notice.severity, "status": notice.status}
                _publish_rows(hub, "alert", rows, extra)
            except Exception:
                log.exception("could not publish an alert change to the live feed")
        if then is not None:
            then(notice)

    return forward
