"""The collector's web app as the demo serves it: ``collector.web.create_app`` (JSON API, pages,
users' own sessions and API tokens) with the live-update hub the demo feeds alert notices into.

Handed to ``CollectorService(app_factory=demo_app_factory(hub))``, which passes the shared
engine, metrics registry and broker readiness by parameter name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from prometheus_client import CollectorRegistry

from collector.web import create_app
from collector.web.api.ops import BrokerReadiness
from collector.web.pages import EventHub


def demo_app_factory(hub: EventHub) -> Callable[..., web.Application]:
    """The factory; ``hub`` is the live-update hub the alert engine's notices are fed into."""

    def demo_app(
        config: Any,
        *,
        engine: sa.Engine | None = None,
        metrics_registry: CollectorRegistry | None = None,
        broker_ready: BrokerReadiness | None = None,
    ) -> web.Application:
        if engine is None:  # sessions and tokens must be checked in the collector's own database
            raise ValueError("demo_app needs the collector service's engine")
        # No api_token in the config: create_app authenticates users' own sessions and tokens.
        return create_app(
            config, engine=engine, metrics_registry=metrics_registry, broker_ready=broker_ready, event_hub=hub
        )

    return demo_app
