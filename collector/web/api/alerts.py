"""Alerts of the JSON API: the list in scope, one alert with its history and comments, and the
lifecycle actions (acknowledge, one or many; comment; silence), each in one write transaction."""

from __future__ import annotations

import sqlalchemy as sa
from aiohttp import web

from collector.storage import repository as repo
from collector.storage.scope import Scope
from collector.web.auth import principal_of
from collector.web.problems import not_found
from collector.web.routing import (
    API,
    Operation,
    in_transaction,
    int_path_param,
    json_response,
    now,
    parse_body,
    parse_query,
)
from collector.web.shared import alert_actions, present
from collector.web.shared import fleet_queries as queries
from collector.web.shared.fleet_models import (
    AlertDetail,
    AlertList,
    AlertListQuery,
    BulkAckBody,
    BulkAckResult,
    CommentBody,
    CommentOut,
    SilenceBody,
)
from collector.web.shared.paging import next_link


async def list_alerts(request: web.Request) -> web.Response:
    query = parse_query(request, AlertListQuery)
    scope = principal_of(request).scope

    def work(conn: sa.Connection) -> AlertList:
        rows, total = queries.list_alert_page(conn, scope, query)
        return AlertList(
            items=[present.alert_out(row) for row in rows], total=total, limit=query.limit, offset=query.offset,
            next=next_link(request, query, len(rows), total),
        )

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


_ALERT_ID = {"alert_id": int}


OPERATIONS: tuple[Operation, ...] = (
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
)
