"""What the accounts endpoints and the account pages share: session authentication and its form
token, the caller as an account user, one transaction per request
with account e-mails held back until it commits, accounts refusals as problem details, and a
per-address rate limit for the anonymous endpoints (login, sign-up, password reset).
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import hmac
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import sqlalchemy as sa
from aiohttp import web
from pydantic import BaseModel

from collector.accounts.audit import Actor
from collector.accounts.errors import (
    AccountLocked,
    AccountsError,
    AuthenticationFailed,
    Conflict,
    EmailNotConfirmed,
    InvalidInput,
    KepRequired,
    NotFound,
    PermissionDenied,
    TokenInvalid,
)
from collector.accounts.inn import InvalidNumber
from collector.accounts.passwords import WeakPassword
from collector.accounts.rights import Permission, can, user_tenant
from collector.accounts.secrets_util import same_secret
from collector.accounts.service import AccountService, Mailer
from collector.accounts.web_auth import CSRF_HEADER, SAFE_METHODS, SESSION_COOKIE, USER_ID_KEY, AccountsAuth
from collector.security import Principal
from collector.storage.engine import begin_write
from collector.web.problems import Problem
from collector.web.routing import ENGINE_KEY, json_response
from collector.web.shared.csrf import CSRF_FIELD

log = logging.getLogger(__name__)
ResultT = TypeVar("ResultT")

# --- mail after commit ---------------------------------------------------------------------------

_OUTBOX: contextvars.ContextVar[list[tuple[str, str, str]] | None] = contextvars.ContextVar(
    "account_mail_outbox", default=None
)


@dataclass(frozen=True, slots=True)
class DeferredMailer:
    """The ``Mailer`` given to ``AccountService``: inside ``run_in_transaction`` it only queues,
    so a link is never mailed for a change that is then rolled back; outside it sends at once."""

    real: Mailer

    def send(self, to: str, subject: str, text: str) -> None:
        outbox = _OUTBOX.get()
        if outbox is None:
            self.real.send(to, subject, text)
        else:
            outbox.append((to, subject, text))


@dataclass(frozen=True, slots=True)
class LogMailer:
    """The default when no SMTP mailer is configured (local demo): the message goes to the log."""

    def send(self, to: str, subject: str, text: str) -> None:
        log.warning("account mail to %s: %s\n%s", to, subject, text)


class AccountsWeb:
    """The accounts side of the web app: the flows (built on first use, since the default password
    hasher costs a deliberate ~0.1 s), the cookie policy and the rate limiter."""

    def __init__(
        self,
        service: AccountService | Callable[[], AccountService],
        *,
        cookie_secure: bool = True,  # False only for plain-HTTP localhost (the demo)
        limiter: RateLimiter | None = None,
    ) -> None:
        self._service = service
        self.cookie_secure = cookie_secure
        self.limiter = limiter or RateLimiter()

    @property
    def service(self) -> AccountService:
        if not isinstance(self._service, AccountService):
            self._service = self._service()
        if not isinstance(self._service.mailer, DeferredMailer):
            # Mail only after commit: a link to a rolled-back change must never go out.
            self._service.mailer = DeferredMailer(self._service.mailer)
        return self._service


ACCOUNTS_WEB_KEY = web.AppKey("accounts_web", AccountsWeb)


async def run_in_transaction(
    request: web.Request, work: Callable[[sa.Connection], ResultT], *, write: bool = True
) -> ResultT:
    """``work`` in one transaction in a worker thread (``write``: committed, and its e-mails go
    out after the commit; else rolled back). Accounts refusals become problem details; on any
    error nothing is written and nothing mailed.
    """
    engine = request.app[ENGINE_KEY]
    mailer = request.app[ACCOUNTS_WEB_KEY].service.mailer
    real = mailer.real if isinstance(mailer, DeferredMailer) else mailer

    def run() -> ResultT:
        outbox: list[tuple[str, str, str]] = []
        marker = _OUTBOX.set(outbox)
        try:
            if write:
                with begin_write(engine) as conn:
                    result = work(conn)
            else:
                with engine.connect() as conn:
                    result = work(conn)
        finally:
            _OUTBOX.reset(marker)
        for to, subject, text in outbox:
            try:
                real.send(to, subject, text)
            except Exception:  # the change is committed; a lost mail is logged, the user may ask again
                log.exception("account mail to %s (%s) not sent", to, subject)
        return result

    try:
        return await asyncio.to_thread(run)
    except (AccountsError, InvalidNumber, WeakPassword) as exc:
        raise as_problem(exc, request) from None


_STATUSES: tuple[tuple[type[Exception], int, str, str], ...] = (
    (NotFound, 404, "not-found", "Not found"),
    (PermissionDenied, 403, "forbidden", "Forbidden"),
    (Conflict, 409, "conflict", "Conflict"),
    (KepRequired, 409, "kep-required", "A valid КЭП is required"),
    (TokenInvalid, 400, "link-invalid", "Link invalid, used or expired"),
    (AuthenticationFailed, 401, "login-failed", "Wrong e-mail or password"),
    (EmailNotConfirmed, 403, "email-not-confirmed", "E-mail not confirmed"),
    (InvalidInput, 422, "invalid-input", "Invalid input"),
    (InvalidNumber, 422, "invalid-input", "Invalid input"),
    (WeakPassword, 422, "weak-password", "Password does not meet the policy"),
)


def as_problem(exc: Exception, request: web.Request) -> Problem:
    if isinstance(exc, AccountLocked):
        retry = str(exc.retry_after_seconds)
        return Problem(429, "locked", "Too many attempts", str(exc), headers={"Retry-After": retry})
    for kind, status, slug, title in _STATUSES:
        if isinstance(exc, kind):
            return Problem(status, slug, title, str(exc), ru=getattr(exc, "ru", None))
    return Problem(400, "refused", "Refused", str(exc))


# --- authentication ------------------------------------------------------------------------------


FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


def form_token(session_cookie: str) -> str:
    """The pages' form token of a session: a keyed hash of the cookie value. Another site can
    neither read the HttpOnly cookie nor invert the hash, so it cannot forge the token; no server
    state or per-process secret is involved, so every web process agrees on it."""
    return hmac.new(b"kassa-monitor form token", session_cookie.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class SessionCsrf:
    """The pages' ``CsrfGuard`` under accounts: forms carry ``form_token`` of the session cookie.

    A request authenticated by a bearer token needs none: browsers never attach that header on
    their own, so there is nothing for another site to ride on.
    """

    cookie_name: str = SESSION_COOKIE

    def token(self, request: web.Request) -> str:
        cookie = request.cookies.get(self.cookie_name)
        return form_token(cookie) if cookie else ""

    def verify(self, request: web.Request, submitted: str | None) -> bool:
        if "Authorization" in request.headers:
            return True
        cookie = request.cookies.get(self.cookie_name)
        return bool(cookie and submitted) and same_secret(form_token(cookie or ""), submitted or "")

    def bind(self, request: web.Request, response: web.StreamResponse) -> None:
        return None  # the token depends on the session cookie alone


class SessionAuth:
    """``AccountsAuth`` for the API and the pages together.

    A cookie-authenticated write needs the session's CSRF secret in ``X-CSRF-Token`` (API clients)
    or, for an HTML form, the ``form_token`` in its ``csrf_token`` field (forms cannot send
    headers). A live session without either is refused as such (403), not as "log in" (401).
    """

    def __init__(self, inner: AccountsAuth) -> None:
        self.inner = inner

    async def authenticate(self, request: web.Request) -> Principal | None:
        principal = await self.inner.authenticate(request)
        cookie = request.cookies.get(SESSION_COOKIE)
        if principal is not None or request.method in SAFE_METHODS or not cookie:
            return principal
        if "Authorization" in request.headers:
            return None  # a wrong bearer token is a 401 whatever the cookie says
        if request.content_type in FORM_TYPES:
            submitted = (await request.post()).get(CSRF_FIELD)  # aiohttp keeps it for the handler
            if isinstance(submitted, str) and same_secret(form_token(cookie), submitted):
                resolved = await asyncio.to_thread(self.inner.resolve, None, cookie, None)
                if resolved is None:
                    return None
                request[USER_ID_KEY] = resolved[0]
                return resolved[1]
        if await asyncio.to_thread(self.inner.resolve, None, cookie, None) is None:
            return None
        raise Problem(
            403,
            "csrf-token-invalid",
            "CSRF token missing or wrong",
            f"send the CSRF token returned by login in the {CSRF_HEADER} header",
        )


# --- the caller ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Caller:
    user_id: int
    tenant_id: int
    actor: Actor


def account_user_id(request: web.Request) -> int:
    """The account behind the request; the admin token or open mode has none."""
    if USER_ID_KEY not in request:
        raise Problem(
            403, "account-required", "Account required", "this endpoint acts for a user account (web_auth=accounts)"
        )
    return request[USER_ID_KEY]


def caller(conn: sa.Connection, user_id: int) -> Caller:
    return Caller(user_id, user_tenant(conn, user_id), Actor.user(conn, user_id))


async def answer_as_caller(
    request: web.Request,
    work: Callable[[sa.Connection, Caller], BaseModel],
    *,
    write: bool = True,
    status: int = 200,
) -> web.Response:
    """The usual endpoint: ``work`` for the calling account in one transaction, its model answered."""
    user_id = account_user_id(request)

    def run(conn: sa.Connection) -> BaseModel:
        return work(conn, caller(conn, user_id))

    return json_response(await run_in_transaction(request, run, write=write), status=status)


def require_visible(conn: sa.Connection, who: Caller, target: int | str) -> None:
    """404 for a node or register the caller cannot see (or another tenant's): existence is not
    revealed; a visible target without the needed permission is a 403 from ``authorize``."""
    if not can(conn, who.user_id, Permission.VIEW, target):
        kind = "register" if isinstance(target, str) else "node"
        raise NotFound(f"{kind} {target!r} does not exist or is outside your scope")


# --- rate limiting -------------------------------------------------------------------------------


class RateLimiter:
    """At most ``limit`` requests per ``window`` seconds per (bucket, client address).

    In-process: each web process counts its own, which bounds guessing per process; the login
    flow's database-backed per-address and per-(e-mail, address) throttling holds across processes.
    """

    def __init__(self, limit: int = 10, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._hits: dict[tuple[str, str], deque[float]] = {}

    def check(self, bucket: str, address: str) -> None:
        now = self._clock()
        hits = self._hits.setdefault((bucket, address), deque())
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            retry = max(1, math.ceil(hits[0] + self.window - now))
            raise Problem(
                429,
                "rate-limited",
                "Too many requests",
                f"too many {bucket} attempts from your address; try again in {retry} s",
                headers={"Retry-After": str(retry)},
            )
        hits.append(now)
        if len(self._hits) > 10_000:  # forget idle addresses so the table cannot grow without bound
            for key in [k for k, v in self._hits.items() if not v or v[-1] <= now - self.window]:
                del self._hits[key]


def client_address(request: web.Request) -> str:
    # The peer address only: X-Forwarded-For is client-controlled unless a trusted proxy sets it.
    return request.remote or "unknown"


def throttle(request: web.Request, bucket: str) -> None:
    request.app[ACCOUNTS_WEB_KEY].limiter.check(bucket, client_address(request))
