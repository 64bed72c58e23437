"""Handlers of the monitoring pages: dashboard, tree, register list, register page, alerts with
their HTML-form actions. Every read runs in a worker thread under the caller's scope; every POST
checks the CSRF token, applies the same lifecycle actions as the JSON API, announces the change
on the live feed and redirects back (POST/redirect/GET)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlencode

import sqlalchemy as sa
from aiohttp import web
from pydantic import BaseModel, ValidationError

from collector.alerts import format_duration
from collector.alerts.rules import RuleInput, oldest_unsent_age
from collector.alerts.thresholds import Thresholds
from collector.storage import repository as repo
from collector.web.auth import principal_of
from collector.web.pages import data
from collector.web.pages.feeds import locate_registers
from collector.web.pages.render import PageError, local_time, page, render, time_zone
from collector.web.pages.sse import EVENT_HUB_KEY
from collector.web.pages.support import checked_form, safe_next
from collector.web.problems import Problem
from collector.web.routing import in_transaction, now
from collector.web.shared import alert_actions, present
from collector.web.shared import fleet_queries as queries
from collector.web.shared.fleet_models import AlertListQuery, RegisterFilters

PAGE_SIZE = 50
HISTORY_WINDOW = timedelta(days=7)
HISTORY_POINTS = 2000
EVENTS_SHOWN = 50
ModelT = TypeVar("ModelT", bound=BaseModel)
_BACKLOG_LIMIT = Thresholds().ofd_backlog_blocked


def _form_values(query: Mapping[str, str], keys: tuple[str, ...]) -> dict[str, str]:
    # HTML forms send "" for "any"; an empty field is no filter. Repeats: the first one wins.
    return {key: query[key].strip() for key in keys if key in query and query[key].strip()}


def _parse(model: type[ModelT], values: Mapping[str, Any]) -> ModelT:
    try:
        return model.model_validate(values)
    except ValidationError as errors:
        names = ", ".join(str(error["loc"][0]) for error in errors.errors() if error["loc"])
        raise PageError(400, f"Неверное значение фильтра: {names}") from None


def _page_number(request: web.Request) -> int:
    text = request.query.get("page", "1").strip()
    if not text.isdigit() or not 1 <= int(text) <= 100_000:
        raise PageError(400, "Неверный номер страницы")
    return int(text)


def _pagination(page_number: int, total: int, query: str) -> dict[str, Any]:
    pages = max(1, math.ceil(total / PAGE_SIZE))
    prefix = f"?{query}&" if query else "?"
    return {
        "page": page_number,
        "pages": pages,
        "total": total,
        "prev": f"{prefix}page={page_number - 1}" if page_number > 1 else None,
        "next": f"{prefix}page={page_number + 1}" if page_number < pages else None,
    }


# --- dashboard, tree, registers ------------------------------------------------------------------


@page
async def dashboard(request: web.Request) -> web.StreamResponse:
    scope, at = principal_of(request).scope, now(request)

    def work(conn: sa.Connection) -> dict[str, Any]:
        return {
            "counters": data.problem_counters(conn, scope),
            "ranking": data.next_to_block(conn, scope, at),
            "shifts": data.shift_summary(conn, scope),
        }

    return render(request, "dashboard.html", await in_transaction(request, work))


@page
async def tree_page(request: web.Request) -> web.StreamResponse:
    scope = principal_of(request).scope

    text = request.query.get("node", "").strip()
    if text and not text.isdigit():
        raise PageError(400, "Неверный узел")
    top = int(text) if text else None

    def work(conn: sa.Connection) -> dict[str, Any]:
        roots = data.tree(conn, scope, top=top)
        if top is not None and not roots:  # not there, or not the caller's to see
            raise PageError(404, "Узел не найден")
        return {"roots": roots, "top": top, "level_titles": data.level_titles(conn, scope)}

    return render(request, "tree.html", await in_transaction(request, work))


@page
async def registers_page(request: web.Request) -> web.StreamResponse:
    filters = _parse(RegisterFilters, _form_values(request.query, data.FILTER_KEYS))
    page_number = _page_number(request)
    scope, at = principal_of(request).scope, now(request)

    def work(conn: sa.Connection) -> dict[str, Any]:
        items, total = data.register_summaries(
            conn, scope, filters, at, limit=PAGE_SIZE, offset=(page_number - 1) * PAGE_SIZE
        )
        return {"items": items, "total": total, "choices": data.filter_choices(conn, scope)}

    found = await in_transaction(request, work)
    query = data.filter_query(filters)
    return render(
        request,
        "registers.html",
        {
            **found,
            "filters": filters,
            "csv_href": f"/api/v1/registers.csv?{query}" if query else "/api/v1/registers.csv",
            "pagination": _pagination(page_number, found["total"], query),
        },
    )


# --- one register --------------------------------------------------------------------------------


def _backlog_block(summary: Any, state: Any, received_at: datetime | None, at: datetime) -> datetime | None:
    """When the 30-day OFD rule blocks this register, on the rules' clock model; None without a backlog."""
    if state is None:
        return None
    aged = oldest_unsent_age(
        RuleInput(register_id=summary.register_id, now=at, state=state, state_received_at=received_at)
    )
    return None if aged is None else at + (_BACKLOG_LIMIT - aged[0])


@page
async def register_page(request: web.Request) -> web.StreamResponse:
    register_id = request.match_info["register_id"]
    principal, at = principal_of(request), now(request)
    scope = principal.scope
    zone = time_zone(request)

    def work(conn: sa.Connection) -> dict[str, Any] | None:
        row = repo.get_register(conn, scope, register_id)
        if row is None:
            return None
        context = queries.page_context(conn, scope, [row])
        active, _ = queries.list_alert_page(conn, scope, AlertListQuery(register_id=register_id, limit=200))
        cleared, _ = queries.list_alert_page(
            conn, scope, AlertListQuery(register_id=register_id, state="cleared", sort="time", limit=20)
        )
        events = repo.list_events(conn, scope, register_id, limit=EVENTS_SHOWN)
        agent_events = [] if row.agent_id is None else repo.list_agent_events(conn, scope, row.agent_id, limit=10)
        history = repo.state_history(
            conn, scope, register_id, at - HISTORY_WINDOW, None, limit=HISTORY_POINTS
        )
        detail = present.register_detail(row, context, at, alerts=active + cleared, events=events)
        return {
            "reg": detail,
            "active_alerts": active,
            "past_alerts": cleared,
            "events": events,
            "agent_events": agent_events,
            "chart": [
                {
                    "t": point.ts.isoformat(),
                    "local": local_time(point.ts, zone),
                    "unsent": point.unsent_count,
                    "shift": point.shift_status,
                }
                for point in map(present.history_point, history)
            ],
            "backlog_blocks_at": _backlog_block(detail, detail.state, row.state_received_at, at),
            "may_act": bool(data.actionable_register_ids(conn, principal.action_scope, [register_id])),
        }

    found = await in_transaction(request, work)
    if found is None:
        raise PageError(404, "Такой кассы нет или она вне вашей зоны доступа.")
    found["chart_period"] = _chart_period(found["chart"])
    reg = found["reg"]
    today = at.astimezone(zone).date()
    found["fn_days_left"] = None if reg.fn.valid_until is None else (reg.fn.valid_until - today).days
    contract = reg.contract
    found["paid_days_left"] = (
        None if contract is None or contract.paid_until is None else (contract.paid_until - today).days
    )
    return render(request, "register.html", found)


def _chart_period(chart: list[dict[str, Any]]) -> dict[str, Any] | None:
    """What the chart really covers: a register seen for 4 minutes has 4 minutes of history, not 7 days."""
    if not chart:
        return None
    span = datetime.fromisoformat(chart[-1]["t"]) - datetime.fromisoformat(chart[0]["t"])
    return {"from": chart[0]["local"], "to": chart[-1]["local"], "covers": format_duration(span),
            "whole_window": span >= HISTORY_WINDOW - timedelta(hours=1)}


# --- alerts --------------------------------------------------------------------------------------

_ALERT_KEYS = ("state", "acknowledged", "severity", "rule", "node", "register", "sort")


@page
async def alerts_page(request: web.Request) -> web.StreamResponse:
    values = _form_values(request.query, _ALERT_KEYS)
    page_number = _page_number(request)
    query = _parse(AlertListQuery, {**values, "limit": PAGE_SIZE, "offset": (page_number - 1) * PAGE_SIZE})
    principal = principal_of(request)
    scope = principal.scope

    def work(conn: sa.Connection) -> dict[str, Any]:
        rows, total = queries.list_alert_page(conn, scope, query)
        briefs = data.register_briefs(conn, scope, [row.register_id for row in rows])
        comments = data.comments_by_alert(conn, [row.id for row in rows if row.id is not None])
        may_act = data.actionable_register_ids(conn, principal.action_scope, [row.register_id for row in rows])
        return {"alerts": rows, "total": total, "registers": briefs, "comments": comments, "may_act": may_act}

    found = await in_transaction(request, work)
    filter_string = urlencode(values)
    return render(
        request,
        "alerts.html",
        {
            **found,
            "query": query,
            "values": values,
            "here": f"/alerts?{filter_string}" if filter_string else "/alerts",
            "done": request.query.get("done", ""),
            "pagination": _pagination(page_number, found["total"], filter_string),
        },
    )


def _with_done(target: str, done: str) -> str:
    separator = "&" if "?" in target else "?"
    return f"{target}{separator}{urlencode({'done': done})}"


def _alert_id(request: web.Request) -> int:
    text = request.match_info["alert_id"]
    if not text.isdigit() or len(text) > 18:
        raise PageError(404, "Такого алерта нет.")
    return int(text)


async def _act(request: web.Request, alert_ids: list[int], action_for: Any, done: str) -> web.StreamResponse:
    """Run one lifecycle action on each alert in one transaction, announce, and redirect back."""
    fields = await checked_form(request)
    principal, at = principal_of(request), now(request)

    def work(conn: sa.Connection) -> list[dict[str, Any]]:
        register_ids = []
        for alert_id in alert_ids:
            alert, _ = alert_actions.perform(
                conn, principal, alert_id, action_for(fields, principal.user, at)
            )
            register_ids.append(alert.register_id)
        return locate_registers(conn, register_ids)

    return await _commit_and_return(request, work, fields, done)


async def _commit_and_return(
    request: web.Request, work: Any, fields: Mapping[str, str], done: str
) -> web.StreamResponse:
    """Run the write, then (after the commit) announce the changed registers and redirect back."""
    try:
        located: list[dict[str, Any]] = await in_transaction(request, work, write=True)
    except Problem as problem:  # unknown/out-of-scope alert (404), no right to act (403), refused (422)
        raise PageError(problem.body.status, _ALERT_REFUSALS.get(problem.body.status, _ALERT_REFUSED)) from None
    hub = request.app[EVENT_HUB_KEY]
    for row in located:
        hub.publish("alert", row["register_id"], row["path"], {"action": done}, tenant_id=row["tenant_id"])
    raise web.HTTPSeeOther(_with_done(safe_next(fields.get("next"), "/alerts"), done))


# A person reads these; the API keeps its technical details.
_ALERT_REFUSALS = {
    403: "Вы видите этот алерт, но ваша роль не позволяет подтверждать его, комментировать или отключать уведомления.",
    404: "Такого алерта нет или он вне вашей зоны доступа.",
}
_ALERT_REFUSED = "Это действие с алертом сейчас невозможно: он ещё не поднят или уже изменился. Обновите страницу."


def _ack(fields: Mapping[str, str], user: str, at: datetime) -> alert_actions.Action:
    return alert_actions.acknowledge(user, at)


@page
async def acknowledge(request: web.Request) -> web.StreamResponse:
    return await _act(request, [_alert_id(request)], _ack, "ack")


@page
async def acknowledge_many(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    ids = sorted(
        {int(value) for value in form.getall("ids", []) if isinstance(value, str) and value.isdigit()}
    )
    if not ids:
        raise PageError(400, "Не выбран ни один алерт.")
    return await _act(request, ids, _ack, f"ack:{len(ids)}")


@page
async def silence(request: web.Request) -> web.StreamResponse:
    zone = time_zone(request)

    def action(fields: Mapping[str, str], user: str, at: datetime) -> alert_actions.Action:
        text = fields.get("until", "").strip()
        if not text:
            return alert_actions.silence(None, user, at)  # an empty time lifts the silence
        try:
            until = datetime.fromisoformat(text)
        except ValueError:
            raise PageError(400, "Время, до которого отключить уведомления, не распознано.") from None
        if until.utcoffset() is None:
            until = until.replace(tzinfo=zone)  # the form's datetime-local is the tenant's wall clock
        return alert_actions.silence(until, user, at)

    return await _act(request, [_alert_id(request)], action, "silence")


@page
async def comment(request: web.Request) -> web.StreamResponse:
    alert_id = _alert_id(request)
    fields = await checked_form(request)
    text = fields.get("text", "").strip()
    if not text or len(text) > 4000:
        raise PageError(400, "Комментарий должен содержать от 1 до 4000 символов.")
    principal, at = principal_of(request), now(request)

    def work(conn: sa.Connection) -> list[dict[str, Any]]:
        alert_actions.add_comment(conn, principal, alert_id, text, at)
        alert = repo.get_alert(conn, principal.scope, alert_id)
        return [] if alert is None else locate_registers(conn, [alert.register_id])

    return await _commit_and_return(request, work, fields, "comment")
