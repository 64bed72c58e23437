"""Server-rendered pages (Jinja2), their static assets and the live SSE stream.

* monitoring — ``monitoring`` (dashboard, tree, register list and page, alerts, alert actions),
  ``data`` (their scoped reads), ``feeds`` + ``sse`` (the live stream), ``render`` (templates,
  time zones, errors as pages);
* accounts — ``accounts`` (log in and out, sign-up, e-mail links);
* administration — ``admin/``, one module per section;
* ``support`` — what pages share (checked forms, Russian refusals, running work as the caller);
  it imports no page module; ``navigation`` mounts accounts and administration.

Wiring (the service owns one ``EventHub`` and hands it to both sides)::

    hub = EventHub()
    add_page_routes(app, hub=hub)                           # in create_app, after the API routes
    on_changed = register_change_feed(engine, hub)          # beside the evaluator's on_changed
    notify = alert_notice_feed(engine, hub, then=notifier)  # the AlertEngine's notify

Pages and ``/events/stream`` go through the app's auth middleware like the API; ``/static`` is
public. ``csrf`` and ``time_zone_of`` are the seams the accounts work fills (real sessions, the
tenant's time zone); the defaults are signed cookies and Europe/Moscow.
"""

from __future__ import annotations

from datetime import tzinfo
from pathlib import Path

from aiohttp import web

from collector.security import Principal, allow_anonymous
from collector.web.pages import monitoring
from collector.web.pages.feeds import alert_notice_feed, register_change_feed
from collector.web.pages.render import (
    CSRF_KEY,
    STATIC_ROUTE,
    TIME_ZONE_KEY,
    TimeZoneOf,
    setup_templates,
)
from collector.web.pages.sse import EVENT_HUB_KEY, HEARTBEAT_KEY, EventHub, event_stream
from collector.web.shared.csrf import CookieCsrf, CsrfGuard
from collector.web.shared.zones import DEFAULT_TIME_ZONE

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

__all__ = [
    "EVENT_HUB_KEY",
    "CookieCsrf",
    "CsrfGuard",
    "EventHub",
    "add_page_routes",
    "alert_notice_feed",
    "register_change_feed",
]


def _default_time_zone(_principal: Principal) -> tzinfo:
    return DEFAULT_TIME_ZONE


def add_page_routes(
    app: web.Application,
    *,
    hub: EventHub | None = None,
    csrf: CsrfGuard | None = None,
    time_zone_of: TimeZoneOf | None = None,
    heartbeat_seconds: float = 15.0,
) -> EventHub:
    """Register the pages on ``app``; returns the event hub the collector publishes to."""
    event_hub = hub or EventHub()
    app[EVENT_HUB_KEY] = event_hub
    app[HEARTBEAT_KEY] = heartbeat_seconds
    app[CSRF_KEY] = csrf or CookieCsrf()
    app[TIME_ZONE_KEY] = time_zone_of or _default_time_zone
    setup_templates(app)

    router = app.router
    router.add_get("/", monitoring.dashboard, name="page-dashboard")
    router.add_get("/tree", monitoring.tree_page, name="page-tree")
    router.add_get("/registers", monitoring.registers_page, name="page-registers")
    router.add_get("/registers/{register_id}", monitoring.register_page, name="page-register")
    router.add_get("/alerts", monitoring.alerts_page, name="page-alerts")
    router.add_post("/alerts/ack", monitoring.acknowledge_many, name="page-alerts-ack")
    router.add_post("/alerts/{alert_id}/ack", monitoring.acknowledge, name="page-alert-ack")
    router.add_post("/alerts/{alert_id}/comment", monitoring.comment, name="page-alert-comment")
    router.add_post("/alerts/{alert_id}/silence", monitoring.silence, name="page-alert-silence")
    router.add_get("/events/stream", event_stream, name="events-stream")
    router.add_static("/static/", STATIC_DIR, name=STATIC_ROUTE, append_version=True)

    allow_anonymous(app, STATIC_ROUTE)

    async def end_streams(_app: web.Application) -> None:
        event_hub.close()

    app.on_shutdown.append(end_streams)
    return event_hub
