"""Roles, permissions and what a user may see or do, derived from grants.

A grant is (user group, role, node): the role's permissions on that node's whole subtree.
Default deny, no deny rules, grants add up across all of a user's groups (ThingsBoard's and
Zabbix's model). Every query joins through the user's own tenant, so no grant can reach into
another tenant even if a row were wrong. Acknowledging is an operator permission of its own,
not a side effect of "write" (ThingsBoard #6370), and notifications use the same check
(``can_see``) as the lists, so nobody is told about a register they cannot open.

Targets: an ``int`` is a node id, a ``str`` a register id, ``None`` the company as a whole
(what only a grant on the tree root gives; also a register not yet placed in the tree).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import sqlalchemy as sa

from collector.accounts.audit import Actor
from collector.accounts.errors import NotFound, PermissionDenied
from collector.accounts.schema import grants, group_members, user_groups, users
from collector.storage.schema import nodes, registers
from collector.storage.scope import Scope

if TYPE_CHECKING:
    from collector.notify.notice import AlertNotice, Receiver


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    OPERATOR = "operator"
    ACCOUNTANT = "accountant"
    VIEWER = "viewer"


class Permission(StrEnum):
    VIEW = "view"
    ACKNOWLEDGE = "acknowledge"
    COMMENT = "comment"
    SILENCE = "silence"
    MANAGE_REGISTERS = "manage_registers"  # attach/move registers, technical actions
    REGISTER_ACTIONS = "register_actions"  # remote actions on a register (Z-report, clock…) through its agent
    ENROLL = "enroll"  # enrollment tokens for agents
    MANAGE_USERS = "manage_users"  # invite, lock, remove users
    MANAGE_GROUPS = "manage_groups"
    MANAGE_GRANTS = "manage_grants"
    MANAGE_TREE = "manage_tree"
    EDIT_CONTRACTS = "edit_contracts"
    KEP_ORDERS = "kep_orders"
    MANAGE_COMPANY = "manage_company"  # company details; the only thing an admin cannot do


_TECHNICAL = frozenset(
    {
        Permission.VIEW,
        Permission.ACKNOWLEDGE,
        Permission.COMMENT,
        Permission.SILENCE,
        Permission.MANAGE_REGISTERS,
        Permission.REGISTER_ACTIONS,
        Permission.ENROLL,
    }
)
_ADMINISTRATIVE = frozenset(
    {
        Permission.MANAGE_USERS,
        Permission.MANAGE_GROUPS,
        Permission.MANAGE_GRANTS,
        Permission.MANAGE_TREE,
        Permission.EDIT_CONTRACTS,
        Permission.KEP_ORDERS,
    }
)

# The explicit permission table. Anything not listed is denied.
ROLE_PERMISSIONS: Mapping[Role, frozenset[Permission]] = {
    Role.OWNER: frozenset(Permission),
    Role.ADMIN: _TECHNICAL | _ADMINISTRATIVE,
    Role.OPERATOR: _TECHNICAL,
    Role.ACCOUNTANT: frozenset({Permission.VIEW, Permission.EDIT_CONTRACTS, Permission.KEP_ORDERS}),
    Role.VIEWER: frozenset({Permission.VIEW}),
}

Target = int | str | None


def parse_role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise ValueError(f"unknown role {value!r}; expected one of {', '.join(Role)}") from None


@dataclass(frozen=True, slots=True)
class GrantInfo:
    grant_id: int
    group_id: int
    group_name: str
    role: Role
    node_id: int
    node_name: str
    node_path: str

    def covers(self, path: str) -> bool:
        return path.startswith(self.node_path)


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a user sees a register: the grants whose subtree contains it (empty = not visible)."""

    register_id: str
    visible: bool
    grants: tuple[GrantInfo, ...]
    message: str


@dataclass(frozen=True, slots=True)
class _UserRights:
    tenant_id: int
    grants: tuple[GrantInfo, ...]
    root_paths: tuple[str, ...]

    def permissions_on_path(self, path: str) -> frozenset[Permission]:
        granted: set[Permission] = set()
        for grant in self.grants:
            if grant.covers(path):
                granted |= ROLE_PERMISSIONS[grant.role]
        return frozenset(granted)

    def tenant_wide(self) -> frozenset[Permission]:
        """What holds on the whole tree: granted on every root (unplaced registers, company matters)."""
        if not self.root_paths:
            return frozenset()
        return frozenset.intersection(*(self.permissions_on_path(p) for p in self.root_paths))


def _user_rights(conn: sa.Connection, user_id: int) -> _UserRights:
    user = conn.execute(sa.select(users.c.tenant_id, users.c.disabled).where(users.c.id == user_id)).first()
    if user is None:
        raise NotFound(f"user {user_id} does not exist")
    tenant_id = int(user.tenant_id)
    roots = tuple(
        conn.execute(
            sa.select(nodes.c.path).where(nodes.c.tenant_id == tenant_id, nodes.c.parent_id.is_(None))
        ).scalars()
    )
    if user.disabled:
        return _UserRights(tenant_id, (), roots)
    rows = conn.execute(
        sa.select(
            grants.c.id,
            grants.c.group_id,
            user_groups.c.name.label("group_name"),
            grants.c.role,
            grants.c.node_id,
            nodes.c.name.label("node_name"),
            nodes.c.path,
        )
        .join(group_members, group_members.c.group_id == grants.c.group_id)
        .join(user_groups, user_groups.c.id == grants.c.group_id)
        .join(nodes, nodes.c.id == grants.c.node_id)
        .where(
            group_members.c.user_id == user_id,
            user_groups.c.tenant_id == tenant_id,
            nodes.c.tenant_id == tenant_id,
        )
        .order_by(grants.c.id)
    )
    found = []
    for r in rows:
        try:
            role = Role(r.role)
        except ValueError:
            continue  # a role this version does not know grants nothing (default deny)
        found.append(GrantInfo(r.id, r.group_id, r.group_name, role, r.node_id, r.node_name, r.path))
    return _UserRights(tenant_id, tuple(found), roots)


def user_grants(conn: sa.Connection, user_id: int) -> tuple[GrantInfo, ...]:
    return _user_rights(conn, user_id).grants


def scope_for(conn: sa.Connection, user_id: int, permission: Permission = Permission.VIEW) -> Scope:
    """The storage ``Scope`` of everything the user holds ``permission`` on (default: may view).

    Default deny: without a grant the scope is an empty node list, which sees nothing. With
    ``Permission.ACKNOWLEDGE`` it is the web ``Principal.action_scope`` (ack/comment/silence go
    together in every role).
    """
    rights = _user_rights(conn, user_id)
    if permission in rights.tenant_wide():
        return Scope.tenant(rights.tenant_id)
    holding = [g.node_id for g in rights.grants if permission in ROLE_PERMISSIONS[g.role]]
    return Scope.subtrees(rights.tenant_id, holding)


def _target_path(conn: sa.Connection, tenant_id: int, target: Target) -> str | None:
    """The tree path of a target in this tenant; None for "the whole company"/an unplaced register.

    Raises ``NotFound`` for anything outside the tenant (never tells it exists elsewhere).
    """
    if target is None:
        return None
    if isinstance(target, str):
        row = conn.execute(
            sa.select(registers.c.node_id, nodes.c.path)
            .select_from(registers.outerjoin(nodes, nodes.c.id == registers.c.node_id))
            .where(registers.c.register_id == target, registers.c.tenant_id == tenant_id)
        ).first()
        if row is None:
            raise NotFound(f"register {target!r} not found")
        return None if row.node_id is None else str(row.path)
    path = conn.execute(
        sa.select(nodes.c.path).where(nodes.c.id == target, nodes.c.tenant_id == tenant_id)
    ).scalar_one_or_none()
    if path is None:
        raise NotFound(f"node {target} not found")
    return str(path)


def permissions_at(conn: sa.Connection, user_id: int, target: Target) -> frozenset[Permission]:
    """Every permission the user holds on the target (empty when it is outside their tenant)."""
    rights = _user_rights(conn, user_id)
    try:
        path = _target_path(conn, rights.tenant_id, target)
    except NotFound:
        return frozenset()
    return rights.tenant_wide() if path is None else rights.permissions_on_path(path)


def can(conn: sa.Connection, user_id: int, permission: Permission, target: Target) -> bool:
    return permission in permissions_at(conn, user_id, target)


def can_see(conn: sa.Connection, user_id: int, register_id: str) -> bool:
    return can(conn, user_id, Permission.VIEW, register_id)


def user_tenant(conn: sa.Connection, user_id: int) -> int:
    tenant = conn.execute(sa.select(users.c.tenant_id).where(users.c.id == user_id)).scalar_one_or_none()
    if tenant is None:
        raise NotFound(f"user {user_id} does not exist")
    return int(tenant)


def authorize(
    conn: sa.Connection, actor: Actor, tenant_id: int, permission: Permission, target: Target
) -> None:
    """Raise ``PermissionDenied`` unless the actor may do this; the operator CLI always may.

    A target outside the actor's tenant is refused the same way as a missing grant.
    """
    if actor.user_id is None:
        return
    if user_tenant(conn, actor.user_id) != tenant_id:
        raise PermissionDenied(f"{actor.label} has no rights in this company")
    if not can(conn, actor.user_id, permission, target):
        where = (
            "the company"
            if target is None
            else f"{'register' if isinstance(target, str) else 'node'} {target}"
        )
        raise PermissionDenied(f"{actor.label} needs the {permission.value!r} permission on {where}")


def explain(conn: sa.Connection, user_id: int, register_id: str) -> Explanation:
    rights = _user_rights(conn, user_id)
    try:
        path = _target_path(conn, rights.tenant_id, register_id)
    except NotFound:
        return Explanation(register_id, False, (), "no grant of yours covers this register")
    viewing = [g for g in rights.grants if Permission.VIEW in ROLE_PERMISSIONS[g.role]]
    if path is None:  # not placed in the tree yet: only a grant on the root reaches it
        visible = Permission.VIEW in rights.tenant_wide()
        covering = tuple(g for g in viewing if g.node_path in rights.root_paths) if visible else ()
    else:
        covering = tuple(g for g in viewing if g.covers(path))
        visible = bool(covering)
    if not visible:
        return Explanation(register_id, False, (), "no grant of yours covers this register")
    reasons = "; ".join(f"group {g.group_name!r} is {g.role.value} on {g.node_name!r}" for g in covering)
    return Explanation(register_id, True, covering, f"visible because {reasons}")


# Who hears about a company-level alert (the КЭП running out): those who handle КЭП for the
# whole company — the owner, and admins or accountants granted the company's root.
COMPANY_NOTICE_PERMISSION = Permission.KEP_ORDERS


def notification_filter(
    conn_factory: Callable[[], AbstractContextManager[sa.Connection]],
) -> Callable[[Receiver, AlertNotice], bool]:
    """The ``can_see`` hook of ``collector.notify.grouping.NotificationGrouper``.

    ``conn_factory`` is typically ``engine.connect``. ``receiver.principal_id`` is the user id; a receiver without one is denied (default deny),
    so an integration must be tied to a user whose grants decide what it hears about.
    """

    def can_see_notice(receiver: Receiver, notice: AlertNotice) -> bool:
        if receiver.principal_id is None or not receiver.principal_id.isdigit():
            return False
        user_id = int(receiver.principal_id)
        with conn_factory() as conn:
            try:
                if notice.about_company:
                    return str(user_tenant(conn, user_id)) == notice.tenant_id and can(
                        conn, user_id, COMPANY_NOTICE_PERMISSION, None
                    )
                return can_see(conn, user_id, notice.register_id)
            except NotFound:
                return False

    return can_see_notice
