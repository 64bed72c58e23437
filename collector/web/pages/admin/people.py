"""Users, groups, grants and invitations."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from aiohttp import web

from collector.accounts import groups, tree
from collector.accounts.errors import InvalidInput, NotFound
from collector.accounts.rights import (
    Permission,
    Role,
    authorize,
)
from collector.accounts.schema import audit_log
from collector.web.pages.render import page
from collector.web.pages.support import (
    ROLE_TITLES,
    SECTION_PATHS,
    Handler,
    Invalid,
    as_caller,
    change,
    checked_form,
    int_field,
    nodes_with,
    section_render,
    tenant_users,
)
from collector.web.routing import int_path_param, now
from collector.web.shared.account_actions import group_list
from collector.web.shared.accounts import (
    ACCOUNTS_WEB_KEY,
    Caller,
    require_visible,
)

# --- users, groups, grants, invitations ----------------------------------------------------------


@page
async def users_admin(request: web.Request) -> web.StreamResponse:
    def work(conn: sa.Connection, who: Caller) -> dict[str, Any]:
        listed = group_list(conn, who)  # checks MANAGE_GROUPS on the company
        return {"groups": listed.items, "people": tenant_users(conn, who),
                "grant_nodes": nodes_with(conn, who, Permission.MANAGE_GRANTS),
                "paths": tree.node_paths(conn, who.tenant_id), "titles": tree.level_titles(conn, who.tenant_id)}

    context = await as_caller(request, work)
    return section_render(request, "admin_users.html", {**context, "roles": ROLE_TITLES})


@page
async def create_group(request: web.Request) -> web.StreamResponse:
    fields, at = await checked_form(request), now(request)

    def work(conn: sa.Connection, who: Caller) -> None:
        authorize(conn, who.actor, who.tenant_id, Permission.MANAGE_GROUPS, None)
        if not fields.get("name", "").strip():
            raise Invalid("group", "Укажите название группы.")
        groups.create_group(conn, who.actor, who.tenant_id, fields["name"], at=at)

    return await change(request, users_admin, "group", work, "group-created")


@page
async def add_member(request: web.Request) -> web.StreamResponse:
    group_id = int_path_param(request, "group_id")
    fields, at = await checked_form(request), now(request)
    form = f"group-{group_id}"

    def work(conn: sa.Connection, who: Caller) -> None:
        groups.check_may_add_to_group(conn, who.actor, who.tenant_id, group_id)
        member = int_field(fields, "user_id", form, "пользователя")
        groups.add_member(conn, who.actor, who.tenant_id, group_id, member, at=at)

    return await change(request, users_admin, form, work, "member-added")


@page
async def remove_member(request: web.Request) -> web.StreamResponse:
    group_id, member = int_path_param(request, "group_id"), int_path_param(request, "user_id")
    await checked_form(request)
    at = now(request)

    def work(conn: sa.Connection, who: Caller) -> None:
        groups.remove_member(conn, who.actor, who.tenant_id, group_id, member, at=at)

    return await change(request, users_admin, f"group-{group_id}", work, "member-removed")


@page
async def create_grant(request: web.Request) -> web.StreamResponse:
    fields, at = await checked_form(request), now(request)

    def work(conn: sa.Connection, who: Caller) -> None:
        node_id = int_field(fields, "node_id", "grant", "узел дерева")
        require_visible(conn, who, node_id)
        authorize(conn, who.actor, who.tenant_id, Permission.MANAGE_GRANTS, node_id)
        group_id = int_field(fields, "group_id", "grant", "группу")
        try:
            role = Role(fields.get("role", ""))
        except ValueError:
            raise Invalid("grant", "Выберите роль.") from None
        groups.grant_role(conn, who.actor, who.tenant_id, group_id, role, node_id, at=at)

    return await change(request, users_admin, "grant", work, "grant-created")


@page
async def delete_grant(request: web.Request) -> web.StreamResponse:
    grant_id = int_path_param(request, "grant_id")
    await checked_form(request)
    at = now(request)

    def work(conn: sa.Connection, who: Caller) -> None:
        try:
            groups.revoke_grant(conn, who.actor, who.tenant_id, grant_id, at=at)
        except NotFound:
            # Revoked already (another tab, the API): done, not an error. Anything else — including
            # another company's grant — stays a 404; the company's own audit log tells them apart.
            if not _revoked_before(conn, who, grant_id):
                raise

    return await change(request, users_admin, "grant", work, "grant-revoked")


def _revoked_before(conn: sa.Connection, who: Caller, grant_id: int) -> bool:
    entry = conn.execute(
        sa.select(audit_log.c.id).where(
            audit_log.c.tenant_id == who.tenant_id, audit_log.c.action == "grant.revoke",
            audit_log.c.target_type == "grant", audit_log.c.target_id == str(grant_id),
        ).limit(1)
    ).first()
    return entry is not None


@page
async def invite(request: web.Request) -> web.StreamResponse:
    fields, at = await checked_form(request), now(request)
    service = request.app[ACCOUNTS_WEB_KEY].service

    def work(conn: sa.Connection, who: Caller) -> None:
        authorize(conn, who.actor, who.tenant_id, Permission.MANAGE_USERS, None)
        group_id = int_field(fields, "group_id", "invite", "группу")
        try:
            service.invite(conn, who.actor, who.tenant_id, group_id, fields.get("email", ""), at=at)
        except InvalidInput:
            raise Invalid("invite", "Введите адрес e-mail, например ivanov@example.ru.") from None

    return await change(request, users_admin, "invite", work, "invited")


SECTION_PATHS[users_admin] = "/admin/users"

ROUTES: tuple[tuple[str, str, Handler, str], ...] = (
    ("GET", "/admin/users", users_admin, "page-admin-users"),
    ("POST", "/admin/groups", create_group, "admin-group-create"),
    ("POST", "/admin/groups/{group_id}/members", add_member, "admin-member-add"),
    ("POST", "/admin/groups/{group_id}/members/{user_id}/delete", remove_member, "admin-member-remove"),
    ("POST", "/admin/grants", create_grant, "admin-grant-create"),
    ("POST", "/admin/grants/{grant_id}/delete", delete_grant, "admin-grant-delete"),
    ("POST", "/admin/invitations", invite, "admin-invite"),
)
