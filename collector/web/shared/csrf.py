"""CSRF tokens for the pages' HTML forms.

``CsrfGuard`` is the interface the pages use; the accounts work can back it with real server
sessions (token = HMAC of the session id) by implementing the same three methods:

* ``token(request)``  — the token to put in this request's forms;
* ``verify(request, submitted)`` — whether a POSTed token belongs to the caller's session;
* ``bind(request, response)`` — persist whatever the token depends on (a cookie here; nothing for
  server sessions).

Until sessions exist, ``CookieCsrf`` uses a random per-browser seed in a ``SameSite=Strict``,
``HttpOnly`` cookie and signs (seed, user) with a server secret: a forged cross-site form cannot
read the cookie, so it cannot produce the token (the signed double-submit pattern).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web

from collector.security import PRINCIPAL_KEY

CSRF_FIELD = "csrf_token"
SEED_COOKIE = "kassa_csrf"
_NEW_SEED_KEY = web.RequestKey("csrf_new_seed", str)


class CsrfGuard(Protocol):
    def token(self, request: web.Request) -> str: ...

    def verify(self, request: web.Request, submitted: str | None) -> bool: ...

    def bind(self, request: web.Request, response: web.StreamResponse) -> None: ...


def _user(request: web.Request) -> str:
    principal = request.get(PRINCIPAL_KEY)
    return principal.user if principal is not None else ""


@dataclass(frozen=True)
class CookieCsrf:
    """Signed double-submit tokens; ``secret`` defaults to a random one per process (tokens then
    do not survive a restart, which only costs the user a form reload)."""

    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    secure_cookie: bool = False  # set True behind HTTPS

    def _seed(self, request: web.Request) -> str:
        seed = request.cookies.get(SEED_COOKIE)
        if seed and 16 <= len(seed) <= 128:
            return seed
        if _NEW_SEED_KEY not in request:
            request[_NEW_SEED_KEY] = secrets.token_urlsafe(24)
        return request[_NEW_SEED_KEY]

    def _sign(self, seed: str, user: str) -> str:
        return hmac.new(self.secret, f"{seed}\x00{user}".encode(), hashlib.sha256).hexdigest()

    def token(self, request: web.Request) -> str:
        return self._sign(self._seed(request), _user(request))

    def verify(self, request: web.Request, submitted: str | None) -> bool:
        seed = request.cookies.get(SEED_COOKIE)
        if not seed or not submitted:
            return False
        # Bytes: compare_digest refuses non-ASCII str, and a forged token must be a 403, not a 500.
        return hmac.compare_digest(
            self._sign(seed, _user(request)).encode(), submitted.encode(errors="replace")
        )

    def bind(self, request: web.Request, response: web.StreamResponse) -> None:
        seed = request.get(_NEW_SEED_KEY)
        if seed is not None:
            response.set_cookie(
                SEED_COOKIE, seed, httponly=True, samesite="Strict", secure=self.secure_cookie, path="/"
            )
