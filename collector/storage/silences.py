"""Maintenance windows on a node subtree or on one register; notifications consult them."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from collector.storage.errors import InvalidValue, UnknownNode
from collector.storage.rows import SilenceRow
from collector.storage.schema import nodes, registers, silences


def add_silence(
    conn: sa.Connection,
    tenant_id: int,
    *,
    node_id: int | None = None,
    register_id: str | None = None,
    starts_at: datetime,
    until: datetime,
    author: str,
    reason: str = "",
) -> int:
    """Silence a node's subtree or one register of ``tenant_id`` for [starts_at, until)."""
    if (node_id is None) == (register_id is None):
        raise InvalidValue("a silence targets exactly one of a node or a register")
    if until <= starts_at:
        raise InvalidValue("a silence must end after it starts")
    if node_id is not None:
        owner = conn.execute(sa.select(nodes.c.tenant_id).where(nodes.c.id == node_id)).scalar_one_or_none()
    else:
        owner = conn.execute(
            sa.select(registers.c.tenant_id).where(registers.c.register_id == register_id)
        ).scalar_one_or_none()
    if owner != tenant_id:
        raise UnknownNode(f"silence target {node_id or register_id!r} does not exist in tenant {tenant_id}")
    stmt = (
        sa.insert(silences)
        .values(
            tenant_id=tenant_id,
            node_id=node_id,
            register_id=register_id,
            starts_at=starts_at,
            until=until,
            author=author,
            reason=reason,
        )
        .returning(silences.c.id)
    )
    return int(conn.execute(stmt).scalar_one())


def delete_silence(conn: sa.Connection, silence_id: int) -> bool:
    return conn.execute(sa.delete(silences).where(silences.c.id == silence_id)).rowcount > 0


def silences_covering(conn: sa.Connection, register_id: str, at: datetime) -> list[SilenceRow]:
    """Silences in force at ``at`` for the register: its own, and those on any ancestor node."""
    register_node = nodes.alias("register_node")
    silenced_node = nodes.alias("silenced_node")
    via_node = (
        sa.select(silences.c.id)
        .join(silenced_node, silenced_node.c.id == silences.c.node_id)
        .join(register_node, register_node.c.path.startswith(silenced_node.c.path))
        .join(registers, registers.c.node_id == register_node.c.id)
        .where(registers.c.register_id == register_id)
    )
    query = (
        sa.select(silences)
        .where(
            sa.or_(silences.c.register_id == register_id, silences.c.id.in_(via_node)),
            silences.c.starts_at <= at,
            silences.c.until > at,
        )
        .order_by(silences.c.until.desc())
    )
    return [SilenceRow(**r._asdict()) for r in conn.execute(query)]
