"""Notification receivers: e-mail boxes and signed webhooks, with quiet hours; a test message to
any of them; a warning when e-mail receivers exist but this collector has no mail server."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import time
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from collector.accounts import company
from collector.accounts.rights import (
    Permission,
    authorize,
)
from collector.web.pages.render import PageError, page
from collector.web.pages.support import (
    SECTION_PATHS,
    SEVERITY_FLOORS,
    Handler,
    Invalid,
    as_caller,
    checked_form,
    int_field,
    section_render,
    section_with_error,
    tenant_users,
)
from collector.web.routing import now
from collector.web.shared.account_actions import audit_receiver_change
from collector.web.shared.accounts import (
    Caller,
)
from collector.web.shared.notify_test import NO_SMTP, NOTIFY_CHANNELS_KEY, send_test

# --- notification receivers ----------------------------------------------------------------------

NEW_SECRET_KEY = web.RequestKey("admin_new_secret", str)


def _receivers_module() -> Any:
    """``collector.notify.receivers`` when this collector has it and its table; else None."""
    try:
        from collector.notify import receivers
        from collector.notify.schema import notification_receivers
    except ImportError:
        return None
    return receivers, notification_receivers


def _notification_manager(conn: sa.Connection, who: Caller) -> None:
    # The rule of api.notifications: receivers decide who hears about what, so company-wide managers only.
    authorize(conn, who.actor, who.tenant_id, Permission.MANAGE_USERS, None)
    authorize(conn, who.actor, who.tenant_id, Permission.MANAGE_GROUPS, None)


@page
async def notifications_admin(request: web.Request) -> web.StreamResponse:
    found = _receivers_module()

    def work(conn: sa.Connection, who: Caller) -> dict[str, Any]:
        _notification_manager(conn, who)
        if found is None or not sa.inspect(conn).has_table(found[1].name):
            return {"configured": False, "receivers": [], "people": []}
        return {"configured": True, "receivers": found[0].list_receivers(conn, who.tenant_id),
                "people": tenant_users(conn, who), "company_zone": company.time_zone_name(conn, who.tenant_id)}

    context = await as_caller(request, work)
    channels = request.app.get(NOTIFY_CHANNELS_KEY)
    return section_render(request, "admin_notifications.html", {
        **context, "floors": SEVERITY_FLOORS, "new_secret": request.get(NEW_SECRET_KEY),
        "mail_ready": channels is not None and channels.smtp is not None, "can_test": channels is not None,
        "test_result": request.get(TEST_RESULT_KEY),
    })


def _clock_field(fields: Mapping[str, str], name: str) -> time | None:
    text = fields.get(name, "").strip()
    if not text:
        return None
    try:
        return time.fromisoformat(text)
    except ValueError:
        raise Invalid("receiver", "Тихие часы — время вида 22:00.") from None


@page
async def create_receiver(request: web.Request) -> web.StreamResponse:
    fields, at = await checked_form(request), now(request)
    found = _receivers_module()
    if found is None:
        raise PageError(503, "Уведомления не настроены на этом коллекторе.")
    receivers = found[0]
    channel = fields.get("channel", "")
    generated = secrets.token_urlsafe(32) if channel == "webhook" else None  # as api.notifications does

    def work(conn: sa.Connection, who: Caller) -> None:
        _notification_manager(conn, who)
        if channel not in ("email", "webhook"):
            raise Invalid("receiver", "Выберите канал: e-mail или вебхук.")
        floor = fields.get("quiet_floor", "") or None
        spec = receivers.ReceiverSpec(
            channel=channel, address=fields.get("address", "").strip()[:500],
            principal_user_id=int_field(fields, "principal_user_id", "receiver", "пользователя, чьи права действуют"),
            secret=generated, timezone=fields.get("timezone", "").strip() or company.time_zone_name(conn, who.tenant_id),
            quiet_start=_clock_field(fields, "quiet_start"), quiet_end=_clock_field(fields, "quiet_end"),
            quiet_floor=floor if floor in SEVERITY_FLOORS else None,
        )
        try:
            receiver_id = receivers.create_receiver(conn, who.tenant_id, spec, at=at)
        except receivers.ReceiverError as exc:
            raise Invalid("receiver", f"Получатель не добавлен ({exc}).") from None
        audit_receiver_change(conn, who, "notification_receiver.create", receiver_id, at, channel=channel, address=spec.address)

    try:
        await as_caller(request, work, write=True)
    except Invalid as invalid:
        return await section_with_error(request, notifications_admin, invalid.form, invalid.message)
    if generated is None:
        channels = request.app.get(NOTIFY_CHANNELS_KEY)
        mail_ready = channels is not None and channels.smtp is not None
        done = "receiver-created" if channel != "email" or mail_ready else "receiver-created-no-mail"
        raise web.HTTPSeeOther(f"/admin/notifications?done={done}")
    request[NEW_SECRET_KEY] = generated  # the webhook's signing secret, shown once on this answer
    return await notifications_admin(request)


@page
async def delete_receiver(request: web.Request) -> web.StreamResponse:
    fields, at = await checked_form(request), now(request)
    found = _receivers_module()
    if found is None:
        raise PageError(503, "Уведомления не настроены на этом коллекторе.")

    def work(conn: sa.Connection, who: Caller) -> bool:
        _notification_manager(conn, who)
        receiver_id = int_field(fields, "receiver_id", "receivers", "получателя")
        deleted = bool(found[0].delete_receiver(conn, who.tenant_id, receiver_id))
        if deleted:
                audit_receiver_change(conn, who, "notification_receiver.delete", receiver_id, at)
        return deleted

    try:
        deleted = await as_caller(request, work, write=True)
    except Invalid as invalid:
        return await section_with_error(request, notifications_admin, invalid.form, invalid.message)
    # Deleting is idempotent: a receiver already gone (or another company's) is simply not there.
    raise web.HTTPSeeOther(f"/admin/notifications?done={'receiver-deleted' if deleted else 'receiver-gone'}")


TEST_RESULT_KEY = web.RequestKey("admin_receiver_test", dict)


@page
async def test_receiver(request: web.Request) -> web.StreamResponse:
    """One test message now; the outcome is shown beside the receivers (nothing is stored)."""
    fields = await checked_form(request)
    found = _receivers_module()
    channels = request.app.get(NOTIFY_CHANNELS_KEY)

    def work(conn: sa.Connection, who: Caller) -> Any:
        _notification_manager(conn, who)
        receiver_id = int_field(fields, "receiver_id", "receivers", "получателя")
        receiver = None if found is None else found[0].load_receiver(conn, who.tenant_id, receiver_id)
        if receiver is None:
            raise PageError(404, "Такого получателя нет.")
        return receiver

    try:
        receiver = await as_caller(request, work)
    except Invalid as invalid:
        return await section_with_error(request, notifications_admin, invalid.form, invalid.message)
    if channels is None:
        raise PageError(503, "Этот процесс коллектора не отправляет уведомления.")
    delivered, error = await send_test(channels, receiver, now(request))
    if delivered:
        text = f"Тестовое сообщение отправлено: {receiver.address}. Проверьте, что оно пришло."
    elif error == NO_SMTP:
        text = (f"Тестовое письмо на {receiver.address} не отправлено: у коллектора не настроен почтовый сервер "
                "(SMTP, параметр [notify] smtp_host). Настройте его или используйте вебхук.")
    else:
        text = f"Тестовое сообщение на {receiver.address} не доставлено: {error or 'причина неизвестна'}."
    request[TEST_RESULT_KEY] = {"ok": delivered, "text": text}
    return await notifications_admin(request)


SECTION_PATHS[notifications_admin] = "/admin/notifications"

ROUTES: tuple[tuple[str, str, Handler, str], ...] = (
    ("GET", "/admin/notifications", notifications_admin, "page-admin-notifications"),
    ("POST", "/admin/notifications", create_receiver, "admin-receiver-create"),
    ("POST", "/admin/notifications/delete", delete_receiver, "admin-receiver-delete"),
    ("POST", "/admin/notifications/test", test_receiver, "admin-receiver-test"),
)
