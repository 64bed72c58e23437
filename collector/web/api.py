"""Handlers of the JSON API under ``/api/v1`` and the operation table (``OPERATIONS``).

Every handler parses its input through the schema models (bad input → problem details), runs
its database work in a worker thread under the caller's scope, and answers through a response
model. Objects outside the scope are indistinguishable from missing ones (404).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa
from aiohttp import web
from pydantic import BaseModel

from collector.storage import repository as repo
from collector.storage.rows import RegisterRow
from collector.storage.scope import Scope
from collector.web import alert_actions, ops, present, queries
from collector.web.auth import principal_of, require_admin
from collector.web.csv_export import CSV_MEDIA_TYPE, registers_csv
from collector.web.openapi import serve_openapi
from collector.web.problems import not_found
from collector.web.routing import (
    Operation,
    in_transaction,
    int_path_param,
    json_response,
    now,
    parse_body,
    parse_query,
)
from collector.web.schemas import (
    AgentEventList,
    AgentEventOut,
    AgentEventQuery,
    AlertDetail,
    AlertList,
    AlertListQuery,
    BulkAckBody,
    BulkAckResult,
    CommentBody,
    CommentOut,
    DeadLetterList,
    DeadLetterQuery,
    EventList,
    EventQuery,
    Health,
    HistoryOut,
    NodeRollupList,
    NodeTreeOut,
    Readiness,
    RegisterCsvQuery,
    RegisterDetail,
    RegisterList,
    RegisterListQuery,
    RegisterSummary,
    SilenceBody,
    TimeWindowQuery,
)

API = "/api/v1"
QueryT = TypeVar("QueryT", bound=BaseModel)
CSV_CHUNK = 500  # registers per page-context lookup during an export
RECENT_CLEARED_ALERTS = 20
RECENT_EVENTS = 20


def _scoped_register(conn: sa.Connection, scope: Scope, register_id: str) -> RegisterRow:
    row = repo.get_register(conn, scope, register_id)
    if row is None:
        raise not_found(f"register {register_id!r}")
    return row


# --- registers -----------------------------------------------------------------------------------


async def list_registers(request: web.Request) -> web.Response:
    query = parse_query(request, RegisterListQuery)
    scope, at = principal_of(request).scope, now(request)

    def work(conn: sa.Connection) -> RegisterList:
        rows, total = queries.list_register_page(conn, scope, query, limit=query.limit, offset=query.offset)
        context = queries.page_context(conn, scope, rows)
        items = [present.register_summary(row, context, at) for row in rows]
        return RegisterList(items=items, total=total, limit=query.limit, offset=query.offset)

    return json_response(await in_transaction(request, work))


async def export_registers_csv(request: web.Request) -> web.Response:
    query = parse_query(request, RegisterCsvQuery)
    scope, at = principal_of(request).scope, now(request)

    def work(conn: sa.Connection) -> bytes:
        rows, _ = queries.list_register_page(conn, scope, query, limit=query.limit, offset=query.offset)
        items: list[RegisterSummary] = []
        for start in range(0, len(rows), CSV_CHUNK):
            chunk = rows[start : start + CSV_CHUNK]
            context = queries.page_context(conn, scope, chunk)
            items.extend(present.register_summary(row, context, at) for row in chunk)
        return registers_csv(items)

    body = await in_transaction(request, work)
    return web.Response(
        body=body,
        content_type=CSV_MEDIA_TYPE,
        charset="utf-8",
        headers={"Content-Disposition": 'attachment; filename="registers.csv"'},
    )


async def get_register(request: web.Request) -> web.Response:
    register_id = request.match_info["register_id"]
    scope, at = principal_of(request).scope, now(request)

    def work(conn: sa.Connection) -> RegisterDetail:
        row = _scoped_register(conn, scope, register_id)
        context = queries.page_context(conn, scope, [row])
        active, _ = queries.list_alert_page(conn, scope, AlertListQuery(register_id=register_id, limit=1000))
        cleared, _ = queries.list_alert_page(
            conn,
            scope,
            AlertListQuery(register_id=register_id, state="cleared", sort="time", limit=RECENT_CLEARED_ALERTS),
        )
        events = repo.list_events(conn, scope, register_id, limit=RECENT_EVENTS)
        return present.register_detail(row, context, at, alerts=active + cleared, events=events)

    return json_response(await in_transaction(request, work))


async def _register_subresource(
    request: web.Request, query_model: type[QueryT], build: Callable[[sa.Connection, Scope, str, QueryT], BaseModel]
) -> web.Response:
    """A read about one register: 404 unless the register is in the caller's scope."""
    register_id = request.match_info["register_id"]
    query = parse_query(request, query_model)
    scope = principal_of(request).scope

    def work(conn: sa.Connection) -> BaseModel:
        _scoped_register(conn, scope, register_id)
        return build(conn, scope, register_id, query)

    return json_response(await in_transaction(request, work))


def _history(conn: sa.Connection, scope: Scope, register_id: str, query: TimeWindowQuery) -> HistoryOut:
    rows = repo.state_history(conn, scope, register_id, query.since, query.until, limit=query.limit)
    return HistoryOut(register_id=register_id, points=[present.history_point(row) for row in rows])


def _events(conn: sa.Connection, scope: Scope, register_id: str, query: EventQuery) -> EventList:
    kinds = None if query.kind is None else [query.kind]
    rows = repo.list_events(conn, scope, register_id, since=query.since, until=query.until, kinds=kinds, limit=query.limit)
    return EventList(register_id=register_id, items=[present.event_out(row) for row in rows])


async def register_history(request: web.Request) -> web.Response:
    return await _register_subresource(request, TimeWindowQuery, _history)


async def register_events(request: web.Request) -> web.Response:
    return await _register_subresource(request, EventQuery, _events)


async def agent_events(request: web.Request) -> web.Response:
    agent_id = request.match_info["agent_id"]
    query = parse_query(request, AgentEventQuery)
    scope = principal_of(request).scope

    def work(conn: sa.Connection) -> AgentEventList:
        if not repo.agent_in_scope(conn, scope, agent_id):
            raise not_found(f"agent {agent_id!r}")
        rows = repo.list_agent_events(conn, scope, agent_id, limit=query.limit)
        return AgentEventList(agent_id=agent_id, items=[AgentEventOut.model_validate(r, from_attributes=True) for r in rows])

    return json_response(await in_transaction(request, work))


# --- alerts --------------------------------------------------------------------------------------


async def list_alerts(request: web.Request) -> web.Response:
    query = parse_query(request, AlertListQuery)
    scope = principal_of(request).scope

    def work(conn: sa.Connection) -> AlertList:
        rows, total = queries.list_alert_page(conn, scope, query)
        return AlertList(items=[present.alert_out(row) for row in rows], total=total, limit=query.limit, offset=query.offset)

    return json_response(await in_transaction(request, work))


def _alert_detail(conn: sa.Connection, scope: Scope, alert_id: int) -> AlertDetail:
    alert = repo.get_alert(conn, scope, alert_id)
    if alert is None:
        raise not_found(f"alert {alert_id}")
    return present.alert_detail(alert, repo.load_alert_history(conn, alert_id), repo.list_comments(conn, alert_id))


async def get_alert(request: web.Request) -> web.Response:
    alert_id = int_path_param(request, "alert_id")
    scope = principal_of(request).scope
    return json_response(await in_transaction(request, lambda conn: _alert_detail(conn, scope, alert_id)))


async def acknowledge_alert(request: web.Request) -> web.Response:
    alert_id = int_path_param(request, "alert_id")
    principal, at = principal_of(request), now(request)

    def work(conn: sa.Connection) -> AlertDetail:
        alert_actions.perform(conn, principal, alert_id, alert_actions.acknowledge(principal.user, at))
        return _alert_detail(conn, principal.scope, alert_id)

    return json_response(await in_transaction(request, work, write=True))


async def comment_alert(request: web.Request) -> web.Response:
    alert_id = int_path_param(request, "alert_id")
    body = await parse_body(request, CommentBody)
    principal, at = principal_of(request), now(request)

    def work(conn: sa.Connection) -> CommentOut:
        comment_id = alert_actions.add_comment(conn, principal, alert_id, body.text, at)
        stored = next(comment for comment in repo.list_comments(conn, alert_id) if comment.id == comment_id)
        return present.comment_out(stored)

    return json_response(await in_transaction(request, work, write=True), status=201)


async def silence_alert(request: web.Request) -> web.Response:
    alert_id = int_path_param(request, "alert_id")
    body = await parse_body(request, SilenceBody)
    principal, at = principal_of(request), now(request)

    def work(conn: sa.Connection) -> AlertDetail:
        alert_actions.perform(conn, principal, alert_id, alert_actions.silence(body.until, principal.user, at))
        return _alert_detail(conn, principal.scope, alert_id)

    return json_response(await in_transaction(request, work, write=True))


async def bulk_acknowledge(request: web.Request) -> web.Response:
    body = await parse_body(request, BulkAckBody)
    principal, at = principal_of(request), now(request)

    def work(conn: sa.Connection) -> BulkAckResult:
        # All or nothing: one unknown or out-of-scope id rolls the whole request back (404).
        done: list[int] = []
        unchanged: list[int] = []
        for alert_id in sorted(set(body.ids)):
            _, changes = alert_actions.perform(conn, principal, alert_id, alert_actions.acknowledge(principal.user, at))
            (done if changes else unchanged).append(alert_id)
        return BulkAckResult(acknowledged=done, unchanged=unchanged)

    return json_response(await in_transaction(request, work, write=True))


# --- tree and dead letters -----------------------------------------------------------------------


async def node_tree(request: web.Request) -> web.Response:
    scope = principal_of(request).scope

    def work(conn: sa.Connection) -> NodeTreeOut:
        return NodeTreeOut(roots=present.node_forest(repo.node_rollups(conn, scope)))

    return json_response(await in_transaction(request, work))


async def node_rollups(request: web.Request) -> web.Response:
    scope = principal_of(request).scope

    def work(conn: sa.Connection) -> NodeRollupList:
        return NodeRollupList(items=[present.rollup_out(rollup) for rollup in repo.node_rollups(conn, scope)])

    return json_response(await in_transaction(request, work))


async def list_dead_letters(request: web.Request) -> web.Response:
    require_admin(request)
    query = parse_query(request, DeadLetterQuery)

    def work(conn: sa.Connection) -> DeadLetterList:
        rows, total = queries.list_dead_letter_page(conn, limit=query.limit, offset=query.offset)
        return DeadLetterList(
            items=[present.dead_letter_out(row) for row in rows], total=total, limit=query.limit, offset=query.offset
        )

    return json_response(await in_transaction(request, work))


_REGISTER_ID = {"register_id": str}
_ALERT_ID = {"alert_id": int}

OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", f"{API}/registers", list_registers, "listRegisters", "Registers in scope, filtered, sorted, paged",
              "registers", RegisterList, query=RegisterListQuery, errors=(400,)),
    Operation("GET", f"{API}/registers.csv", export_registers_csv, "exportRegistersCsv",
              "The register list as CSV (same filters)", "registers", media_type=CSV_MEDIA_TYPE,
              query=RegisterCsvQuery, errors=(400,)),
    Operation("GET", f"{API}/registers/{{register_id}}", get_register, "getRegister",
              "A register: identity, latest state, contract, alerts, recent events", "registers", RegisterDetail,
              path_params=_REGISTER_ID, errors=(404,)),
    Operation("GET", f"{API}/registers/{{register_id}}/history", register_history, "getRegisterHistory",
              "State history points of a register, oldest first", "registers", HistoryOut, query=TimeWindowQuery,
              path_params=_REGISTER_ID, errors=(400, 404)),
    Operation("GET", f"{API}/registers/{{register_id}}/events", register_events, "getRegisterEvents",
              "Events of a register, newest first", "registers", EventList, query=EventQuery,
              path_params=_REGISTER_ID, errors=(400, 404)),
    Operation("GET", f"{API}/agents/{{agent_id}}/events", agent_events, "getAgentEvents",
              "The agent's own events (outbox_gap: states it dropped; command_error; agent_reinstalled), newest first", "registers",
              AgentEventList, query=AgentEventQuery, path_params={"agent_id": str}, errors=(400, 404)),
    Operation("GET", f"{API}/alerts", list_alerts, "listAlerts", "Alerts of registers in scope", "alerts", AlertList,
              query=AlertListQuery, errors=(400,)),
    Operation("POST", f"{API}/alerts/ack", bulk_acknowledge, "acknowledgeAlerts",
              "Acknowledge several alerts at once (all or nothing)", "alerts", BulkAckResult, body=BulkAckBody,
              errors=(400, 403, 404, 415, 422)),
    Operation("GET", f"{API}/alerts/{{alert_id}}", get_alert, "getAlert", "An alert with its history and comments",
              "alerts", AlertDetail, path_params=_ALERT_ID, errors=(400, 404)),
    Operation("POST", f"{API}/alerts/{{alert_id}}/ack", acknowledge_alert, "acknowledgeAlert", "Acknowledge an alert",
              "alerts", AlertDetail, path_params=_ALERT_ID, errors=(400, 403, 404, 422)),
    Operation("POST", f"{API}/alerts/{{alert_id}}/comments", comment_alert, "commentAlert", "Comment on an alert",
              "alerts", CommentOut, body=CommentBody, path_params=_ALERT_ID, status=201,
              errors=(400, 403, 404, 415, 422)),
    Operation("POST", f"{API}/alerts/{{alert_id}}/silence", silence_alert, "silenceAlert",
              "Silence an alert's notifications until a time, or lift the silence (null)", "alerts", AlertDetail,
              body=SilenceBody, path_params=_ALERT_ID, errors=(400, 403, 404, 415, 422)),
    Operation("GET", f"{API}/nodes", node_tree, "getNodeTree", "The company tree visible to the caller", "nodes",
              NodeTreeOut),
    Operation("GET", f"{API}/nodes/rollups", node_rollups, "getNodeRollups",
              "Per node: registers by worst severity and the earliest block, all descendants included", "nodes",
              NodeRollupList),
    Operation("GET", f"{API}/dead-letters", list_dead_letters, "listDeadLetters",
              "Messages the collector could not use, newest first (administrators)", "operations", DeadLetterList,
              query=DeadLetterQuery, errors=(400, 403), admin_only=True),
    Operation("GET", f"{API}/openapi.json", serve_openapi, "getOpenApi", "This document", "operations",
              media_type="application/json", public=True),
    Operation("GET", "/healthz", ops.healthz, "healthz", "The process is alive", "operations", Health, public=True),
    Operation("GET", "/readyz", ops.readyz, "readyz", "Database reachable and broker connected (when reported)",
              "operations", Readiness, public=True, errors=(503,)),
    Operation("GET", "/metrics", ops.metrics, "metrics", "Prometheus exposition", "operations",
              media_type="text/plain", public=True),
)
