"""User groups of the JSON API: groups and their members, grants (a role on a node's subtree),
invitations into a group, and why a user sees a register. Checked by ``rights.authorize`` inside
the accounts package; every write leaves an audit entry."""

from __future__ import annotations

import sqlalchemy as sa
from aiohttp import web
from pydantic import BaseModel, Field

from collector.accounts import groups
from collector.accounts.errors import NotFound
from collector.accounts.rights import Permission, Role, authorize, explain
from collector.accounts.schema import users
from collector.web.api.models import Created, Done, Email, InputModel
from collector.web.routing import (
    API,
    Operation,
    int_path_param,
    now,
    parse_body,
    parse_query,
)
from collector.web.shared.account_actions import GrantOut, GroupList, grant_out, group_list
from collector.web.shared.accounts import ACCOUNTS_WEB_KEY, Caller, answer_as_caller, require_visible
from collector.web.shared.paging import Page, repaged


class GroupBody(InputModel):
    name: str = Field(min_length=1, max_length=100)


class MemberBody(InputModel):
    user_id: int = Field(ge=1)


class GrantBody(InputModel):
    group_id: int = Field(ge=1)
    role: Role
    node_id: int = Field(ge=1)


class InvitationBody(InputModel):
    group_id: int = Field(ge=1)
    email: str = Email


class WhyQuery(InputModel):
    user: int | None = Field(None, ge=1, description="whose view to explain (default: yours)")


class WhyOut(BaseModel):
    register_id: str
    user_id: int
    visible: bool
    message: str
    grants: list[GrantOut]


async def list_groups(request: web.Request) -> web.Response:
    page = parse_query(request, Page)
    return await answer_as_caller(request, lambda conn, who: repaged(request, page, group_list(conn, who)), write=False)


async def create_group(request: web.Request) -> web.Response:
    body, at = await parse_body(request, GroupBody), now(request)

    def work(conn: sa.Connection, who: Caller) -> Created:
        return Created(id=groups.create_group(conn, who.actor, who.tenant_id, body.name, at=at))

    return await answer_as_caller(request, work, status=201)


async def add_member(request: web.Request) -> web.Response:
    group_id = int_path_param(request, "group_id")
    body, at = await parse_body(request, MemberBody), now(request)

    def work(conn: sa.Connection, who: Caller) -> Done:
        groups.add_member(conn, who.actor, who.tenant_id, group_id, body.user_id, at=at)
        return Done(ok=True, message=f"user {body.user_id} is in group {group_id}")

    return await answer_as_caller(request, work)


async def remove_member(request: web.Request) -> web.Response:
    group_id, member, at = int_path_param(request, "group_id"), int_path_param(request, "user_id"), now(request)

    def work(conn: sa.Connection, who: Caller) -> Done:
        groups.remove_member(conn, who.actor, who.tenant_id, group_id, member, at=at)
        return Done(ok=True, message=f"user {member} is not in group {group_id}")

    return await answer_as_caller(request, work)


async def create_grant(request: web.Request) -> web.Response:
    body, at = await parse_body(request, GrantBody), now(request)

    def work(conn: sa.Connection, who: Caller) -> Created:
        require_visible(conn, who, body.node_id)
        return Created(id=groups.grant_role(conn, who.actor, who.tenant_id, body.group_id, body.role, body.node_id, at=at))

    return await answer_as_caller(request, work, status=201)


async def delete_grant(request: web.Request) -> web.Response:
    grant_id, at = int_path_param(request, "grant_id"), now(request)

    def work(conn: sa.Connection, who: Caller) -> Done:
        groups.revoke_grant(conn, who.actor, who.tenant_id, grant_id, at=at)
        return Done(ok=True, message=f"grant {grant_id} revoked")

    return await answer_as_caller(request, work)


async def why_visible(request: web.Request) -> web.Response:
    register_id = request.match_info["register_id"]
    query = parse_query(request, WhyQuery)

    def work(conn: sa.Connection, who: Caller) -> WhyOut:
        require_visible(conn, who, register_id)
        subject = query.user or who.user_id
        if subject != who.user_id:  # someone else's view: a colleague's, for those who manage grants
            other = conn.execute(sa.select(users.c.tenant_id).where(users.c.id == subject)).scalar_one_or_none()
            if other != who.tenant_id:
                raise NotFound(f"user {subject} not found")
            authorize(conn, who.actor, who.tenant_id, Permission.MANAGE_GRANTS, register_id)
        found = explain(conn, subject, register_id)
        return WhyOut(register_id=register_id, user_id=subject, visible=found.visible, message=found.message,
                      grants=[grant_out(g) for g in found.grants])

    return await answer_as_caller(request, work, write=False)


_GROUP_ID = {"group_id": int}


async def invite(request: web.Request) -> web.Response:
    body, at = await parse_body(request, InvitationBody), now(request)
    service = request.app[ACCOUNTS_WEB_KEY].service

    def work(conn: sa.Connection, who: Caller) -> Created:
        return Created(id=service.invite(conn, who.actor, who.tenant_id, body.group_id, body.email, at=at))

    return await answer_as_caller(request, work, status=201)


_W = (403, 404, 409, 415, 422)


OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", f"{API}/groups", list_groups, "listGroups", "User groups with members and grants", "company",
              GroupList, query=Page, errors=(400, 403)),
    Operation("POST", f"{API}/groups", create_group, "createGroup", "A new user group", "company", Created,
              body=GroupBody, status=201, errors=_W),
    Operation("POST", f"{API}/groups/{{group_id}}/members", add_member, "addGroupMember",
              "Add a user of the company to a group", "company", Done, body=MemberBody, path_params=_GROUP_ID,
              errors=_W),
    Operation("DELETE", f"{API}/groups/{{group_id}}/members/{{user_id}}", remove_member, "removeGroupMember",
              "Remove a user from a group", "company", Done, path_params={"group_id": int, "user_id": int},
              errors=(403, 404)),
    Operation("POST", f"{API}/grants", create_grant, "createGrant", "Give a group a role on a node's subtree",
              "company", Created, body=GrantBody, status=201, errors=_W),
    Operation("DELETE", f"{API}/grants/{{grant_id}}", delete_grant, "deleteGrant", "Revoke a grant", "company",
              Done, path_params={"grant_id": int}, errors=(403, 404)),
    Operation("GET", f"{API}/registers/{{register_id}}/why", why_visible, "explainRegister",
              "Which grants make a register visible to a user", "company", WhyOut, query=WhyQuery,
              path_params={"register_id": str}, errors=(403, 404)),
    Operation("POST", f"{API}/invitations", invite, "createInvitation", "Invite an address into a group",
              "accounts", Created, body=InvitationBody, status=201, errors=(403, 404, 409, 415, 422)),
)
