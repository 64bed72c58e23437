"""Agents in the JSON API: an agent's own events (``OPERATIONS``, always routed) and the
enrollment endpoints (``ENROLLMENT_OPERATIONS``, routed when the app has an enrollment service),
with rights checked through accounts and every change in the audit log.

* ``POST /api/v1/enroll`` — public: the one-time token is the credential (``enrollment.http``'s
  handler, so the agent keeps getting the same problem slugs);
* ``POST /api/v1/enrollment-tokens`` — ``Permission.ENROLL`` on the store node;
* ``POST /api/v1/agents/{agent_id}/revoke`` — ``Permission.ENROLL`` where the agent is placed.

Always routed besides: ``POST /api/v1/agents/{agent_id}/place`` moves an agent (and its registers)
from «Новые кассы» or another store into a store (``Permission.MANAGE_REGISTERS`` on both), and
``GET /api/v1/refused-agents`` lists the agents the collector refuses (the operator: admin only).

A node or agent the caller cannot see answers 404. The admin principal of ``web_auth = token |
open`` (no account) may do both, audited under its name. The rights check and the token or
revocation run in separate transactions (the service owns its own); the audit entry is written
after the service succeeded, so it never records something that did not happen.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import sqlalchemy as sa
from aiohttp import web
from pydantic import AwareDatetime, BaseModel

from collector.accounts.new_registers import place_agent
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
from collector.storage import repository as repo
from collector.storage.refused_agents import refused_agents
from collector.web.api.models import Done, InputModel
from collector.web.auth import principal_of, require_admin
from collector.web.problems import Problem, not_found
from collector.web.routing import (
    API,
    ENGINE_KEY,
    Operation,
    add_operations,
    in_transaction,
    json_response,
    now,
    parse_body,
    parse_query,
)
from collector.web.shared.account_actions import (
    audit_enrollment,
    enrollment_actor,
)
from collector.web.shared.accounts import Caller, answer_as_caller
from collector.web.shared.fleet_models import (
    AgentEventList,
    AgentEventOut,
    AgentEventQuery,
)
from collector.web.shared.paging import next_link


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


async def create_token(request: web.Request) -> web.Response:
    body = await parse_body(request, TokenRequest)
    actor, _ = await enrollment_actor(request, body.node_id)
    service = request.app[ENROLLMENT_SERVICE_KEY]
    ttl = None if body.ttl_hours is None else timedelta(hours=body.ttl_hours)
    try:
        issued = await asyncio.to_thread(service.create_token, body.node_id, created_by=actor.label, ttl=ttl)
    except (EnrollmentError, ValueError) as exc:
        raise _problem(exc) from None
    details = {"token_id": issued.token_id, "expires_at": issued.expires_at.isoformat()}
    await asyncio.to_thread(audit_enrollment, request.app[ENGINE_KEY], actor, issued.tenant_id, "enrollment.token_create",
                            body.node_id, details, now(request))
    answer = EnrollmentTokenOut(token=issued.token, token_id=issued.token_id, tenant_id=issued.tenant_id,
                                node_id=issued.node_id, expires_at=issued.expires_at)
    response = json_response(answer, status=201)
    response.headers["Cache-Control"] = "no-store"
    return response


async def revoke_agent(request: web.Request) -> web.Response:
    agent_id = request.match_info["agent_id"]
    actor, tenant_id = await enrollment_actor(request, agent_id)
    service = request.app[ENROLLMENT_SERVICE_KEY]
    try:
        await asyncio.to_thread(service.revoke_agent, agent_id)
    except EnrollmentError as exc:
        raise _problem(exc) from None
    await asyncio.to_thread(audit_enrollment, request.app[ENGINE_KEY], actor, tenant_id, "enrollment.agent_revoke",
                            agent_id, {}, now(request))
    return json_response(AgentRevokedOut(agent_id=agent_id, revoked=True))


ENROLLMENT_OPERATIONS: tuple[Operation, ...] = (
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
    app[ENROLLMENT_SERVICE_KEY] = service
    add_operations(app, ENROLLMENT_OPERATIONS)


async def agent_events(request: web.Request) -> web.Response:
    agent_id = request.match_info["agent_id"]
    query = parse_query(request, AgentEventQuery)
    scope = principal_of(request).scope

    def work(conn: sa.Connection) -> AgentEventList:
        if not repo.agent_in_scope(conn, scope, agent_id):
            raise not_found(f"agent {agent_id!r}")
        rows = repo.list_agent_events(conn, scope, agent_id, limit=query.limit, offset=query.offset)
        return AgentEventList(
            agent_id=agent_id, items=[AgentEventOut.model_validate(r, from_attributes=True) for r in rows],
            next=next_link(request, query, len(rows)),
        )

    return json_response(await in_transaction(request, work))


class PlaceBody(InputModel):
    node_id: int


async def place(request: web.Request) -> web.Response:
    agent_id, at = request.match_info["agent_id"], now(request)
    body = await parse_body(request, PlaceBody)

    def work(conn: sa.Connection, who: Caller) -> Done:
        place_agent(conn, who.actor, who.tenant_id, agent_id, body.node_id, at=at)
        return Done(ok=True, message=f"agent {agent_id} and its registers moved to node {body.node_id}")

    return await answer_as_caller(request, work)


class RefusedAgentOut(BaseModel):
    agent_id: str
    reason: str
    messages: int
    first_at: AwareDatetime
    last_at: AwareDatetime
    tenant_id: int | None


class RefusedAgentList(BaseModel):
    items: list[RefusedAgentOut]


async def list_refused(request: web.Request) -> web.Response:
    require_admin(request)

    def work(conn: sa.Connection) -> RefusedAgentList:
        return RefusedAgentList(items=[RefusedAgentOut.model_validate(a, from_attributes=True)
                                       for a in refused_agents(conn)])

    return json_response(await in_transaction(request, work))


OPERATIONS: tuple[Operation, ...] = (
    Operation("POST", f"{API}/agents/{{agent_id}}/place", place, "placeAgent",
              "Move an agent and its registers (e.g. from «Новые кассы») into a store", "company", Done,
              body=PlaceBody, path_params={"agent_id": str}, errors=(403, 404, 409, 415, 422)),
    Operation("GET", f"{API}/refused-agents", list_refused, "listRefusedAgents",
              "Agents whose messages are refused (not enrolled, revoked), most recent first (administrators)",
              "operations", RefusedAgentList, errors=(403,), admin_only=True),
    Operation("GET", f"{API}/agents/{{agent_id}}/events", agent_events, "getAgentEvents",
              "The agent's own events (outbox_gap: states it dropped; command_error; agent_reinstalled), newest first", "registers",
              AgentEventList, query=AgentEventQuery, path_params={"agent_id": str}, errors=(400, 404)),
)
