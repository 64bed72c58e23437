"""Account work the JSON API and the administration pages do the same way: the lists both show
(user groups with members and grants, КЭП orders), who may manage enrollment, and the audit
records of enrollment and notification receiver changes."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from aiohttp import web
from pydantic import AwareDatetime, BaseModel

from collector.accounts import audit, groups, tree
from collector.accounts.audit import Actor
from collector.accounts.rights import Permission, Role, authorize
from collector.accounts.schema import group_members, kep_orders, user_groups, users
from collector.accounts.web_auth import USER_ID_KEY
from collector.storage.engine import begin_write
from collector.storage.schema import agents
from collector.web.auth import principal_of
from collector.web.problems import Problem
from collector.web.shared.accounts import Caller, caller, require_visible, run_in_transaction
from collector.web.shared.paging import Paged


class GrantOut(BaseModel):
    grant_id: int
    group_id: int
    group_name: str
    role: Role
    node_id: int
    node_name: str


def grant_out(grant: object) -> GrantOut:
    """A ``rights.GrantInfo`` (or a mapping with its fields) as the API shows it."""
    return GrantOut.model_validate(grant, from_attributes=True)


class MemberOut(BaseModel):
    user_id: int
    email: str


class GroupOut(BaseModel):
    id: int
    name: str
    members: list[MemberOut]
    grants: list[GrantOut]


class GroupList(Paged):
    items: list[GroupOut]


class KepOrderOut(BaseModel):
    id: int
    subject: str
    full_name: str
    state: str
    created_at: AwareDatetime
    updated_at: AwareDatetime
    reject_reason: str | None


class KepOrderList(Paged):
    items: list[KepOrderOut]


def group_list(conn: sa.Connection, who: Caller) -> GroupList:
    authorize(conn, who.actor, who.tenant_id, Permission.MANAGE_GROUPS, None)
    found = conn.execute(
        sa.select(user_groups.c.id, user_groups.c.name)
        .where(user_groups.c.tenant_id == who.tenant_id)
        .order_by(user_groups.c.name)
    ).all()
    members: dict[int, list[MemberOut]] = {g.id: [] for g in found}
    for m in conn.execute(
        sa.select(group_members.c.group_id, users.c.id, users.c.email)
        .join(users, users.c.id == group_members.c.user_id)
        .where(users.c.tenant_id == who.tenant_id)
        .order_by(users.c.email)
    ):
        members.setdefault(m.group_id, []).append(MemberOut(user_id=m.id, email=m.email))
    out = []
    for g in found:
        conferred = [
            grant_out({"grant_id": gr.grant_id, "group_id": g.id, "group_name": g.name, "role": gr.role,
                       "node_id": gr.node_id, "node_name": tree.get_node(conn, who.tenant_id, gr.node_id).name})
            for gr in groups.group_grants(conn, g.id)
        ]
        out.append(GroupOut(id=g.id, name=g.name, members=members[g.id], grants=conferred))
    return GroupList(items=out)


def company_kep_orders(conn: sa.Connection, who: Caller) -> KepOrderList:
    authorize(conn, who.actor, who.tenant_id, Permission.KEP_ORDERS, None)  # applicants' personal data
    rows = conn.execute(
        sa.select(kep_orders).where(kep_orders.c.tenant_id == who.tenant_id).order_by(kep_orders.c.id.desc())
    )
    return KepOrderList(items=[KepOrderOut.model_validate(r, from_attributes=True) for r in rows])


async def enrollment_actor(request: web.Request, target: int | str) -> tuple[Actor, int | None]:
    """Who acts and in which tenant, after the ENROLL check on ``target`` (node id or agent id)."""
    user_id = request.get(USER_ID_KEY)
    if user_id is None:
        principal = principal_of(request)
        if not principal.is_admin:
            raise Problem(403, "forbidden", "Forbidden", "only an administrator may manage enrollment")
        return Actor(None, principal.user), None

    def work(conn: sa.Connection) -> tuple[Actor, int | None]:
        who = caller(conn, user_id)
        node: int | str | None = target
        if isinstance(target, str):
            row = conn.execute(
                sa.select(agents.c.node_id).where(agents.c.agent_id == target, agents.c.tenant_id == who.tenant_id)
            ).first()
            if row is None:
                raise Problem(404, "not-found", "Not found", f"agent {target!r} does not exist or is outside your scope")
            node = row.node_id
        if node is not None:
            require_visible(conn, who, node)
        authorize(conn, who.actor, who.tenant_id, Permission.ENROLL, node)
        return who.actor, who.tenant_id

    return await run_in_transaction(request, work, write=False)


def audit_enrollment(engine: sa.Engine, actor: Actor, tenant_id: int | None, action: str, target: str | int,
           details: dict[str, object], at: datetime) -> None:
    target_type = "agent" if isinstance(target, str) else "node"
    with begin_write(engine) as conn:
        audit.record(conn, actor, tenant_id=tenant_id, action=action, target_type=target_type, target_id=target,
                     at=at, details=details)


def audit_receiver_change(conn: sa.Connection, who: Caller, action: str, receiver_id: int, at: datetime, **details: str) -> None:
    audit.record(
        conn, who.actor, tenant_id=who.tenant_id, action=action, target_type="notification_receiver",
        target_id=receiver_id, at=at, details=details,
    )  # fmt: skip
