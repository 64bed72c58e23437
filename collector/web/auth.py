"""Who is calling, and what they may see: a middleware that resolves a ``Principal`` per request
(the type and the public-route markers are in ``collector.security``, below the web layer).

Until accounts exist there is one built-in admin scope. ``Authenticator`` is the seam the
accounts work replaces (sessions, per-user bearer tokens with grants): it gets the request and
returns the principal, or None when the credentials are missing or wrong.

* ``OpenAccess``: everyone is the demo admin (local demo only; the app logs a warning);
* ``StaticTokenAuth``: ``Authorization: Bearer <token>`` must equal the configured admin token.

Routes are private by default; those named public (health, metrics, the OpenAPI document, and
whatever another module declares with ``allow_anonymous``, e.g. a login page) skip authentication.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from collector.security import PRINCIPAL_KEY, PUBLIC_ROUTES_KEY, Authenticator, Principal
from collector.storage.scope import Scope
from collector.web.problems import Problem


@dataclass(frozen=True, slots=True)
class OpenAccess:
    """No credentials needed: every caller is the admin. For a local demo, never for production."""

    user: str = "demo"

    async def authenticate(self, request: web.Request) -> Principal | None:
        return Principal(user=self.user, scope=Scope.admin())


@dataclass(frozen=True, slots=True)
class StaticTokenAuth:
    """One shared admin bearer token (until per-user tokens exist)."""

    token: str
    user: str = "admin"

    def __post_init__(self) -> None:
        if len(self.token) < 16:
            raise ValueError("the admin API token must be at least 16 characters")

    async def authenticate(self, request: web.Request) -> Principal | None:
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not credentials:
            return None
        # Constant-time comparison: the token is a password.
        if not hmac.compare_digest(credentials.strip().encode(), self.token.encode()):
            return None
        return Principal(user=self.user, scope=Scope.admin())


AUTHENTICATOR_KEY = web.AppKey("authenticator", Authenticator)


def is_public(request: web.Request) -> bool:
    """Public routes, and no route at all (the router's own 404/405 answers)."""
    route = request.match_info.route
    return route.resource is None or route.name in request.app[PUBLIC_ROUTES_KEY]


@web.middleware
async def auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if is_public(request):
        return await handler(request)
    principal = await request.app[AUTHENTICATOR_KEY].authenticate(request)
    if principal is None:
        raise Problem(
            401,
            "unauthorized",
            "Unauthorized",
            "send Authorization: Bearer <token>",
            headers={"WWW-Authenticate": 'Bearer realm="kassa-monitor"'},
        )
    request[PRINCIPAL_KEY] = principal
    return await handler(request)


def principal_of(request: web.Request) -> Principal:
    return request[PRINCIPAL_KEY]


def require_admin(request: web.Request) -> Principal:
    principal = principal_of(request)
    if not principal.is_admin:
        raise Problem(403, "forbidden", "Forbidden", "only an administrator may see this")
    return principal
