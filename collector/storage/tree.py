"""Tenants, the company tree (materialised paths) and tags."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from collector.storage import register_summary
from collector.storage.errors import InvalidValue, UnknownNode
from collector.storage.schema import nodes, register_tags, registers, tags, tenants


def create_tenant(conn: sa.Connection, name: str, *, created_at: datetime | None = None) -> int:
    created = created_at or datetime.now(UTC)
    return int(
        conn.execute(
            sa.insert(tenants).values(name=name, created_at=created).returning(tenants.c.id)
        ).scalar_one()
    )


def create_node(conn: sa.Connection, tenant_id: int, *, parent_id: int | None, kind: str, name: str) -> int:
    """Add a node under ``parent_id`` (None = a root of the tenant's tree); returns its id."""
    parent_path = "/"
    if parent_id is not None:
        parent_path = _node_path(conn, tenant_id, parent_id)
    # The path contains the node's own id, known only after the insert.
    node_id = int(
        conn.execute(
            sa.insert(nodes)
            .values(tenant_id=tenant_id, parent_id=parent_id, kind=kind, name=name, path=parent_path)
            .returning(nodes.c.id)
        ).scalar_one()
    )
    conn.execute(sa.update(nodes).where(nodes.c.id == node_id).values(path=f"{parent_path}{node_id}/"))
    return node_id


def move_node(conn: sa.Connection, tenant_id: int, node_id: int, new_parent_id: int | None) -> None:
    """Re-parent a node with its whole subtree (agents and registers keep their node ids)."""
    old_path = _node_path(conn, tenant_id, node_id)
    parent_path = "/" if new_parent_id is None else _node_path(conn, tenant_id, new_parent_id)
    if parent_path.startswith(old_path):
        raise InvalidValue(f"node {node_id} cannot move below itself")
    new_path = f"{parent_path}{node_id}/"
    conn.execute(
        sa.update(nodes)
        .where(nodes.c.tenant_id == tenant_id, nodes.c.path.startswith(old_path))
        .values(path=sa.literal(new_path).concat(sa.func.substr(nodes.c.path, len(old_path) + 1)))
    )
    conn.execute(sa.update(nodes).where(nodes.c.id == node_id).values(parent_id=new_parent_id))
    register_summary.refresh_subtree(conn, tenant_id, new_path)  # the list finds subtrees by path


def _node_path(conn: sa.Connection, tenant_id: int, node_id: int) -> str:
    path = conn.execute(
        sa.select(nodes.c.path).where(nodes.c.id == node_id, nodes.c.tenant_id == tenant_id)
    ).scalar_one_or_none()
    if path is None:
        raise UnknownNode(f"node {node_id} does not exist in tenant {tenant_id}")
    return str(path)


def create_tag(conn: sa.Connection, tenant_id: int, name: str) -> int:
    return int(
        conn.execute(sa.insert(tags).values(tenant_id=tenant_id, name=name).returning(tags.c.id)).scalar_one()
    )


def tag_register(conn: sa.Connection, register_id: str, tag_id: int) -> None:
    """Attach a tag of the register's own tenant (a foreign tag is refused)."""
    same_tenant = conn.execute(
        sa.select(tags.c.id)
        .join(registers, registers.c.tenant_id == tags.c.tenant_id)
        .where(tags.c.id == tag_id, registers.c.register_id == register_id)
    ).first()
    if same_tenant is None:
        raise InvalidValue(f"tag {tag_id} and register {register_id!r} are not of one tenant")
    conn.execute(sa.insert(register_tags).values(register_id=register_id, tag_id=tag_id))
