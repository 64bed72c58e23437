"""The enrollment endpoints registered through ``add_operations`` (documented, private unless
public), with rights checked through accounts and every change in the audit log.

* ``POST /api/v1/enroll`` — public: the one-time token is the credential (``enrollment.http``'s
  handler, so the agent keeps getting the same problem slugs);
* ``POST /api/v1/enrollment-tokens`` — ``Permission.ENROLL`` on the store node;
* ``POST /api/v1/agents/{agent_id}/revoke`` — ``Permission.ENROLL`` where the agent is placed.

A node or agent the caller cannot see answers 404. The admin principal of ``web_auth = token |
open`` (no account) may do both, audited under its name. The rights check and the token or
revocation run in separate transactions (the service owns its own); the audit entry is written
after the service succeeded, so it never records something that did not happen.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import sqlalchemy as sa
from aiohttp import web
from pydantic import AwareDatetime, BaseModel

from collector.accounts import audit
from collector.accounts.audit import Actor
from collector.accounts.rights import Permission, authorize
from collector.accounts.web_auth import USER_ID_KEY
from collector.enrollment.errors import BrokerError, EnrollmentError, UnknownAgent, UnknownStore
from collector.enrollment.http import (
    ENROLL_PATH,
    ENROLLMENT_SERVICE_KEY,
    EnrollRequest,
    EnrollResponse,
    TokenRequest,
    enroll,
)
from collector.enrollment.service import EnrollmentService
from collector.storage.engine import begin_write
from collector.storage.schema import agents
from collector.web.accounts_support import caller, require_visible, run_in_transaction
from collector.web.auth import principal_of
from collector.web.problems import Problem
from collector.web.routing import ENGINE_KEY, Operation, json_response, now, parse_body

API = "/api/v1"


class EnrollmentTokenOut(BaseModel):
    token: str
    token_id: int
    tenant_id: int
    node_id: int
    expires_at: AwareDatetime


class AgentRevokedOut(BaseModel):
    agent_id: str
    revoked: bool


def _problem(exc: Exception) -> Problem:
    if isinstance(exc, UnknownStore | UnknownAgent):
        return Problem(404, "not-found", "Not found", str(exc))
    if isinstance(exc, BrokerError):
        return Problem(503, "broker-unavailable", "Broker did not accept the change", str(exc))
    return Problem(422, "enrollment-refused", "Enrollment refused", str(exc))


async def _checked_actor(request: web.Request, target: int | str) -> tuple[Actor, int | None]:
    """Who acts and in which tenant, after the ENROLL check on ``target`` (node id or agent id)."""
    user_id = request.get(USER_ID_KEY)
    if user_id is None:
        principal = principal_of(request)
        if not principal.is_admin:
            raise Problem(403, "forbidden", "Forbidden", "only an administrator may manage enrollment")
        return Actor(None, principal.user), None

    def work(conn: sa.Connection) -> tuple[Actor, int | None]:
        who = caller(conn, user_id)
        node: int | str | None = target
        if isinstance(target, str):
            row = conn.execute(
                sa.select(agents.c.node_id).where(agents.c.agent_id == target, agents.c.tenant_id == who.tenant_id)
            ).first()
            if row is None:
                raise Problem(404, "not-found", "Not found", f"agent {target!r} does not exist or is outside your scope")
            node = row.node_id
        if node is not None:
            require_visible(conn, who, node)
        authorize(conn, who.actor, who.tenant_id, Permission.ENROLL, node)
        return who.actor, who.tenant_id

    return await run_in_transaction(request, work, write=False)


def _audit(engine: sa.Engine, actor: Actor, tenant_id: int | None, action: str, target: str | int,
           details: dict[str, object], at: datetime) -> None:
    target_type = "agent" if isinstance(target, str) else "node"
    with begin_write(engine) as conn:
        audit.record(conn, actor, tenant_id=tenant_id, action=action, target_type=target_type, target_id=target,
                     at=at, details=details)


async def create_token(request: web.Request) -> web.Response:
    body = await parse_body(request, TokenRequest)
    actor, _ = await _checked_actor(request, body.node_id)
    service = request.app[ENROLLMENT_SERVICE_KEY]
    ttl = None if body.ttl_hours is None else timedelta(hours=body.ttl_hours)
    try:
        issued = await asyncio.to_thread(service.create_token, body.node_id, created_by=actor.label, ttl=ttl)
    except (EnrollmentError, ValueError) as exc:
        raise _problem(exc) from None
    details = {"token_id": issued.token_id, "expires_at": issued.expires_at.isoformat()}
    await asyncio.to_thread(_audit, request.app[ENGINE_KEY], actor, issued.tenant_id, "enrollment.token_create",
                            body.node_id, details, now(request))
    answer = EnrollmentTokenOut(token=issued.token, token_id=issued.token_id, tenant_id=issued.tenant_id,
                                node_id=issued.node_id, expires_at=issued.expires_at)
    response = json_response(answer, status=201)
    response.headers["Cache-Control"] = "no-store"
    return response


async def revoke_agent(request: web.Request) -> web.Response:
    agent_id = request.match_info["agent_id"]
    actor, tenant_id = await _checked_actor(request, agent_id)
    service = request.app[ENROLLMENT_SERVICE_KEY]
    try:
        await asyncio.to_thread(service.revoke_agent, agent_id)
    except EnrollmentError as exc:
        raise _problem(exc) from None
    await asyncio.to_thread(_audit, request.app[ENGINE_KEY], actor, tenant_id, "enrollment.agent_revoke",
                            agent_id, {}, now(request))
    return json_response(AgentRevokedOut(agent_id=agent_id, revoked=True))


OPERATIONS: tuple[Operation, ...] = (
    Operation("POST", ENROLL_PATH, enroll, "enrollAgent",
              "Exchange a one-time enrollment token for the agent's identity and broker credentials",
              "enrollment", EnrollResponse, body=EnrollRequest, errors=(403, 404, 409, 410, 422, 503), public=True),
    Operation("POST", f"{API}/enrollment-tokens", create_token, "createEnrollmentToken",
              "A one-time token that enrolls an agent into a store (shown once)", "enrollment", EnrollmentTokenOut,
              body=TokenRequest, status=201, errors=(403, 404, 415, 422, 503)),
    Operation("POST", f"{API}/agents/{{agent_id}}/revoke", revoke_agent, "revokeAgent",
              "Remove an agent's broker account", "enrollment", AgentRevokedOut, path_params={"agent_id": str},
              errors=(403, 404, 503)),
)


def add_enrollment_operations(app: web.Application, service: EnrollmentService) -> None:
    from collector.web.app import add_operations  # app imports this module lazily; no cycle at import

    app[ENROLLMENT_SERVICE_KEY] = service
    add_operations(app, OPERATIONS)

