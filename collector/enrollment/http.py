"""HTTP endpoints of enrollment (aiohttp); the lead wires them with :func:`add_routes`.

* ``POST /api/v1/enroll`` — public: the token in the body *is* the credential. ``{token,
  hostname?}`` → ``{agent_id, broker_url, username, password}``. Errors are RFC 7807 problem
  documents whose ``type`` names the cause, so the agent can tell "ask for a new token" (unknown,
  used, expired) from "try again later" (broker unavailable).
* ``POST /api/v1/enrollment-tokens`` — admin: ``{node_id, ttl_hours?}`` → the token, shown once.
* ``POST /api/v1/agents/{agent_id}/revoke`` — admin: remove the agent's broker account.

The service does blocking database and broker I/O, so handlers run it in a worker thread.
Responses carrying secrets are marked ``Cache-Control: no-store``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from collector.enrollment.errors import (
    BrokerError,
    EnrollmentError,
    TokenExpired,
    TokenUnknown,
    TokenUsed,
    UnknownAgent,
    UnknownStore,
)
from collector.enrollment.service import MAX_TOKEN_TTL, EnrollmentService
from collector.security import PRINCIPAL_KEY, PUBLIC_ROUTES_KEY

log = logging.getLogger(__name__)

ENROLL_PATH = "/api/v1/enroll"
TOKENS_PATH = "/api/v1/enrollment-tokens"
REVOKE_PATH = "/api/v1/agents/{agent_id}/revoke"
ENROLL_ROUTE = "enroll"
ENROLLMENT_SERVICE_KEY = web.AppKey("enrollment_service", EnrollmentService)

PROBLEM_TYPE_PREFIX = "urn:kassa-monitor:problem:"
# error class → (HTTP status, problem slug, title); the agent keys its message on the slug.
_ERRORS: dict[type[EnrollmentError], tuple[int, str, str]] = {
    TokenUnknown: (403, "token-unknown", "Unknown enrollment token"),
    TokenUsed: (409, "token-used", "Enrollment token already used"),
    TokenExpired: (410, "token-expired", "Enrollment token expired"),
    UnknownStore: (404, "unknown-node", "Unknown store node"),
    UnknownAgent: (404, "unknown-agent", "Unknown agent"),
    BrokerError: (503, "broker-unavailable", "Broker did not accept the credentials"),
}


class EnrollRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # newer agents may send more; ignore it

    token: str = Field(min_length=1, max_length=200)
    hostname: str | None = Field(None, max_length=253)


class EnrollResponse(BaseModel):
    agent_id: str
    broker_url: str
    username: str
    password: str
    broker_fallback_urls: list[str] = []  # a clustered broker's other nodes, tried in order


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    node_id: int = Field(ge=1)
    ttl_hours: float | None = Field(None, gt=0, le=MAX_TOKEN_TTL.total_seconds() / 3600)


def problem(status: int, slug: str, title: str, detail: str) -> web.Response:
    body = {"type": PROBLEM_TYPE_PREFIX + slug, "title": title, "status": status, "detail": detail}
    return web.json_response(body, status=status, content_type="application/problem+json")


def _error_response(exc: EnrollmentError) -> web.Response:
    for kind, (status, slug, title) in _ERRORS.items():
        if isinstance(exc, kind):
            return problem(status, slug, title, str(exc))
    return problem(400, "enrollment-refused", "Enrollment refused", str(exc))


async def _body(request: web.Request, model: type[BaseModel]) -> Any:
    try:
        document = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _BadRequest("the body must be a JSON object") from None
    try:
        return model.model_validate(document)
    except ValidationError as errors:
        fields = ", ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in errors.errors())
        raise _BadRequest(fields) from None


class _BadRequest(Exception):
    pass


def _no_store(response: web.Response) -> web.Response:
    response.headers["Cache-Control"] = "no-store"
    return response


async def enroll(request: web.Request) -> web.Response:
    service = request.app[ENROLLMENT_SERVICE_KEY]
    try:
        body: EnrollRequest = await _body(request, EnrollRequest)
    except _BadRequest as exc:
        return problem(422, "invalid-body", "Invalid request body", str(exc))
    try:
        result = await asyncio.to_thread(service.redeem, body.token, body.hostname)
    except EnrollmentError as exc:
        log.info("enrollment refused from %s: %s", request.remote, exc)
        return _error_response(exc)
    log.info("agent %s enrolled into node %s from %s", result.agent_id, result.node_id, request.remote)
    payload = EnrollResponse(
        agent_id=result.agent_id,
        broker_url=result.broker_url,
        username=result.username,
        password=result.password,
        broker_fallback_urls=list(result.broker_fallback_urls),
    )
    # Without a cluster the answer stays the four fields older agents know.
    return _no_store(web.json_response(payload.model_dump(exclude_defaults=True)))


async def create_token(request: web.Request) -> web.Response:
    principal = _require_admin(request)
    service = request.app[ENROLLMENT_SERVICE_KEY]
    try:
        body: TokenRequest = await _body(request, TokenRequest)
    except _BadRequest as exc:
        return problem(422, "invalid-body", "Invalid request body", str(exc))
    ttl = None if body.ttl_hours is None else timedelta(hours=body.ttl_hours)
    try:
        issued = await asyncio.to_thread(service.create_token, body.node_id, created_by=principal, ttl=ttl)
    except EnrollmentError as exc:
        return _error_response(exc)
    document = {
        "token": issued.token,
        "token_id": issued.token_id,
        "tenant_id": issued.tenant_id,
        "node_id": issued.node_id,
        "expires_at": issued.expires_at.isoformat(),
    }
    return _no_store(web.json_response(document, status=201))


async def revoke(request: web.Request) -> web.Response:
    _require_admin(request)
    service = request.app[ENROLLMENT_SERVICE_KEY]
    agent_id = request.match_info["agent_id"]
    try:
        await asyncio.to_thread(service.revoke_agent, agent_id)
    except EnrollmentError as exc:
        return _error_response(exc)
    return web.json_response({"agent_id": agent_id, "revoked": True})


def _require_admin(request: web.Request) -> str:
    """The admin's name for the audit columns. Uses the web app's principal when auth is wired."""
    principal = request.get(PRINCIPAL_KEY)
    if principal is None or not principal.is_admin:
        raise web.HTTPForbidden(text="only an administrator may manage enrollment")
    return str(principal.user)


def add_routes(app: web.Application, service: EnrollmentService, *, admin: bool = True) -> None:
    """Register the enrollment routes on ``app`` (before it starts).

    The enroll route is added to the web app's public routes (no bearer token: the enrollment
    token is the credential). ``admin=False`` leaves out token creation and revocation, e.g. for
    an enrollment-only listener.
    """
    app[ENROLLMENT_SERVICE_KEY] = service
    app.router.add_post(ENROLL_PATH, enroll, name=ENROLL_ROUTE)
    if admin:
        app.router.add_post(TOKENS_PATH, create_token, name="create_enrollment_token")
        app.router.add_post(REVOKE_PATH, revoke, name="revoke_agent")
    # mypy infers AppKey("…", frozenset[str]) as a key of set[str]; the runtime value is a frozenset.
    public: frozenset[str] = app.get(PUBLIC_ROUTES_KEY, frozenset())  # type: ignore[arg-type]
    app[PUBLIC_ROUTES_KEY] = public | {ENROLL_ROUTE}  # type: ignore[misc]
