"""Who is calling, below the web layer: the ``Principal`` a request resolves to, the seam that
resolves it (``Authenticator``), and the markers of routes reachable without credentials.

They live here, not in ``collector.web``, so the packages that authenticate or add routes
(``accounts.web_auth``, ``enrollment.http``) do not import the web layer that imports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from collector.storage.scope import Scope


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: a name for audit trails (alert history), the scope every query filters by, and
    where they may act on alerts (acknowledge, comment, silence) — None: wherever they can see."""

    user: str
    scope: Scope
    action_scope: Scope | None = None

    @property
    def is_admin(self) -> bool:
        return self.scope.is_admin


class Authenticator(Protocol):
    async def authenticate(self, request: web.Request) -> Principal | None: ...


PRINCIPAL_KEY = web.RequestKey("principal", Principal)
PUBLIC_ROUTES_KEY = web.AppKey("public_routes", set[str])


def allow_anonymous(app: web.Application, *route_names: str) -> None:
    """Declare named routes reachable without credentials (call before the app starts)."""
    app[PUBLIC_ROUTES_KEY].update(route_names)
