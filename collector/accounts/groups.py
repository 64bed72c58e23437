"""User groups, membership and grants (group, role, node), with audit entries.

No escalation: whoever confers a role on a node (by granting it, or by adding someone to a
group that holds it) must hold every permission of that role there themselves, so an admin
cannot make an owner and a regional manager cannot hand out rights outside their region.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from collector.accounts import audit
from collector.accounts.audit import Actor
from collector.accounts.errors import Conflict, NotFound, PermissionDenied
from collector.accounts.names import clean_name
from collector.accounts.rights import ROLE_PERMISSIONS, Permission, Role, authorize, permissions_at
from collector.accounts.schema import grants, group_members, user_groups, users
from collector.accounts.tree import get_node

# The group each role gets on the company root when created by sign-up or the operator CLI.
ROLE_GROUP_NAMES: dict[Role, str] = {
    Role.OWNER: "Владельцы",
    Role.ADMIN: "Администраторы",
    Role.OPERATOR: "Операторы",
    Role.ACCOUNTANT: "Бухгалтеры",
    Role.VIEWER: "Наблюдатели",
}


@dataclass(frozen=True, slots=True)
class GroupGrant:
    grant_id: int
    role: Role
    node_id: int


def get_group(conn: sa.Connection, tenant_id: int, group_id: int) -> str:
    name = conn.execute(
        sa.select(user_groups.c.name).where(
            user_groups.c.id == group_id, user_groups.c.tenant_id == tenant_id
        )
    ).scalar_one_or_none()
    if name is None:
        raise NotFound(f"group {group_id} not found")
    return str(name)


def find_group(conn: sa.Connection, tenant_id: int, name: str) -> int | None:
    found = conn.execute(
        sa.select(user_groups.c.id).where(user_groups.c.tenant_id == tenant_id, user_groups.c.name == name)
    ).scalar_one_or_none()
    return None if found is None else int(found)


def group_grants(conn: sa.Connection, group_id: int) -> list[GroupGrant]:
    rows = conn.execute(
        sa.select(grants.c.id, grants.c.role, grants.c.node_id)
        .where(grants.c.group_id == group_id)
        .order_by(grants.c.id)
    )
    return [GroupGrant(r.id, Role(r.role), r.node_id) for r in rows]


def _check_can_confer(
    conn: sa.Connection, actor: Actor, tenant_id: int, role: Role, node_id: int, needed: Permission
) -> None:
    authorize(conn, actor, tenant_id, needed, node_id)
    if actor.user_id is None:
        return
    missing = ROLE_PERMISSIONS[role] - permissions_at(conn, actor.user_id, node_id)
    if missing:
        raise PermissionDenied(
            f"{actor.label} cannot confer the {role.value} role there: it includes "
            f"{', '.join(sorted(p.value for p in missing))}, which {actor.label} does not hold"
        )


def create_group(conn: sa.Connection, actor: Actor, tenant_id: int, name: str, *, at: datetime) -> int:
    authorize(conn, actor, tenant_id, Permission.MANAGE_GROUPS, None)
    name = clean_name(name, "group name")
    if find_group(conn, tenant_id, name) is not None:
        raise Conflict(f"group {name!r} already exists", ru=f"Группа «{name}» уже есть: выберите другое название.")
    group_id = int(
        conn.execute(
            sa.insert(user_groups).values(tenant_id=tenant_id, name=name).returning(user_groups.c.id)
        ).scalar_one()
    )
    audit.record(
        conn,
        actor,
        tenant_id=tenant_id,
        action="group.create",
        target_type="group",
        target_id=group_id,
        at=at,
        details={"name": name},
    )
    return group_id


def check_may_add_to_group(conn: sa.Connection, actor: Actor, tenant_id: int, group_id: int) -> None:
    """Adding someone to a group confers its grants: the actor must be able to confer each one."""
    get_group(conn, tenant_id, group_id)
    conferred = group_grants(conn, group_id)
    if not conferred:  # confers nothing yet; still a company-level change
        authorize(conn, actor, tenant_id, Permission.MANAGE_USERS, None)
    for grant in conferred:
        _check_can_confer(conn, actor, tenant_id, grant.role, grant.node_id, Permission.MANAGE_USERS)


def add_member(
    conn: sa.Connection, actor: Actor, tenant_id: int, group_id: int, user_id: int, *, at: datetime
) -> None:
    check_may_add_to_group(conn, actor, tenant_id, group_id)
    member_tenant = conn.execute(
        sa.select(users.c.tenant_id).where(users.c.id == user_id)
    ).scalar_one_or_none()
    if member_tenant != tenant_id:
        raise NotFound(f"user {user_id} not found")
    present = conn.execute(
        sa.select(group_members.c.user_id).where(
            group_members.c.group_id == group_id, group_members.c.user_id == user_id
        )
    ).first()
    if present is not None:
        return
    conn.execute(sa.insert(group_members).values(group_id=group_id, user_id=user_id))
    audit.record(
        conn,
        actor,
        tenant_id=tenant_id,
        action="group.add_member",
        target_type="group",
        target_id=group_id,
        at=at,
        details={"user_id": user_id},
    )


def remove_member(
    conn: sa.Connection, actor: Actor, tenant_id: int, group_id: int, user_id: int, *, at: datetime
) -> None:
    check_may_add_to_group(conn, actor, tenant_id, group_id)  # removing takes the same rights as adding
    removed = conn.execute(
        sa.delete(group_members).where(
            group_members.c.group_id == group_id, group_members.c.user_id == user_id
        )
    ).rowcount
    if removed:
        audit.record(
            conn,
            actor,
            tenant_id=tenant_id,
            action="group.remove_member",
            target_type="group",
            target_id=group_id,
            at=at,
            details={"user_id": user_id},
        )


def grant_role(
    conn: sa.Connection,
    actor: Actor,
    tenant_id: int,
    group_id: int,
    role: Role,
    node_id: int,
    *,
    at: datetime,
) -> int:
    get_group(conn, tenant_id, group_id)
    get_node(conn, tenant_id, node_id)  # NotFound for another tenant's node: no cross-tenant grant
    _check_can_confer(conn, actor, tenant_id, role, node_id, Permission.MANAGE_GRANTS)
    existing = conn.execute(
        sa.select(grants.c.id).where(
            grants.c.group_id == group_id, grants.c.role == role.value, grants.c.node_id == node_id
        )
    ).scalar_one_or_none()
    if existing is not None:
        return int(existing)
    grant_id = int(
        conn.execute(
            sa.insert(grants)
            .values(group_id=group_id, role=role.value, node_id=node_id)
            .returning(grants.c.id)
        ).scalar_one()
    )
    audit.record(
        conn,
        actor,
        tenant_id=tenant_id,
        action="grant.create",
        target_type="grant",
        target_id=grant_id,
        at=at,
        details={"group_id": group_id, "role": role.value, "node_id": node_id},
    )
    return grant_id


def revoke_grant(conn: sa.Connection, actor: Actor, tenant_id: int, grant_id: int, *, at: datetime) -> None:
    row = conn.execute(
        sa.select(grants.c.group_id, grants.c.role, grants.c.node_id)
        .join(user_groups, user_groups.c.id == grants.c.group_id)
        .where(grants.c.id == grant_id, user_groups.c.tenant_id == tenant_id)
    ).first()
    if row is None:
        raise NotFound(f"grant {grant_id} not found")
    authorize(conn, actor, tenant_id, Permission.MANAGE_GRANTS, row.node_id)
    conn.execute(sa.delete(grants).where(grants.c.id == grant_id))
    audit.record(
        conn,
        actor,
        tenant_id=tenant_id,
        action="grant.revoke",
        target_type="grant",
        target_id=grant_id,
        at=at,
        details={"group_id": row.group_id, "role": row.role, "node_id": row.node_id},
    )


def ensure_role_group(
    conn: sa.Connection, actor: Actor, tenant_id: int, role: Role, node_id: int, *, at: datetime
) -> int:
    """The standard group of ``role`` (created if missing) holding that role on ``node_id``."""
    name = ROLE_GROUP_NAMES[role]
    group_id = find_group(conn, tenant_id, name)
    if group_id is None:
        group_id = create_group(conn, actor, tenant_id, name, at=at)
    grant_role(conn, actor, tenant_id, group_id, role, node_id, at=at)
    return group_id
