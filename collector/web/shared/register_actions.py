"""What the API and the pages share about remote actions: the hook that wakes the collector's
dispatcher once a request is committed (so the command leaves at once, not at the next tick),
and a request run as the calling account."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from collector.actions import store
from collector.web.shared.accounts import Caller, require_visible
from protocol.mqtt.actions import ActionName

ACTION_REQUESTED_KEY: web.AppKey[Callable[[], None]] = web.AppKey("action_requested")


def announce_requested(request: web.Request) -> None:
    """Wake the dispatcher (when this process runs one; otherwise its next tick sends the command)."""
    hook = request.app.get(ACTION_REQUESTED_KEY)
    if hook is not None:
        hook()


def request_as(
    conn: sa.Connection, who: Caller, register_id: str, action: ActionName, at: datetime,
    args: dict[str, Any] | None = None,
) -> store.ActionRow:
    """404 for a register the caller cannot see, 403 without the right, 409 when it cannot run now."""
    require_visible(conn, who, register_id)
    return store.request_action(conn, who.actor, who.tenant_id, register_id, action, at, args=args)
