"""Agents of the caller's stores, one-time enrollment tokens (shown once) and revocation; agents
waiting in «Новые кассы» with a store to move each to, and this company's agents still reporting
after being refused (revoked)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from collector.accounts import tree
from collector.accounts.new_registers import place_agent, waiting_agents
from collector.accounts.rights import (
    Permission,
)
from collector.enrollment.errors import EnrollmentError
from collector.enrollment.http import ENROLLMENT_SERVICE_KEY
from collector.storage.refused_agents import refused_agents
from collector.storage.schema import agents
from collector.web.pages.render import PageError, page
from collector.web.pages.support import (
    SECTION_PATHS,
    Handler,
    Invalid,
    as_caller,
    change,
    checked_form,
    enroll_command,
    int_field,
    need,
    nodes_with,
    refusal_text,
    section_render,
    section_with_error,
)
from collector.web.problems import Problem
from collector.web.routing import ENGINE_KEY, now
from collector.web.shared.account_actions import audit_enrollment, enrollment_actor
from collector.web.shared.accounts import (
    Caller,
)

# --- agents and enrollment tokens ----------------------------------------------------------------

NEW_TOKEN_KEY = web.RequestKey("admin_new_token", dict)


@page
async def agents_admin(request: web.Request) -> web.StreamResponse:
    def work(conn: sa.Connection, who: Caller) -> dict[str, Any]:
        stores = nodes_with(conn, who, Permission.ENROLL)
        need(bool(stores), f"{who.actor.label} may not enroll agents anywhere")
        placed = {n.id: n.name for n in stores}
        rows = conn.execute(
            sa.select(agents).where(agents.c.tenant_id == who.tenant_id, agents.c.node_id.in_(list(placed)))
            .order_by(agents.c.agent_id)
        ).all()
        store_level = next((lv.name for lv in tree.levels(conn, who.tenant_id) if lv.holds_registers), None)
        movable = [n for n in nodes_with(conn, who, Permission.MANAGE_REGISTERS) if n.kind == store_level]
        return {"agents": rows, "places": placed, "stores": [n for n in stores if n.kind == store_level],
                "waiting": [a for a in waiting_agents(conn, who.tenant_id) if a.node_id in placed],
                "move_to": movable, "refused": refused_agents(conn, tenant_id=who.tenant_id, limit=20),
                "paths": tree.node_paths(conn, who.tenant_id)}

    context = await as_caller(request, work)
    enabled = ENROLLMENT_SERVICE_KEY in request.app
    return section_render(request, "admin_agents.html",
                          {**context, "enabled": enabled, "new_token": request.get(NEW_TOKEN_KEY)})


def _enrollment_on(request: web.Request) -> None:
    if ENROLLMENT_SERVICE_KEY not in request.app:
        raise PageError(503, "Подключение агентов не настроено на этом коллекторе.")


async def _enrollment_checked(request: web.Request, target: int | str) -> Any:
    try:
        return await enrollment_actor(request, target)  # the API's own ENROLL check
    except Problem as problem:
        raise PageError(problem.body.status, refusal_text(problem)) from None


@page
async def create_enrollment_token(request: web.Request) -> web.StreamResponse:
    fields = await checked_form(request)
    _enrollment_on(request)
    try:
        node_id = int_field(fields, "node_id", "token", "магазин")
        hours_text = fields.get("ttl_hours", "").strip() or "24"
        if not hours_text.isdigit() or not 1 <= int(hours_text) <= 24 * 7:
            raise Invalid("token", "Срок действия — от 1 до 168 часов.")
    except Invalid as invalid:
        return await section_with_error(request, agents_admin, invalid.form, invalid.message)
    actor, _ = await _enrollment_checked(request, node_id)
    service = request.app[ENROLLMENT_SERVICE_KEY]
    try:
        issued = await asyncio.to_thread(service.create_token, node_id, created_by=actor.label,
                                         ttl=timedelta(hours=int(hours_text)))
    except (EnrollmentError, ValueError) as exc:
        return await section_with_error(request, agents_admin, "token", f"Токен не создан ({exc}).")
    await asyncio.to_thread(audit_enrollment, request.app[ENGINE_KEY], actor, issued.tenant_id,
                            "enrollment.token_create", node_id,
                            {"token_id": issued.token_id, "expires_at": issued.expires_at.isoformat()}, now(request))
    # Shown once, on this answer only (render sets Cache-Control: no-store); never in a URL.
    request[NEW_TOKEN_KEY] = {"token": issued.token, "expires_at": issued.expires_at, "node_id": node_id,
                              "command": enroll_command(request, issued.token)}
    return await agents_admin(request)


@page
async def revoke_agent(request: web.Request) -> web.StreamResponse:
    agent_id = request.match_info["agent_id"]
    await checked_form(request)
    _enrollment_on(request)
    actor, tenant_id = await _enrollment_checked(request, agent_id)
    try:
        await asyncio.to_thread(request.app[ENROLLMENT_SERVICE_KEY].revoke_agent, agent_id)
    except EnrollmentError as exc:
        return await section_with_error(request, agents_admin, f"agent-{agent_id}", f"Не отозван ({exc}).")
    await asyncio.to_thread(audit_enrollment, request.app[ENGINE_KEY], actor, tenant_id,
                            "enrollment.agent_revoke", agent_id, {}, now(request))
    raise web.HTTPSeeOther("/admin/agents?done=agent-revoked")


@page
async def place_waiting_agent(request: web.Request) -> web.StreamResponse:
    agent_id, at = request.match_info["agent_id"], now(request)
    fields = await checked_form(request)
    form = f"place-{agent_id}"

    def work(conn: sa.Connection, who: Caller) -> None:
        place_agent(conn, who.actor, who.tenant_id, agent_id, int_field(fields, "node_id", form, "магазин"), at=at)

    return await change(request, agents_admin, form, work, "agent-placed")


SECTION_PATHS[agents_admin] = "/admin/agents"

ROUTES: tuple[tuple[str, str, Handler, str], ...] = (
    ("GET", "/admin/agents", agents_admin, "page-admin-agents"),
    ("POST", "/admin/agents/tokens", create_enrollment_token, "admin-token-create"),
    ("POST", "/admin/agents/{agent_id}/revoke", revoke_agent, "admin-agent-revoke"),
    ("POST", "/admin/agents/{agent_id}/place", place_waiting_agent, "admin-agent-place"),
)
