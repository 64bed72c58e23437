"""The company tree of one tenant: nodes, tags and registers in stores (its levels are in
``tree_levels``, re-exported here for callers that think of the tree as one thing).

Levels are free per tenant (``tree_levels``): position 0 is the root (the company), and the
last level holds registers (the store). A node's level must come after its parent's, so levels
may be skipped (a city straight under the company) but never inverted, and a store is a leaf.
Sibling names are unique, which is what lets a CSV row name a place by its names alone.

Every change checks the actor's grants (``rights.authorize``) and writes an audit entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from collector.accounts import audit
from collector.accounts.audit import Actor
from collector.accounts.errors import Conflict, InvalidInput, NotFound
from collector.accounts.inn import check_inn
from collector.accounts.names import clean_name
from collector.accounts.rights import Permission, authorize
from collector.accounts.schema import grants, tenant_profiles, tree_levels
from collector.accounts.tree_levels import DEFAULT_LEVELS as DEFAULT_LEVELS
from collector.accounts.tree_levels import DEFAULT_TITLES as DEFAULT_TITLES
from collector.accounts.tree_levels import Level as Level
from collector.accounts.tree_levels import check_level_names
from collector.accounts.tree_levels import level_titles as level_titles
from collector.accounts.tree_levels import levels as levels
from collector.accounts.tree_levels import set_level_titles as set_level_titles
from collector.accounts.tree_levels import set_levels as set_levels
from collector.storage import register_summary
from collector.storage import tree as storage_tree
from collector.storage.errors import InvalidValue, UnknownNode
from collector.storage.schema import agents, nodes, register_tags, registers, tags, tenants
from protocol.kkt.state import DRIVER_PROTOCOLS

PROTOCOLS = DRIVER_PROTOCOLS
MAX_REGISTER_ID_LENGTH = 100  # registers.register_id


@dataclass(frozen=True, slots=True)
class Company:
    tenant_id: int
    root_node_id: int


@dataclass(frozen=True, slots=True)
class NodeInfo:
    id: int
    parent_id: int | None
    kind: str
    name: str
    path: str


def create_company(
    conn: sa.Connection,
    actor: Actor,
    *,
    name: str,
    inn: str,
    at: datetime,
    levels: Sequence[str] = DEFAULT_LEVELS,
) -> Company:
    """A tenant with its ИНН, its tree levels and the root node (the company itself)."""
    name = clean_name(name, "company name")
    inn = check_inn(inn, person=None)
    level_names = check_level_names(levels)
    if conn.execute(sa.select(tenant_profiles.c.tenant_id).where(tenant_profiles.c.inn == inn)).first():
        raise Conflict(f"a company with ИНН {inn} is already registered")
    tenant_id = storage_tree.create_tenant(conn, name, created_at=at)
    conn.execute(
        sa.insert(tree_levels),
        [
            {"tenant_id": tenant_id, "position": i, "name": n, "holds_registers": i == len(level_names) - 1}
            for i, n in enumerate(level_names)
        ],
    )
    root = storage_tree.create_node(conn, tenant_id, parent_id=None, kind=level_names[0], name=name)
    conn.execute(sa.insert(tenant_profiles).values(tenant_id=tenant_id, inn=inn, root_node_id=root))
    audit.record(
        conn,
        actor,
        tenant_id=tenant_id,
        action="company.create",
        target_type="tenant",
        target_id=tenant_id,
        at=at,
        details={"name": name, "inn": inn, "levels": level_names},
    )
    return Company(tenant_id, root)


def find_company(conn: sa.Connection, name_or_inn: str) -> Company:
    """A tenant by exact name or ИНН (the operator CLI's ``--tenant``)."""
    rows = conn.execute(
        sa.select(tenants.c.id, tenant_profiles.c.root_node_id)
        .join(tenant_profiles, tenant_profiles.c.tenant_id == tenants.c.id)
        .where(sa.or_(tenants.c.name == name_or_inn, tenant_profiles.c.inn == name_or_inn))
    ).all()
    if not rows:
        raise NotFound(f"no company named {name_or_inn!r} (or with that ИНН)")
    if len(rows) > 1:
        raise Conflict(f"several companies are named {name_or_inn!r}; give the ИНН instead")
    if rows[0].root_node_id is None:
        raise NotFound(f"company {name_or_inn!r} has no tree root")
    return Company(int(rows[0].id), int(rows[0].root_node_id))


def find_root(conn: sa.Connection, tenant_id: int) -> int:
    root = conn.execute(
        sa.select(tenant_profiles.c.root_node_id).where(tenant_profiles.c.tenant_id == tenant_id)
    ).scalar_one_or_none()
    if root is None:
        raise NotFound(f"company {tenant_id} has no tree root")
    return int(root)


def node_paths(conn: sa.Connection, tenant_id: int) -> dict[int, str]:
    """Node id → its path for pickers, «Продукты у дома / Москва»: the company root is left out
    (every node is in it), so two cities of the same name under different brands differ."""
    rows = conn.execute(
        sa.select(nodes.c.id, nodes.c.name, nodes.c.path, nodes.c.parent_id).where(nodes.c.tenant_id == tenant_id)
    ).all()
    names = {row.id: row.name for row in rows}
    found = {}
    for row in rows:
        ids = [int(part) for part in row.path.split("/") if part]
        below_root = [names[i] for i in ids[1:] if i in names]
        found[row.id] = " / ".join(below_root) if row.parent_id is not None and below_root else row.name
    return found


def get_node(conn: sa.Connection, tenant_id: int, node_id: int) -> NodeInfo:
    row = conn.execute(
        sa.select(nodes.c.id, nodes.c.parent_id, nodes.c.kind, nodes.c.name, nodes.c.path).where(
            nodes.c.id == node_id, nodes.c.tenant_id == tenant_id
        )
    ).first()
    if row is None:
        raise NotFound(f"node {node_id} not found")
    return NodeInfo(row.id, row.parent_id, row.kind, row.name, row.path)


def _level_position(tenant_levels: list[Level], kind: str) -> int:
    for level in tenant_levels:
        if level.name == kind:
            return level.position
    known = ", ".join(lv.name for lv in tenant_levels)
    raise InvalidInput(f"unknown level {kind!r}; this company's levels are {known}",
                       ru=f"Неизвестный уровень «{kind}». Уровни компании: {known}.")


def _check_placement(
    conn: sa.Connection, tenant_id: int, parent: NodeInfo, kind: str, name: str, node_id: int | None
) -> None:
    tenant_levels = levels(conn, tenant_id)
    if _level_position(tenant_levels, kind) <= _level_position(tenant_levels, parent.kind):
        raise InvalidInput(f"a {kind} cannot be placed under a {parent.kind} ({parent.name!r})",
                           ru=f"Узел уровня «{kind}» нельзя поставить под «{parent.name}» (уровень «{parent.kind}»): "
                              "выберите узел более высокого уровня.")
    sibling = conn.execute(
        sa.select(nodes.c.id).where(
            nodes.c.parent_id == parent.id, nodes.c.name == name, nodes.c.id != (node_id or -1)
        )
    ).first()
    if sibling is not None:
        raise Conflict(f"{parent.name!r} already has a node named {name!r}",
                       ru=f"В «{parent.name}» уже есть узел «{name}»: выберите другое название.")


def create_node(
    conn: sa.Connection, actor: Actor, tenant_id: int, *, parent_id: int, kind: str, name: str, at: datetime
) -> int:
    authorize(conn, actor, tenant_id, Permission.MANAGE_TREE, parent_id)
    parent = get_node(conn, tenant_id, parent_id)
    name = clean_name(name)
    kind = kind.strip().lower()
    _check_placement(conn, tenant_id, parent, kind, name, None)
    return insert_node(conn, actor, tenant_id, parent_id, kind, name, at=at)


def insert_node(
    conn: sa.Connection,
    actor: Actor,
    tenant_id: int,
    parent_id: int,
    kind: str,
    name: str,
    *,
    at: datetime,
    **context: object,
) -> int:
    """Write an already checked node and its audit entry (``context`` goes into the details)."""
    node_id = storage_tree.create_node(conn, tenant_id, parent_id=parent_id, kind=kind, name=name)
    audit.record(
        conn,
        actor,
        tenant_id=tenant_id,
        action="node.create",
        target_type="node",
        target_id=node_id,
        at=at,
        details={"parent_id": parent_id, "kind": kind, "name": name, **context},
    )
    return node_id


def rename_node(
    conn: sa.Connection, actor: Actor, tenant_id: int, node_id: int, name: str, *, at: datetime
) -> None:
    authorize(conn, actor, tenant_id, Permission.MANAGE_TREE, node_id)
    node = get_node(conn, tenant_id, node_id)
    name = clean_name(name)
    if node.parent_id is not None:
        _check_placement(conn, tenant_id, get_node(conn, tenant_id, node.parent_id), node.kind, name, node_id)
    conn.execute(sa.update(nodes).where(nodes.c.id == node_id).values(name=name))
    audit.record(
        conn,
        actor,
        tenant_id=tenant_id,
        action="node.rename",
        target_type="node",
        target_id=node_id,
        at=at,
        details={"from": node.name, "to": name},
    )


def move_node(
    conn: sa.Connection, actor: Actor, tenant_id: int, node_id: int, new_parent_id: int, *, at: datetime
) -> None:
    """Move a subtree under another node of the same tenant (never below itself, never the root)."""
    authorize(conn, actor, tenant_id, Permission.MANAGE_TREE, node_id)
    authorize(conn, actor, tenant_id, Permission.MANAGE_TREE, new_parent_id)
    node = get_node(conn, tenant_id, node_id)
    if node.parent_id is None:
        raise InvalidInput("the company root cannot be moved", ru="Компанию (корень структуры) перенести нельзя.")
    new_parent = get_node(conn, tenant_id, new_parent_id)  # NotFound for another tenant's node
    if new_parent.path.startswith(node.path):
        raise InvalidInput(f"{node.name!r} cannot be moved below itself",
                           ru=f"«{node.name}» нельзя перенести внутрь самого себя.")
    _check_placement(conn, tenant_id, new_parent, node.kind, node.name, node_id)
    try:
        storage_tree.move_node(conn, tenant_id, node_id, new_parent_id)
    except (UnknownNode, InvalidValue) as exc:  # raced with another change; same refusals
        raise InvalidInput(str(exc)) from exc
    audit.record(
        conn,
        actor,
        tenant_id=tenant_id,
        action="node.move",
        target_type="node",
        target_id=node_id,
        at=at,
        details={"from_parent": node.parent_id, "to_parent": new_parent_id},
    )


def delete_node(conn: sa.Connection, actor: Actor, tenant_id: int, node_id: int, *, at: datetime) -> None:
    """Delete an empty node: no children, registers, agents or grants (nothing disappears silently)."""
    authorize(conn, actor, tenant_id, Permission.MANAGE_TREE, node_id)
    node = get_node(conn, tenant_id, node_id)
    if node.parent_id is None:
        raise InvalidInput("the company root cannot be deleted", ru="Компанию (корень структуры) удалить нельзя.")
    holders = (
        ("child nodes", "вложенные узлы", sa.select(nodes.c.id).where(nodes.c.parent_id == node_id)),
        ("registers", "кассы", sa.select(registers.c.register_id).where(registers.c.node_id == node_id)),
        ("agents", "агенты", sa.select(agents.c.agent_id).where(agents.c.node_id == node_id)),
        ("grants", "выданные на него права", sa.select(grants.c.id).where(grants.c.node_id == node_id)),
    )
    for what, what_ru, query in holders:
        if conn.execute(query.limit(1)).first() is not None:
            raise Conflict(f"{node.name!r} still has {what}; move or remove them first",
                           ru=f"В «{node.name}» ещё есть {what_ru}: сначала перенесите или удалите их.")
    conn.execute(sa.delete(nodes).where(nodes.c.id == node_id))
    audit.record(
        conn,
        actor,
        tenant_id=tenant_id,
        action="node.delete",
        target_type="node",
        target_id=node_id,
        at=at,
        details={"name": node.name, "kind": node.kind, "parent_id": node.parent_id},
    )


def _store_level(conn: sa.Connection, tenant_id: int) -> str:
    for level in levels(conn, tenant_id):
        if level.holds_registers:
            return level.name
    raise InvalidInput("this company has no store level")


def attach_register(
    conn: sa.Connection, actor: Actor, tenant_id: int, register_id: str, store_id: int, *, at: datetime
) -> None:
    """Place a register of this tenant in a store (or move it to another store)."""
    current = conn.execute(
        sa.select(registers.c.node_id).where(
            registers.c.register_id == register_id, registers.c.tenant_id == tenant_id
        )
    ).first()
    if current is None:
        raise NotFound(f"register {register_id!r} not found")
    authorize(conn, actor, tenant_id, Permission.MANAGE_REGISTERS, register_id)
    authorize(conn, actor, tenant_id, Permission.MANAGE_REGISTERS, store_id)
    store = get_node(conn, tenant_id, store_id)
    if store.kind != _store_level(conn, tenant_id):
        raise InvalidInput(
            f"{store.name!r} is a {store.kind}; registers go into a {_store_level(conn, tenant_id)}"
        )
    place_register(conn, actor, tenant_id, register_id, store_id, at=at, from_node=current.node_id)


def place_register(
    conn: sa.Connection,
    actor: Actor,
    tenant_id: int,
    register_id: str,
    store_id: int,
    *,
    at: datetime,
    **context: object,
) -> None:
    """Write an already checked placement and its audit entry (``context`` goes into the details)."""
    conn.execute(sa.update(registers).where(registers.c.register_id == register_id).values(node_id=store_id))
    register_summary.refresh_registers(conn, [register_id])
    audit.record(
        conn,
        actor,
        tenant_id=tenant_id,
        action="register.attach",
        target_type="register",
        target_id=register_id,
        at=at,
        details={"to_node": store_id, **context},
    )


def create_tag(conn: sa.Connection, actor: Actor, tenant_id: int, name: str, *, at: datetime) -> int:
    authorize(conn, actor, tenant_id, Permission.MANAGE_TREE, None)
    name = clean_name(name, "tag")
    if conn.execute(sa.select(tags.c.id).where(tags.c.tenant_id == tenant_id, tags.c.name == name)).first():
        raise Conflict(f"tag {name!r} already exists")
    tag_id = storage_tree.create_tag(conn, tenant_id, name)
    audit.record(
        conn,
        actor,
        tenant_id=tenant_id,
        action="tag.create",
        target_type="tag",
        target_id=tag_id,
        at=at,
        details={"name": name},
    )
    return tag_id


def set_register_tag(
    conn: sa.Connection,
    actor: Actor,
    tenant_id: int,
    register_id: str,
    tag_id: int,
    *,
    on: bool,
    at: datetime,
) -> None:
    """Attach (``on``) or remove a tag of this tenant on one of its registers."""
    authorize(conn, actor, tenant_id, Permission.MANAGE_REGISTERS, register_id)
    if (
        conn.execute(sa.select(tags.c.id).where(tags.c.id == tag_id, tags.c.tenant_id == tenant_id)).first()
        is None
    ):
        raise NotFound(f"tag {tag_id} not found")
    tagged = sa.and_(register_tags.c.register_id == register_id, register_tags.c.tag_id == tag_id)
    present = conn.execute(sa.select(register_tags.c.tag_id).where(tagged)).first() is not None
    if on and not present:
        storage_tree.tag_register(conn, register_id, tag_id)
    elif not on and present:
        conn.execute(sa.delete(register_tags).where(tagged))
    else:
        return
    audit.record(
        conn,
        actor,
        tenant_id=tenant_id,
        action="register.tag" if on else "register.untag",
        target_type="register",
        target_id=register_id,
        at=at,
        details={"tag_id": tag_id},
    )
