"""Operations endpoints: liveness, readiness and Prometheus metrics (outside ``/api/v1``), the
dead letters (administrators) and the OpenAPI document.

``/healthz`` only says the process serves HTTP. ``/readyz`` checks the database (``SELECT 1``
with a timeout) and, when the service supplies their callbacks, the MQTT connection and the
ingest writer (a database that answers reads may still refuse every write).
``/metrics`` exposes the registry the service passes in plus this app's request counters and
latency histogram, labelled by route template (never by raw path, which would explode cardinality).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any
from weakref import WeakKeyDictionary

import sqlalchemy as sa
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from collector.ingest.health import HealthReport
from collector.web.api.openapi import serve_openapi
from collector.web.auth import require_admin
from collector.web.routing import (
    API,
    ENGINE_KEY,
    Handler,
    Operation,
    in_transaction,
    json_response,
    parse_query,
)
from collector.web.shared import fleet_queries as queries
from collector.web.shared import present
from collector.web.shared.fleet_models import (
    DeadLetterList,
    DeadLetterQuery,
    Health,
    Readiness,
    ReadinessCheck,
)
from collector.web.shared.paging import next_link

BrokerReadiness = Callable[[], bool | None]  # True connected, False not, None: not reported
IngestReadiness = Callable[[], HealthReport]  # is the writer committing, and why not
DB_CHECK_TIMEOUT_S = 2.0


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "kassa_http_requests",
            "HTTP requests answered by the collector web app",
            ("method", "route", "status"),
            registry=registry,
        )
        self.latency = Histogram(
            "kassa_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ("method", "route"),
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )


# One set per registry: a second app on the same registry (a restart in-process, tests) reuses it
# instead of failing on duplicate metric names.
_BY_REGISTRY: WeakKeyDictionary[CollectorRegistry, HttpMetrics] = WeakKeyDictionary()


def http_metrics_for(registry: CollectorRegistry) -> HttpMetrics:
    metrics = _BY_REGISTRY.get(registry)
    if metrics is None:
        metrics = _BY_REGISTRY[registry] = HttpMetrics(registry)
    return metrics


METRICS_KEY = web.AppKey("http_metrics", HttpMetrics)
BROKER_READY_KEY: web.AppKey[BrokerReadiness] = web.AppKey("broker_ready")
INGEST_READY_KEY: web.AppKey[IngestReadiness] = web.AppKey("ingest_ready")


def _route_label(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    metrics = request.app[METRICS_KEY]
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        route = _route_label(request)
        metrics.requests.labels(request.method, route, str(status)).inc()
        metrics.latency.labels(request.method, route).observe(time.perf_counter() - started)


async def healthz(request: web.Request) -> web.Response:
    return json_response(Health(status="ok"))


def _ping(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))


async def _database_check(engine: sa.Engine) -> ReadinessCheck:
    try:
        await asyncio.wait_for(asyncio.to_thread(_ping, engine), DB_CHECK_TIMEOUT_S)
    except TimeoutError:
        return ReadinessCheck(name="database", ok=False, detail=f"no answer within {DB_CHECK_TIMEOUT_S} s")
    except Exception as exc:  # any driver error means "not ready", reported, never raised
        return ReadinessCheck(name="database", ok=False, detail=f"{type(exc).__name__}: {exc}"[:300])
    return ReadinessCheck(name="database", ok=True, detail="reachable")


def _reported_check(
    app: web.Application, key: web.AppKey[Any], name: str, judge: Callable[[Any], ReadinessCheck]
) -> ReadinessCheck:
    """Ask the callback the service registered under ``key``; ``judge`` turns its answer into a check."""
    callback = app.get(key)
    if callback is None:
        return ReadinessCheck(name=name, ok=None, detail="not reported by this process")
    try:
        answer = callback()
    except Exception as exc:
        return ReadinessCheck(name=name, ok=False, detail=f"readiness callback failed: {exc}"[:300])
    return judge(answer)


def _broker(connected: bool | None) -> ReadinessCheck:
    if connected is None:
        return ReadinessCheck(name="broker", ok=None, detail="not reported yet")
    return ReadinessCheck(name="broker", ok=connected, detail="connected" if connected else "not connected")


def _ingest(report: HealthReport) -> ReadinessCheck:
    return ReadinessCheck(name="ingest", ok=report.ok, detail=report.detail)


async def readyz(request: web.Request) -> web.Response:
    checks = [
        await _database_check(request.app[ENGINE_KEY]),
        _reported_check(request.app, BROKER_READY_KEY, "broker", _broker),
        _reported_check(request.app, INGEST_READY_KEY, "ingest", _ingest),
    ]
    ready = all(check.ok is not False for check in checks)
    return json_response(Readiness(ready=ready, checks=checks), status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS_KEY].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def list_dead_letters(request: web.Request) -> web.Response:
    require_admin(request)
    query = parse_query(request, DeadLetterQuery)

    def work(conn: sa.Connection) -> DeadLetterList:
        rows, total = queries.list_dead_letter_page(conn, limit=query.limit, offset=query.offset)
        return DeadLetterList(
            items=[present.dead_letter_out(row) for row in rows], total=total, limit=query.limit, offset=query.offset,
            next=next_link(request, query, len(rows), total),
        )

    return json_response(await in_transaction(request, work))


OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", f"{API}/dead-letters", list_dead_letters, "listDeadLetters",
              "Messages the collector could not use, newest first (administrators)", "operations", DeadLetterList,
              query=DeadLetterQuery, errors=(400, 403), admin_only=True),
    Operation("GET", f"{API}/openapi.json", serve_openapi, "getOpenApi", "This document", "operations",
              media_type="application/json", public=True),
    Operation("GET", "/healthz", healthz, "healthz", "The process is alive", "operations", Health, public=True),
    Operation("GET", "/readyz", readyz, "readyz", "Database reachable, broker connected and ingest committing (when reported)",
              "operations", Readiness, public=True, errors=(503,)),
    Operation("GET", "/metrics", metrics, "metrics", "Prometheus exposition", "operations",
              media_type="text/plain", public=True),
)
