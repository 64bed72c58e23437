"""Remote actions on the pages: the register page's «Действия с кассой» panel (only the actions
the user may take and the register's state allows, the live status and the history), a
confirmation page for each action naming the register and the consequence, and the bulk page of
a tree node, «Закрыть смены, открытые дольше N ч», with its preview and per-register results.

Every form posts to the same functions as the JSON API (``api.register_actions``) and redirects
back; statuses change live through the register notices the dispatcher and ingest publish (the
page's ``data-live`` regions are re-fetched by ``app.js``, nothing inline).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from aiohttp import web

from collector.accounts.errors import NotFound
from collector.accounts.rights import Permission, permissions_at, scope_for
from collector.actions import bulk, catalogue, store
from collector.storage.schema import nodes, registers
from collector.storage.scope import Scope
from collector.web.auth import principal_of
from collector.web.pages.render import PageError, page, render
from collector.web.pages.support import Handler, as_caller, checked_form, refusal_text
from collector.web.problems import Problem
from collector.web.routing import now
from collector.web.shared.accounts import Caller, require_visible
from collector.web.shared.register_actions import announce_requested, request_as
from protocol.mqtt.actions import ActionName

HISTORY_SHOWN = 10
STATUS_TITLES = {
    "requested": "отправляется", "sent": "отправлено агенту", "accepted": "выполняется",
    "done": "выполнено", "failed": "ошибка", "refused": "отказано", "expired": "истёк срок",
}


@dataclass(frozen=True, slots=True)
class ActionsPanel:
    """What the register page shows this user about remote actions."""

    offered: list[catalogue.ActionInfo]  # empty: the user may not act (the history still shows)
    may_act: bool
    has_agent: bool
    current: store.ActionRow | None
    history: list[store.ActionRow]

    @property
    def statuses(self) -> dict[str, str]:
        return STATUS_TITLES


def actions_panel(conn: sa.Connection, user_id: int, scope: Scope, register_id: str) -> ActionsPanel | None:
    try:
        allowed = Permission.REGISTER_ACTIONS in permissions_at(conn, user_id, register_id)
    except NotFound:
        return None
    history, _ = store.list_actions(conn, scope, register_id, limit=HISTORY_SHOWN)
    tenant = conn.execute(sa.select(registers.c.tenant_id).where(registers.c.register_id == register_id)).scalar()
    if tenant is None:
        return None
    target = store.load_target(conn, int(tenant), register_id)
    offered = [catalogue.ACTIONS[name] for name in catalogue.available(target.state, target.protocol)] if allowed else []
    return ActionsPanel(offered, allowed, target.agent_id is not None, store.open_action(conn, register_id), history)


def may_close_shifts(conn: sa.Connection, user_id: int) -> bool:
    """Whether the tree offers «Закрыть долгие смены»: the user may act on some register."""
    scope = scope_for(conn, user_id, Permission.REGISTER_ACTIONS)
    return scope.node_ids is None or bool(scope.node_ids)


def _register_page(register_id: str, done: str = "") -> str:
    query = f"?done={done}" if done else ""
    return f"/registers/{quote(register_id, safe='')}{query}#register-actions"


def _action(text: str) -> ActionName:
    try:
        return ActionName(text)
    except ValueError:
        raise PageError(404, "Такого действия нет.") from None


def _describe(conn: sa.Connection, who: Caller, register_id: str) -> dict[str, Any]:
    require_visible(conn, who, register_id)
    row = conn.execute(
        sa.select(registers.c.serial, registers.c.model, nodes.c.name.label("store"))
        .select_from(registers.outerjoin(nodes, nodes.c.id == registers.c.node_id))
        .where(registers.c.register_id == register_id)
    ).one()
    return {"register_id": register_id, "serial": row.serial, "model": row.model, "store": row.store}


@page
async def confirm_page(request: web.Request) -> web.StreamResponse:
    register_id, action = request.match_info["register_id"], _action(request.match_info["action"])
    scope = principal_of(request).scope

    def work(conn: sa.Connection, who: Caller) -> dict[str, Any]:
        described = _describe(conn, who, register_id)
        panel = actions_panel(conn, who.user_id, scope, register_id)
        if panel is None or not panel.may_act:
            raise PageError(403, "Ваша роль не позволяет выполнять действия на этой кассе.")
        target = store.load_target(conn, who.tenant_id, register_id)
        refusal = catalogue.precondition(action, target.state, target.protocol)
        return {"target": described, "info": catalogue.ACTIONS[action],
                "consequence": catalogue.consequence(action, target.state),
                "refusal": refusal.ru if refusal is not None else None, "current": panel.current,
                "statuses": STATUS_TITLES}

    return render(request, "register_action_confirm.html", await as_caller(request, work))


@page
async def submit_action(request: web.Request) -> web.StreamResponse:
    register_id = request.match_info["register_id"]
    fields, at = await checked_form(request), now(request)
    action = _action(fields.get("action", ""))

    def work(conn: sa.Connection, who: Caller) -> store.ActionRow:
        return request_as(conn, who, register_id, action, at)

    try:
        await as_caller(request, work, write=True)
    except Problem as problem:  # 409: another action unfinished, the shift in the wrong state, no agent
        raise PageError(problem.body.status, refusal_text(problem)) from None
    announce_requested(request)
    raise web.HTTPSeeOther(_register_page(register_id, "action-requested"))


# --- bulk ----------------------------------------------------------------------------------------


def _node_id(request: web.Request) -> int:
    text = request.match_info["node_id"]
    if not text.isdigit() or len(text) > 18:
        raise PageError(404, "Такого узла нет.")
    return int(text)


def _hours(text: str | None) -> float:
    try:
        hours = float((text or "24").replace(",", "."))
    except ValueError:
        raise PageError(400, "Укажите число часов, например 24.") from None
    if not 0 < hours <= 24 * 365:
        raise PageError(400, "Число часов должно быть больше нуля и не больше года.")
    return hours


def _node_name(conn: sa.Connection, who: Caller, node_id: int) -> str:
    require_visible(conn, who, node_id)
    return str(conn.execute(sa.select(nodes.c.name).where(nodes.c.id == node_id)).scalar_one())


@page
async def bulk_page(request: web.Request) -> web.StreamResponse:
    node_id, at = _node_id(request), now(request)
    hours = _hours(request.query.get("hours"))

    def work(conn: sa.Connection, who: Caller) -> dict[str, Any]:
        name = _node_name(conn, who, node_id)
        candidates = bulk.long_shifts(conn, who.user_id, who.tenant_id, node_id, hours, at)
        return {"node_id": node_id, "node_name": name, "hours": hours, "candidates": candidates}

    try:
        found = await as_caller(request, work)
    except Problem as problem:
        raise PageError(problem.body.status, refusal_text(problem)) from None
    return render(request, "bulk_close_shifts.html", found)


@page
async def bulk_submit(request: web.Request) -> web.StreamResponse:
    node_id = _node_id(request)
    fields, at = await checked_form(request), now(request)
    hours = _hours(fields.get("hours"))

    def work(conn: sa.Connection, who: Caller) -> str:
        _node_name(conn, who, node_id)
        bulk_id, _ = bulk.close_long_shifts(conn, who.actor, who.user_id, who.tenant_id, node_id, hours, at)
        return bulk_id

    try:
        bulk_id = await as_caller(request, work, write=True)
    except Problem as problem:
        raise PageError(problem.body.status, refusal_text(problem)) from None
    announce_requested(request)
    raise web.HTTPSeeOther(f"/tree/{node_id}/close-shifts/{bulk_id}?hours={hours:g}")


@page
async def bulk_results(request: web.Request) -> web.StreamResponse:
    node_id, bulk_id = _node_id(request), request.match_info["bulk_id"]
    hours, scope = _hours(request.query.get("hours")), principal_of(request).scope

    def work(conn: sa.Connection, who: Caller) -> dict[str, Any]:
        name = _node_name(conn, who, node_id)
        rows = store.list_bulk(conn, scope, bulk_id)
        if not rows:
            raise PageError(404, "Такой групповой операции нет или по ней не было отправлено ни одной команды.")
        serials = {row.register_id: row.serial for row in conn.execute(
            sa.select(registers.c.register_id, registers.c.serial).where(
                registers.c.register_id.in_([r.register_id for r in rows])))}
        return {"node_id": node_id, "node_name": name, "hours": hours, "rows": rows, "serials": serials,
                "statuses": STATUS_TITLES}

    return render(request, "bulk_close_results.html", await as_caller(request, work))


ROUTES: tuple[tuple[str, str, Handler, str], ...] = (
    ("GET", "/registers/{register_id}/actions/{action}", confirm_page, "page-register-action-confirm"),
    ("POST", "/registers/{register_id}/actions", submit_action, "register-action-submit"),
    ("GET", "/tree/{node_id}/close-shifts", bulk_page, "page-bulk-close-shifts"),
    ("POST", "/tree/{node_id}/close-shifts", bulk_submit, "bulk-close-shifts-submit"),
    ("GET", "/tree/{node_id}/close-shifts/{bulk_id}", bulk_results, "page-bulk-close-results"),
)
