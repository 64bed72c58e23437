"""A browser login for the demo until the collector's own login page exists: ``GET /login`` shows
an e-mail/password form, ``POST /login`` logs in exactly like ``POST /api/v1/auth/login`` (the
app's own ``AccountService`` and rate limiter: argon2, lockout, throttling) and sets the same
session cookie. Page requests that come back 401 are redirected here.

Only mounted by ``demo.web`` when the app has no ``/login`` of its own.
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web

from collector.accounts.errors import AccountsError
from collector.accounts.web_auth import SESSION_COOKIE
from collector.web.accounts_support import ACCOUNTS_WEB_KEY, client_address, throttle
from collector.web.auth import allow_anonymous
from collector.web.problems import Problem
from collector.web.routing import ENGINE_KEY

LOGIN_PATH = "/login"
LOGIN_ROUTES = ("demo-login-form", "demo-login")
NOT_PAGES = ("/api/", "/events/")  # machine clients get the 401 itself
_FORM = """<!doctype html>
<html lang="ru"><head><meta charset="utf-8"><title>Вход — Мониторинг касс (демо)</title>
<style>body{{font-family:sans-serif;max-width:26rem;margin:4rem auto}}label,input,button{{display:block;width:100%;margin:.4rem 0}}
.error{{color:#b00020}}</style></head>
<body><h1>Мониторинг касс — демо</h1>
<p>Логины и пароли демо напечатаны в терминале, где запущен <code>make demo</code>.</p>
{error}<form method="post" action="/login">
<label>E-mail <input name="email" type="email" value="{email}" required autofocus></label>
<label>Пароль <input name="password" type="password" required></label>
<button type="submit">Войти</button></form></body></html>"""


def _form(email: str = "", error: str = "", status: int = 200) -> web.Response:
    block = f'<p class="error" role="alert">{html.escape(error)}</p>\n' if error else ""
    body = _FORM.format(error=block, email=html.escape(email, quote=True))
    return web.Response(text=body, content_type="text/html", status=status)


def add_login(app: web.Application) -> None:
    async def show(request: web.Request) -> web.Response:
        return _form()

    async def submit(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        email, password = str(form.get("email", "")), str(form.get("password", ""))
        try:
            throttle(request, "login")
            session = await asyncio.to_thread(
                request.app[ACCOUNTS_WEB_KEY].service.login,
                request.app[ENGINE_KEY],
                email=email,
                password=password,
                ip=client_address(request),
                at=datetime.now(UTC),
                previous_session=request.cookies.get(SESSION_COOKIE),
            )
        except AccountsError as exc:
            return _form(email, str(exc), status=401)
        except Problem as exc:  # throttled
            return _form(email, exc.body.detail, status=exc.body.status)
        response = web.HTTPSeeOther("/")
        response.set_cookie(SESSION_COOKIE, session.token, httponly=True, samesite="Lax", path="/")
        return response

    app.router.add_get(LOGIN_PATH, show, name=LOGIN_ROUTES[0])
    app.router.add_post(LOGIN_PATH, submit, name=LOGIN_ROUTES[1])
    allow_anonymous(app, *LOGIN_ROUTES)
    # Outermost, so it sees the 401 the auth middleware's problem answer became.
    app.middlewares.insert(0, _redirect_pages_to_login)


@web.middleware
async def _redirect_pages_to_login(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    response = await handler(request)
    if response.status == 401 and request.method == "GET" and not request.path.startswith(NOT_PAGES):
        raise web.HTTPSeeOther(LOGIN_PATH)
    return response
