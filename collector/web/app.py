"""The collector's aiohttp application: JSON API, OpenAPI document, health and metrics.

``create_app(config)`` accepts the service's ``CollectorConfig`` (or ``WebSettings``). The web
settings it needs are read from the config by name, so the config can grow them without this
module changing: ``db_url``, ``api_token`` (bearer token of the built-in admin) and ``web_auth``
(``"token"`` or ``"open"``; default: token when a token is set, else open for the local demo).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from aiohttp import web
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ConfigDict, SecretStr

from collector.storage import create_engine_from_url
from collector.web.api import OPERATIONS
from collector.web.auth import (
    AUTHENTICATOR_KEY,
    PUBLIC_ROUTES_KEY,
    Authenticator,
    OpenAccess,
    StaticTokenAuth,
    allow_anonymous,
    auth_middleware,
)
from collector.web.openapi import OPERATIONS_KEY
from collector.web.ops import (
    BROKER_READY_KEY,
    METRICS_KEY,
    BrokerReadiness,
    http_metrics_for,
    metrics_middleware,
)
from collector.web.pages import EventHub, add_page_routes
from collector.web.problems import problem_middleware
from collector.web.routing import CLOCK_KEY, ENGINE_KEY, Operation, without_query

log = logging.getLogger(__name__)


class WebSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    db_url: str = "sqlite:///collector.db"
    web_auth: Literal["token", "open"] | None = None
    api_token: str | None = None

    @classmethod
    def from_config(cls, config: Any) -> WebSettings:
        if isinstance(config, WebSettings):
            return config
        token: Any = getattr(config, "api_token", None)
        if isinstance(token, SecretStr):  # how the service config may hold it
            token = token.get_secret_value()
        return cls(
            db_url=getattr(config, "db_url", cls.model_fields["db_url"].default),
            web_auth=getattr(config, "web_auth", None),
            api_token=token,
        )

    def authenticator(self) -> Authenticator:
        mode = self.web_auth or ("token" if self.api_token else "open")
        if mode == "open":
            log.warning("web API in open mode: every caller is an administrator (demo only)")
            return OpenAccess()
        if not self.api_token:
            raise ValueError("web_auth=token needs api_token")
        return StaticTokenAuth(self.api_token)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(
    config: Any,
    *,
    engine: sa.Engine | None = None,
    metrics_registry: CollectorRegistry | None = None,
    broker_ready: BrokerReadiness | None = None,
    authenticator: Authenticator | None = None,
    clock: Callable[[], datetime] = _utc_now,
    event_hub: EventHub | None = None,
    pages: bool = True,
) -> web.Application:
    """Build the app. Without ``engine`` it opens one on ``config.db_url`` and disposes of it on
    cleanup; ``broker_ready`` feeds ``/readyz``; ``authenticator`` replaces the config's choice."""
    settings = WebSettings.from_config(config)
    app = web.Application(middlewares=[metrics_middleware, problem_middleware, auth_middleware])
    app[AUTHENTICATOR_KEY] = authenticator or settings.authenticator()
    app[CLOCK_KEY] = clock
    app[METRICS_KEY] = http_metrics_for(metrics_registry or CollectorRegistry())
    if broker_ready is not None:
        app[BROKER_READY_KEY] = broker_ready
    if engine is None:
        owned = create_engine_from_url(settings.db_url)
        app[ENGINE_KEY] = owned
        app.cleanup_ctx.append(_dispose_on_cleanup(owned))
    else:
        app[ENGINE_KEY] = engine
    app[OPERATIONS_KEY] = []
    app[PUBLIC_ROUTES_KEY] = set()
    add_operations(app, OPERATIONS)
    if pages:
        add_page_routes(app, hub=event_hub)
    return app


def add_operations(app: web.Application, operations: Iterable[Operation]) -> None:
    """Route and document operations; other modules (e.g. enrollment) add theirs the same way, so
    every JSON route appears in the OpenAPI document and is private unless declared public."""
    for operation in operations:
        handler = operation.handler if operation.query is not None else without_query(operation.handler)
        app.router.add_route(operation.method, operation.path, handler, name=operation.operation_id)
        app[OPERATIONS_KEY].append(operation)
        if operation.public:
            allow_anonymous(app, operation.operation_id)


def _dispose_on_cleanup(engine: sa.Engine) -> Callable[[web.Application], AsyncIterator[None]]:
    async def dispose(_app: web.Application) -> AsyncIterator[None]:
        yield
        engine.dispose()

    return dispose
