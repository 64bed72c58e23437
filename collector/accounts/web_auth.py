"""The accounts ``Authenticator`` for ``collector.web``: API bearer tokens and session cookies
resolve to a ``Principal`` whose scopes come from the user's grants (replacing the admin scope).

* ``Authorization: Bearer km_…`` — an API token (``kassa-collector token create``);
* the session cookie — unsafe methods (POST, PUT, PATCH, DELETE) also need the session's CSRF
  secret in ``X-CSRF-Token``, so another site cannot ride on the browser's cookie.

The database work runs in a worker thread; the event loop never blocks on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from aiohttp import web

from collector.accounts.rights import Permission, scope_for
from collector.accounts.sessions import authenticate_api_token, validate_session
from collector.security import Principal
from collector.storage.engine import begin_write

SESSION_COOKIE = "kassa_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
USER_ID_KEY = web.RequestKey("account_user_id", int)  # for handlers that check finer permissions


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AccountsAuth:
    def __init__(
        self,
        engine: sa.Engine,
        *,
        cookie_name: str = SESSION_COOKIE,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._engine = engine
        self._cookie_name = cookie_name
        self._clock = clock

    async def authenticate(self, request: web.Request) -> Principal | None:
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        bearer = credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else None
        cookie = request.cookies.get(self._cookie_name)
        csrf = None if request.method in SAFE_METHODS else request.headers.get(CSRF_HEADER, "")
        resolved = await asyncio.to_thread(self.resolve, bearer, cookie, csrf)
        if resolved is None:
            return None
        user_id, principal = resolved
        request[USER_ID_KEY] = user_id
        return principal

    def resolve(
        self, bearer: str | None, cookie: str | None, csrf: str | None
    ) -> tuple[int, Principal] | None:
        """``csrf`` None: a safe method (no check); otherwise the header value to check."""
        now = self._clock()
        with begin_write(self._engine) as conn:  # a token lookup records last_used_at
            if bearer is not None:
                token = authenticate_api_token(conn, bearer, at=now)
                return (
                    None if token is None else (token.user_id, _principal(conn, token.user_id, token.email))
                )
            if cookie:
                session = validate_session(conn, cookie, at=now)
                if session is None or (csrf is not None and not session.csrf_ok(csrf)):
                    return None
                return session.user_id, _principal(conn, session.user_id, session.email)
        return None


def _principal(conn: sa.Connection, user_id: int, email: str) -> Principal:
    return Principal(
        user=email,
        scope=scope_for(conn, user_id),
        action_scope=scope_for(conn, user_id, Permission.ACKNOWLEDGE),
    )
