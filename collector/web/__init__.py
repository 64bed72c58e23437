"""The collector's web layer: JSON API under ``/api/v1`` with an OpenAPI document, problem-details
errors, health/readiness and Prometheus metrics (aiohttp).

``collector.service`` starts it with ``create_app(config, engine=…, metrics_registry=…)``.

Layout (imports point down only; import-linter contracts in pyproject.toml keep it so):

* ``app`` — assembly: middlewares, authenticator, ``api`` and ``pages`` routes;
* ``api/`` — the JSON API, one module per resource (routes + models), ``api.openapi`` builds the
  document; ``pages/`` — the HTML pages. Neither imports the other;
* ``shared/`` — what both use (the fleet's read models, alert actions, account plumbing);
* ``auth``, ``routing`` (the operation table and its registration), ``i18n``, ``problems``.

The principal type and the public-route markers are in ``collector.security``, below the web.
"""

from collector.security import Authenticator, Principal
from collector.web.app import WebSettings, create_app
from collector.web.auth import OpenAccess, StaticTokenAuth

__all__ = ["Authenticator", "OpenAccess", "Principal", "StaticTokenAuth", "WebSettings", "create_app"]
