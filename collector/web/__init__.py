"""The collector's web layer: JSON API under ``/api/v1`` with an OpenAPI document, problem-details
errors, health/readiness and Prometheus metrics (aiohttp).

``collector.service`` starts it with ``create_app(config, engine=…, metrics_registry=…)``.
"""

from collector.web.app import WebSettings, create_app
from collector.web.auth import Authenticator, OpenAccess, Principal, StaticTokenAuth

__all__ = ["Authenticator", "OpenAccess", "Principal", "StaticTokenAuth", "WebSettings", "create_app"]
