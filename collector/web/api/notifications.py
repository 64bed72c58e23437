"""Notification endpoints of the JSON API: receivers (create, list, replace, delete), a test
message to one receiver, and the recent failed deliveries.

Receivers decide who hears about which registers, and webhook secrets sign what goes out, so
every operation needs the company-wide user and group management permissions (owner, admin),
checked like the other accounts endpoints with ``rights.authorize``; writes are audited. A
webhook secret is generated when none is given and shown once, in the answer that created it.

The test message uses the process's own renderer and SMTP relay (``NOTIFY_CHANNELS_KEY``, set by
the collector service); an app built without it answers 503.
"""

from __future__ import annotations

import secrets
from datetime import time
from typing import Literal

import sqlalchemy as sa
from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from collector.accounts.company import time_zone_name
from collector.accounts.errors import InvalidInput, NotFound
from collector.accounts.rights import Permission, authorize
from collector.notify.notice import Receiver
from collector.notify.receivers import (
    ReceiverError,
    ReceiverRecord,
    ReceiverSpec,
    create_receiver,
    delete_receiver,
    get_receiver,
    list_receivers,
    load_receiver,
    recent_failures,
    update_receiver,
)
from collector.web.api.models import Done
from collector.web.problems import Problem
from collector.web.routing import API, Operation, int_path_param, json_response, now, parse_body, parse_query
from collector.web.shared.account_actions import audit_receiver_change
from collector.web.shared.accounts import Caller, account_user_id, caller, run_in_transaction
from collector.web.shared.notify_test import NOTIFY_CHANNELS_KEY, SendChannels, send_test
from collector.web.shared.paging import Page, Paged, next_link, repaged

# --- models --------------------------------------------------------------------------------------


class ReceiverBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: Literal["email", "webhook"]
    address: str = Field(min_length=3, max_length=500, description="e-mail address or http(s) URL")
    principal_user_id: int = Field(description="the user whose grants decide what this receiver hears about")
    secret: str | None = Field(None, min_length=16, max_length=200, description="webhook HMAC key; generated if absent")
    timezone: str | None = Field(
        None, min_length=1, max_length=64, description="IANA zone of quiet hours and message times; default: the company's"
    )
    quiet_start: time | None = None
    quiet_end: time | None = None
    quiet_floor: Literal["info", "warning", "major", "critical", "blocked"] | None = None
    enabled: bool = True


class ReceiverOut(BaseModel):
    id: int
    channel: str
    address: str
    has_secret: bool
    timezone: str
    quiet_start: time | None
    quiet_end: time | None
    quiet_floor: str | None
    principal_user_id: int | None
    enabled: bool
    created_at: AwareDatetime


class ReceiverList(Paged):
    items: list[ReceiverOut]


class ReceiverCreated(BaseModel):
    id: int
    secret: str | None = Field(None, description="the webhook signing secret, shown only here")


class ProbeResult(BaseModel):
    delivered: bool
    error: str | None


class FailureOut(BaseModel):
    id: int
    receiver_id: int
    channel: str
    group_key: str
    last_error: str
    attempts: int
    failed_at: AwareDatetime


class FailureList(Paged):
    items: list[FailureOut]


class FailureQuery(Page):
    limit: int = Field(50, ge=1, le=500)


def _out(record: ReceiverRecord) -> ReceiverOut:
    return ReceiverOut.model_validate(record, from_attributes=True)


def _spec(conn: sa.Connection, who: Caller, body: ReceiverBody, secret: str | None) -> ReceiverSpec:
    return ReceiverSpec(
        channel=body.channel,
        address=body.address,
        principal_user_id=body.principal_user_id,
        secret=secret,
        timezone=body.timezone or time_zone_name(conn, who.tenant_id),
        quiet_start=body.quiet_start,
        quiet_end=body.quiet_end,
        quiet_floor=body.quiet_floor,
        enabled=body.enabled,
    )


def _manager(conn: sa.Connection, user_id: int) -> Caller:
    """The caller, if they may manage users and groups across the whole company (403 otherwise)."""
    who = caller(conn, user_id)
    authorize(conn, who.actor, who.tenant_id, Permission.MANAGE_USERS, None)
    authorize(conn, who.actor, who.tenant_id, Permission.MANAGE_GROUPS, None)
    return who


# --- handlers ------------------------------------------------------------------------------------


async def list_notification_receivers(request: web.Request) -> web.Response:
    user_id = account_user_id(request)
    page = parse_query(request, Page)

    def work(conn: sa.Connection) -> ReceiverList:
        who = _manager(conn, user_id)
        return repaged(request, page, ReceiverList(items=[_out(r) for r in list_receivers(conn, who.tenant_id)]))

    return json_response(await run_in_transaction(request, work, write=False))


async def create_notification_receiver(request: web.Request) -> web.Response:
    user_id = account_user_id(request)
    body = await parse_body(request, ReceiverBody)
    at = now(request)
    generated = secrets.token_urlsafe(32) if body.channel == "webhook" and body.secret is None else None

    def work(conn: sa.Connection) -> ReceiverCreated:
        who = _manager(conn, user_id)
        try:
            receiver_id = create_receiver(conn, who.tenant_id, _spec(conn, who, body, body.secret or generated), at=at)
        except ReceiverError as exc:
            raise InvalidInput(str(exc)) from None
        audit_receiver_change(conn, who, "notification_receiver.create", receiver_id, at, channel=body.channel, address=body.address)
        return ReceiverCreated(id=receiver_id, secret=generated)

    response = json_response(await run_in_transaction(request, work), status=201)
    response.headers["Cache-Control"] = "no-store"  # it may carry the secret
    return response


async def replace_notification_receiver(request: web.Request) -> web.Response:
    user_id = account_user_id(request)
    receiver_id = int_path_param(request, "receiver_id")
    body = await parse_body(request, ReceiverBody)
    at = now(request)

    def work(conn: sa.Connection) -> ReceiverOut:
        who = _manager(conn, user_id)
        try:
            found = update_receiver(conn, who.tenant_id, receiver_id, _spec(conn, who, body, body.secret))
        except ReceiverError as exc:
            raise InvalidInput(str(exc)) from None
        record = get_receiver(conn, who.tenant_id, receiver_id) if found else None
        if record is None:
            raise NotFound(f"notification receiver {receiver_id} not found")
        audit_receiver_change(conn, who, "notification_receiver.update", receiver_id, at, channel=body.channel, address=body.address)
        return _out(record)

    return json_response(await run_in_transaction(request, work))


async def delete_notification_receiver(request: web.Request) -> web.Response:
    user_id = account_user_id(request)
    receiver_id = int_path_param(request, "receiver_id")
    at = now(request)

    def work(conn: sa.Connection) -> Done:
        who = _manager(conn, user_id)
        if not delete_receiver(conn, who.tenant_id, receiver_id):
            raise NotFound(f"notification receiver {receiver_id} not found")
        audit_receiver_change(conn, who, "notification_receiver.delete", receiver_id, at)
        return Done(ok=True, message=f"notification receiver {receiver_id} deleted")

    return json_response(await run_in_transaction(request, work))


async def probe_notification_receiver(request: web.Request) -> web.Response:
    user_id = account_user_id(request)
    receiver_id = int_path_param(request, "receiver_id")
    channels = request.app.get(NOTIFY_CHANNELS_KEY)

    def work(conn: sa.Connection) -> Receiver:
        who = _manager(conn, user_id)
        receiver = load_receiver(conn, who.tenant_id, receiver_id)
        if receiver is None:
            raise NotFound(f"notification receiver {receiver_id} not found")
        return receiver

    receiver = await run_in_transaction(request, work, write=False)
    if channels is None:
        raise Problem(503, "notifications-off", "Notifications not configured",
                      "this process does not send notifications")  # fmt: skip
    delivered, error = await send_test(channels, receiver, now(request))
    return json_response(ProbeResult(delivered=delivered, error=error))


async def list_failed_deliveries(request: web.Request) -> web.Response:
    user_id = account_user_id(request)
    query = parse_query(request, FailureQuery)

    def work(conn: sa.Connection) -> FailureList:
        who = _manager(conn, user_id)
        failures = recent_failures(conn, who.tenant_id, limit=query.limit, offset=query.offset)
        items = [FailureOut.model_validate(f, from_attributes=True) for f in failures]
        return FailureList(items=items, next=next_link(request, query, len(items)))

    return json_response(await run_in_transaction(request, work, write=False))


_RECEIVER_ID = {"receiver_id": int}
_W = (403, 404, 415, 422)

OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", f"{API}/notifications/receivers", list_notification_receivers, "listNotificationReceivers",
              "Where the company's alerts are sent (user and group managers)", "notifications", ReceiverList,
              query=Page, errors=(400, 403)),
    Operation("POST", f"{API}/notifications/receivers", create_notification_receiver, "createNotificationReceiver",
              "Add an e-mail or webhook receiver; a webhook's generated secret is shown only here", "notifications",
              ReceiverCreated, body=ReceiverBody, status=201, errors=(403, 415, 422)),
    Operation("PUT", f"{API}/notifications/receivers/{{receiver_id}}", replace_notification_receiver,
              "replaceNotificationReceiver", "Replace a receiver's settings (a webhook keeps its secret if none is "
              "given)", "notifications", ReceiverOut, body=ReceiverBody, path_params=_RECEIVER_ID, errors=_W),
    Operation("DELETE", f"{API}/notifications/receivers/{{receiver_id}}", delete_notification_receiver,
              "deleteNotificationReceiver", "Remove a receiver", "notifications", Done, path_params=_RECEIVER_ID,
              errors=(400, 403, 404)),
    Operation("POST", f"{API}/notifications/receivers/{{receiver_id}}/test", probe_notification_receiver,
              "testNotificationReceiver", "Send a test message now (one attempt) and report the outcome",
              "notifications", ProbeResult, path_params=_RECEIVER_ID, errors=(400, 403, 404, 503)),
    Operation("GET", f"{API}/notifications/failures", list_failed_deliveries, "listFailedDeliveries",
              "Deliveries that failed after all retries, newest first", "notifications", FailureList,
              query=FailureQuery, errors=(400, 403)),
)

__all__ = ["NOTIFY_CHANNELS_KEY", "OPERATIONS", "SendChannels", "send_test"]
