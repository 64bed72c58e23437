"""The collector's aiohttp application: JSON API, OpenAPI document, health and metrics.

``create_app(config)`` accepts the service's ``CollectorConfig`` (or ``WebSettings``). The web
settings it needs are read from the config by name, so the config can grow them without this
module changing: ``db_url``, ``web_auth`` (``"accounts"``, ``"token"`` or ``"open"``), ``api_token``
(bearer token of the built-in admin), ``cookie_secure`` and ``public_url`` (links in account
e-mails). Without ``web_auth``: token mode when a token is set (as before), else accounts — users'
own sessions and API tokens scoped by their grants — which needs the accounts tables (migrated).
The accounts API (sign-up, login, tree, groups, grants, contracts, КЭП, audit) is always routed;
the enrollment API when an ``EnrollmentService`` is given.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from aiohttp import web
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ConfigDict, SecretStr

from collector.accounts.schema import users
from collector.accounts.service import AccountService, AccountSettings
from collector.accounts.web_auth import AccountsAuth
from collector.enrollment.service import EnrollmentService
from collector.security import PUBLIC_ROUTES_KEY, Authenticator
from collector.storage import create_engine_from_url
from collector.web.api import add_api_routes
from collector.web.api.ops import (
    BROKER_READY_KEY,
    INGEST_READY_KEY,
    METRICS_KEY,
    BrokerReadiness,
    IngestReadiness,
    http_metrics_for,
    metrics_middleware,
)
from collector.web.auth import AUTHENTICATOR_KEY, OpenAccess, StaticTokenAuth, auth_middleware
from collector.web.input_guard import input_guard_middleware
from collector.web.pages import EventHub, add_page_routes
from collector.web.pages.navigation import add_account_pages
from collector.web.problems import problem_middleware
from collector.web.routing import CLOCK_KEY, ENGINE_KEY, OPERATIONS_KEY
from collector.web.security_headers import add_security_headers
from collector.web.shared.accounts import ACCOUNTS_WEB_KEY, AccountsWeb, LogMailer, SessionAuth, SessionCsrf
from collector.web.shared.register_actions import ACTION_REQUESTED_KEY
from collector.web.shared.zones import TENANT_ZONES_KEY, TenantZones

log = logging.getLogger(__name__)

# The largest body: a 5 MB upload (a КЭП document scan, a CSV import) plus the form around it.
MAX_BODY_BYTES = 6 * 1024 * 1024


class WebSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    db_url: str = "sqlite:///collector.db"
    web_auth: Literal["accounts", "token", "open"] | None = None
    api_token: str | None = None
    cookie_secure: bool = True  # the session cookie's Secure flag; off only for plain-HTTP localhost
    public_url: str = "http://localhost:8080"  # base of the links in account e-mails

    @classmethod
    def from_config(cls, config: Any) -> WebSettings:
        if isinstance(config, WebSettings):
            return config
        token: Any = getattr(config, "api_token", None)
        if isinstance(token, SecretStr):  # how the service config may hold it
            token = token.get_secret_value()
        defaults = {name: field.default for name, field in cls.model_fields.items()}
        return cls(
            db_url=getattr(config, "db_url", defaults["db_url"]),
            web_auth=getattr(config, "web_auth", None),
            api_token=token,
            cookie_secure=getattr(config, "cookie_secure", defaults["cookie_secure"]),
            public_url=getattr(config, "public_url", None) or defaults["public_url"],
        )

    def authenticator(self, engine: sa.Engine | None = None, clock: Callable[[], datetime] | None = None) -> Authenticator:
        mode = self.web_auth or ("token" if self.api_token else "accounts")
        if mode == "accounts":
            return _accounts_auth(engine, clock or _utc_now)
        if mode == "open":
            log.warning("web API in open mode: every caller is an administrator (demo only)")
            return OpenAccess()
        if not self.api_token:
            raise ValueError("web_auth=token needs api_token")
        return StaticTokenAuth(self.api_token)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _accounts_auth(engine: sa.Engine | None, clock: Callable[[], datetime]) -> Authenticator:
    if engine is None:
        raise ValueError("web_auth=accounts needs the database engine")
    if not sa.inspect(engine).has_table(users.name):
        # Never fall back to open access silently: a forgotten migration must not expose the fleet.
        raise ValueError(
            "web_auth=accounts needs the accounts tables: run `kassa-collector migrate`, "
            "or choose web_auth = 'token' (with api_token) or 'open' (local demo only)"
        )
    return SessionAuth(AccountsAuth(engine, clock=clock))


def _default_account_service(settings: WebSettings) -> AccountService:
    log.warning("no account mailer configured: account e-mails (with their links) are written to the log")
    return AccountService(LogMailer(), settings=AccountSettings(base_url=settings.public_url.rstrip("/")))


def create_app(
    config: Any,
    *,
    engine: sa.Engine | None = None,
    metrics_registry: CollectorRegistry | None = None,
    broker_ready: BrokerReadiness | None = None,
    ingest_ready: IngestReadiness | None = None,
    authenticator: Authenticator | None = None,
    clock: Callable[[], datetime] = _utc_now,
    event_hub: EventHub | None = None,
    pages: bool = True,
    account_service: AccountService | None = None,
    enrollment: EnrollmentService | None = None,
    action_requested: Callable[[], None] | None = None,
) -> web.Application:
    """Build the app. Without ``engine`` it opens one on ``config.db_url`` and disposes of it on
    cleanup; ``broker_ready`` and ``ingest_ready`` feed ``/readyz``; ``authenticator`` replaces the config's choice;
    ``account_service`` carries the mailer of account e-mails (default: the log, built on first
    use); ``enrollment`` adds the enrollment endpoints; ``action_requested`` wakes the collector's
    action dispatcher after a remote action is requested."""
    settings = WebSettings.from_config(config)
    app = web.Application(
        middlewares=[metrics_middleware, problem_middleware, input_guard_middleware, auth_middleware],
        client_max_size=MAX_BODY_BYTES,
    )
    add_security_headers(app)
    app[CLOCK_KEY] = clock
    app[METRICS_KEY] = http_metrics_for(metrics_registry or CollectorRegistry())
    if broker_ready is not None:
        app[BROKER_READY_KEY] = broker_ready
    if ingest_ready is not None:
        app[INGEST_READY_KEY] = ingest_ready
    if engine is None:
        owned = create_engine_from_url(settings.db_url)
        app[ENGINE_KEY] = owned
        app.cleanup_ctx.append(_dispose_on_cleanup(owned))
    else:
        app[ENGINE_KEY] = engine
    chosen = authenticator or settings.authenticator(app[ENGINE_KEY], clock)
    if isinstance(chosen, AccountsAuth):
        chosen = SessionAuth(chosen)  # so cookie sessions also work for the pages' forms
    app[AUTHENTICATOR_KEY] = chosen
    app[ACCOUNTS_WEB_KEY] = AccountsWeb(
        account_service or (lambda: _default_account_service(settings)), cookie_secure=settings.cookie_secure
    )
    if action_requested is not None:
        app[ACTION_REQUESTED_KEY] = action_requested
    app[OPERATIONS_KEY] = []
    app[PUBLIC_ROUTES_KEY] = set()
    add_api_routes(app, enrollment)
    if pages:
        # Under accounts the forms' token derives from the session; otherwise the pages' own cookie.
        zones = TenantZones(app[ENGINE_KEY])
        app[TENANT_ZONES_KEY] = zones
        add_page_routes(
            app, hub=event_hub, csrf=SessionCsrf() if isinstance(chosen, SessionAuth) else None, time_zone_of=zones
        )
        add_account_pages(app)
    return app


def _dispose_on_cleanup(engine: sa.Engine) -> Callable[[web.Application], AsyncIterator[None]]:
    async def dispose(_app: web.Application) -> AsyncIterator[None]:
        yield
        engine.dispose()

    return dispose
