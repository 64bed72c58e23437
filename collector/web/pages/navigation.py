"""Mounting the account and administration pages, and what every logged-in page learns: whether
to link to the administration, the company banner (the КЭП running out), the register page's
signed actions — and the redirect of a browser that is not logged in to the login page.

It sits above ``accounts`` and ``admin`` (it mounts both); no page module imports it.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp_jinja2
import sqlalchemy as sa
from aiohttp import web
from aiohttp.web_exceptions import NotAppKeyWarning

from collector.accounts import kep_alerts
from collector.accounts.audit import Actor
from collector.accounts.errors import NotFound, PermissionDenied
from collector.accounts.rights import user_tenant
from collector.accounts.web_auth import USER_ID_KEY
from collector.security import allow_anonymous
from collector.web.auth import principal_of
from collector.web.pages.accounts import PUBLIC_CSRF_KEY, PUBLIC_FORM_KEY, PUBLIC_PAGES, logout_submit
from collector.web.pages.admin import ADMIN_ROUTES
from collector.web.pages.admin.remote_actions import actions_panel, may_close_shifts
from collector.web.pages.admin.signed import signed_actions
from collector.web.pages.render import CSRF_KEY
from collector.web.pages.support import KEP_STATES, admin_sections, enroll_command, see_other
from collector.web.routing import ENGINE_KEY, now
from collector.web.shared.accounts import ACCOUNTS_WEB_KEY
from collector.web.shared.csrf import CookieCsrf

_MOUNTED_KEY = web.AppKey("account_pages_mounted", bool)


NOT_PAGES = ("/api/", "/events/", "/static/")  # machine clients get the 401 itself


def _company_banner(conn: sa.Connection, user_id: int) -> list[kep_alerts.CompanyAlert]:
    """Active company-level alerts (the КЭП running out), on every page of those who handle them."""
    try:
        return kep_alerts.company_alerts(conn, Actor.user(conn, user_id), user_tenant(conn, user_id), active_only=True)
    except (PermissionDenied, NotFound):
        return []


@web.middleware
async def account_navigation(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Pages (and forms that may re-render one) learn whether to link to the administration and to offer a logout button."""
    name = request.match_info.route.name or ""
    user_id = request.get(USER_ID_KEY)
    # A form POST that fails re-renders its page (the refusal beside the form), so it needs the
    # same header as the GET: «Управление» and «Выйти» must not vanish after a failed form.
    renders_page = name.startswith("page-") or (request.method == "POST" and not request.path.startswith(NOT_PAGES))
    if renders_page and user_id is not None:
        engine = request.app[ENGINE_KEY]

        register_id = request.match_info.get("register_id") if name == "page-register" else None
        at = now(request)

        scope = principal_of(request).scope

        def navigation() -> tuple[list[tuple[str, str]], list[kep_alerts.CompanyAlert], Any, Any, bool]:
            with engine.connect() as conn:
                actions = None if register_id is None else signed_actions(conn, user_id, register_id, at)
                remote = None if register_id is None else actions_panel(conn, user_id, scope, register_id)
                closing = name == "page-tree" and may_close_shifts(conn, user_id)
                return admin_sections(conn, user_id), _company_banner(conn, user_id), actions, remote, closing

        sections, banner, actions, remote, closing = await asyncio.to_thread(navigation)
        extra = {
            "admin_nav": bool(sections),
            "admin_paths": [path for path, _ in sections],  # what the onboarding steps may link to
            "enroll_example": enroll_command(request, "ТОКЕН"),
            "logout_form": bool(request.app[CSRF_KEY].token(request)),
            "company_alerts": banner,
            "signed_actions": actions,
            "signed_done": request.query.get("done", ""),
            "remote_actions": remote,
            "may_close_shifts": closing,
            "kep_states": KEP_STATES,
        }
        with warnings.catch_warnings():  # aiohttp-jinja2's own per-request context slot has a str key
            warnings.simplefilter("ignore", NotAppKeyWarning)
            request[aiohttp_jinja2.REQUEST_CONTEXT_KEY] = extra
    return await handler(request)


@web.middleware
async def redirect_to_login(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A browser (it asks for HTML) that is not logged in is sent to the login page, and back after."""
    wants_page = "text/html" in request.headers.get("Accept", "") and not request.path.startswith(NOT_PAGES)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status == 401 and wants_page:
            raise _to_login(request) from None
        raise
    if response.status == 401 and wants_page:
        raise _to_login(request)
    return response


def _to_login(request: web.Request) -> web.HTTPSeeOther:
    return see_other("/login", next=request.path_qs if request.method == "GET" else "/")


def add_account_pages(app: web.Application) -> None:
    """Mount the account and administration pages; call after ``add_page_routes``. Calling it
    again on the same app does nothing (so tests may call it whether or not ``create_app`` did)."""
    if app.get(_MOUNTED_KEY):
        return
    app[_MOUNTED_KEY] = True
    app[PUBLIC_CSRF_KEY] = CookieCsrf(secret=PUBLIC_FORM_KEY, secure_cookie=app[ACCOUNTS_WEB_KEY].cookie_secure)
    for method, path, handler, name in (*PUBLIC_PAGES, *ADMIN_ROUTES):
        app.router.add_route(method, path, handler, name=name)
    allow_anonymous(app, *(name for *_, name in PUBLIC_PAGES))
    app.router.add_post("/logout", logout_submit, name="account-logout")
    app.middlewares.insert(0, redirect_to_login)  # outermost: it sees the auth middleware's 401
    app.middlewares.append(account_navigation)  # innermost: after authentication
