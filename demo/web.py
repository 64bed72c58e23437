"""The collector's web app as the demo serves it: ``collector.web.create_app`` (JSON API, pages,
users' own sessions and API tokens) with the live-update hub the demo feeds alert notices into,
and the demo's mailbox (account e-mails with links on the demo's real address, at ``/demo/mail``).

Handed to ``CollectorService(app_factory=demo_app_factory(hub))``, which passes the shared
engine, metrics registry and broker readiness by parameter name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from prometheus_client import CollectorRegistry

from collector.accounts.service import AccountService, AccountSettings
from collector.security import PUBLIC_ROUTES_KEY
from collector.web import create_app
from collector.web.api.ops import BrokerReadiness
from collector.web.pages import EventHub
from demo.mailbox import MAILBOX_PATH, MAILBOX_ROUTE, DemoMailbox


def demo_app_factory(hub: EventHub, mailbox: DemoMailbox, base_url: str) -> Callable[..., web.Application]:
    """The factory; ``hub`` is the live-update hub the alert engine's notices are fed into; account
    mail goes to ``mailbox`` with links under ``base_url``."""

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
        accounts = AccountService(mailbox, settings=AccountSettings(base_url=base_url.rstrip("/")))
        app = create_app(
            config, engine=engine, metrics_registry=metrics_registry, broker_ready=broker_ready, event_hub=hub,
            account_service=accounts,
        )
        # Open like the login page: the demo listens on loopback only and its accounts are demo accounts.
        app.router.add_get(MAILBOX_PATH, mailbox.page, name=MAILBOX_ROUTE)
        app[PUBLIC_ROUTES_KEY].add(MAILBOX_ROUTE)
        return app

    return demo_app
