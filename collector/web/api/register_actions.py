"""Remote actions on registers (issue 10): request one, follow it, and close long shifts in bulk.

* ``POST /api/v1/registers/{id}/actions`` — ``Permission.REGISTER_ACTIONS`` on the register;
  201 with the action ``requested`` (the collector publishes it and follows its lifecycle); 409
  with the reason when it cannot run now (another action unfinished, the shift in the wrong
  state, no agent);
* ``GET /api/v1/registers/{id}/actions`` (paged, newest first), ``GET /api/v1/actions/{id}``;
* ``POST /api/v1/actions/bulk/preview`` and ``POST /api/v1/actions/bulk`` — «закрыть смены,
  открытые дольше N ч» under a tree node: the matching registers, then one result per register.

Actions act for a user account (the audit names a person); a register the caller cannot see is a 404.
"""

from __future__ import annotations

from typing import Any, Literal

import sqlalchemy as sa
from aiohttp import web
from pydantic import AwareDatetime, BaseModel, Field

from collector.actions import bulk, store
from collector.web.api.models import InputModel
from collector.web.auth import principal_of
from collector.web.problems import not_found
from collector.web.routing import API, Operation, in_transaction, json_response, now, parse_body, parse_query
from collector.web.shared.accounts import Caller, answer_as_caller
from collector.web.shared.paging import Page, Paged, next_link
from collector.web.shared.register_actions import announce_requested, request_as
from protocol.mqtt.actions import ActionName


class ActionBody(InputModel):
    action: ActionName
    args: dict[str, Any] = Field(default_factory=dict, description="the action's arguments (none of today's take any)")


class ActionOut(BaseModel):
    id: str
    register_id: str
    action: str
    args: dict[str, Any]
    status: str = Field(description="requested, sent, accepted, done, failed, refused or expired")
    code: int | None = Field(description="the register's error code, when it refused or failed")
    meaning: str | None = Field(description="what the code or refusal means, in Russian")
    reason: str | None = Field(description="machine-readable why (policy, deadline_passed, wrong_shift_state, no_answer …)")
    requested_by: str
    requested_at: AwareDatetime
    deadline: AwareDatetime
    updated_at: AwareDatetime
    bulk_id: str | None


class ActionList(Paged):
    register_id: str
    items: list[ActionOut]
    total: int


def _out(row: store.ActionRow) -> ActionOut:
    return ActionOut.model_validate(row, from_attributes=True)


async def request_action(request: web.Request) -> web.Response:
    register_id = request.match_info["register_id"]
    body, at = await parse_body(request, ActionBody), now(request)

    def work(conn: sa.Connection, who: Caller) -> ActionOut:
        return _out(request_as(conn, who, register_id, body.action, at, body.args))

    response = await answer_as_caller(request, work, status=201)
    announce_requested(request)
    return response


async def list_actions(request: web.Request) -> web.Response:
    register_id = request.match_info["register_id"]
    page = parse_query(request, Page)
    scope = principal_of(request).scope

    def work(conn: sa.Connection) -> ActionList:
        if not store.register_in_scope(conn, scope, register_id):
            raise not_found(f"register {register_id!r}")
        rows, total = store.list_actions(conn, scope, register_id, limit=page.limit, offset=page.offset)
        return ActionList(register_id=register_id, items=[_out(r) for r in rows], total=total,
                          next=next_link(request, page, len(rows), total))

    return json_response(await in_transaction(request, work))


async def get_action(request: web.Request) -> web.Response:
    action_id = request.match_info["action_id"]
    scope = principal_of(request).scope

    def work(conn: sa.Connection) -> ActionOut:
        row = store.get_action(conn, scope, action_id)
        if row is None:
            raise not_found(f"action {action_id!r}")
        return _out(row)

    return json_response(await in_transaction(request, work))


class BulkBody(InputModel):
    node_id: int = Field(description="the tree node whose registers are considered (its whole subtree)")
    action: Literal["close_shift"] = "close_shift"
    min_shift_hours: float = Field(24, gt=0, le=24 * 365, description="only shifts open longer than this")


class BulkCandidateOut(BaseModel):
    register_id: str
    serial: str | None
    store: str | None
    shift_number: int | None
    shift_hours: float
    busy: bool = Field(description="another action is unfinished there: it will be refused")


class BulkPreviewOut(BaseModel):
    node_id: int
    min_shift_hours: float
    items: list[BulkCandidateOut]


class BulkResultOut(BaseModel):
    register_id: str
    action_id: str
    status: str = Field(description="requested, or refused by the collector (the reason in message)")
    message: str


class BulkOut(BaseModel):
    bulk_id: str
    items: list[BulkResultOut]


async def bulk_preview(request: web.Request) -> web.Response:
    body, at = await parse_body(request, BulkBody), now(request)

    def work(conn: sa.Connection, who: Caller) -> BulkPreviewOut:
        found = bulk.long_shifts(conn, who.user_id, who.tenant_id, body.node_id, body.min_shift_hours, at)
        return BulkPreviewOut(node_id=body.node_id, min_shift_hours=body.min_shift_hours,
                              items=[BulkCandidateOut.model_validate(c, from_attributes=True) for c in found])

    return await answer_as_caller(request, work, write=False)


async def bulk_run(request: web.Request) -> web.Response:
    body, at = await parse_body(request, BulkBody), now(request)

    def work(conn: sa.Connection, who: Caller) -> BulkOut:
        bulk_id, outcomes = bulk.close_long_shifts(conn, who.actor, who.user_id, who.tenant_id, body.node_id,
                                                   body.min_shift_hours, at)
        return BulkOut(bulk_id=bulk_id, items=[BulkResultOut.model_validate(o, from_attributes=True) for o in outcomes])

    response = await answer_as_caller(request, work)
    announce_requested(request)
    return response


OPERATIONS: tuple[Operation, ...] = (
    Operation("POST", f"{API}/registers/{{register_id}}/actions", request_action, "requestRegisterAction",
              "Run a remote action on the register through its agent (Z-report, X-report, open shift, set clock, "
              "check now, reboot)", "actions", ActionOut, body=ActionBody, path_params={"register_id": str},
              status=201, errors=(403, 404, 409, 415, 422)),
    Operation("GET", f"{API}/registers/{{register_id}}/actions", list_actions, "listRegisterActions",
              "The register's remote actions with their status, newest first", "actions", ActionList, query=Page,
              path_params={"register_id": str}, errors=(400, 404)),
    Operation("GET", f"{API}/actions/{{action_id}}", get_action, "getRegisterAction",
              "One remote action and its status", "actions", ActionOut, path_params={"action_id": str},
              errors=(404,)),
    Operation("POST", f"{API}/actions/bulk/preview", bulk_preview, "previewBulkCloseShifts",
              "The registers under a node whose shift is open longer than N hours (that you may act on)", "actions",
              BulkPreviewOut, body=BulkBody, errors=(403, 404, 415, 422)),
    Operation("POST", f"{API}/actions/bulk", bulk_run, "bulkCloseShifts",
              "Close the shift (Z-report) on every register the preview names; one result per register", "actions",
              BulkOut, body=BulkBody, errors=(403, 404, 415, 422)),
)
