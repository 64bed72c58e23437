"""The enrollment HTTP endpoints inside the real web app: the enroll route is public and maps every
refusal to its own status and problem type; token creation and revocation need the admin token;
answers carrying secrets are never cached."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: the helper next to us
import enrollment_testkit as kit

from collector.enrollment.http import add_routes
from collector.enrollment.service import EnrollmentService
from collector.storage.tree import create_node, create_tenant
from collector.web import StaticTokenAuth, WebSettings, create_app

ADMIN_TOKEN = "enrollment-http-admin-token"


@dataclass
class Api:
    url: str
    node_id: int
    broker: kit.FakeBroker
    service: EnrollmentService

    def post(self, path: str, body: Any, *, admin: bool = False, raw: bytes | None = None) -> tuple[int, dict[str, Any], Any]:
        headers = {"Content-Type": "application/json"}
        if admin:
            headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        data = raw if raw is not None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, dict(response.headers), json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), json.loads(exc.read() or b"null")


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with kit.migrated_engine("sqlite", tmp_path) as engine:
        with engine.begin() as conn:
            node = create_node(conn, create_tenant(conn, "Ромашка"), parent_id=None, kind="store", name="Арбат 5")
        broker = kit.FakeBroker()
        service = EnrollmentService(engine, broker, broker_url="mqtts://mqtt.example.ru:8883")
        app = create_app(WebSettings(api_token=ADMIN_TOKEN), engine=engine, authenticator=StaticTokenAuth(ADMIN_TOKEN))
        add_routes(app, service)
        with kit.serve(app) as url:
            yield Api(url, node, broker, service)


def problem_type(body: dict[str, Any]) -> str:
    return str(body["type"]).rpartition(":")[2]


def test_enroll_is_public_and_returns_the_identity_once(api: Api) -> None:
    status, headers, token_body = api.post("/api/v1/enrollment-tokens", {"node_id": api.node_id, "ttl_hours": 2}, admin=True)
    assert status == 201 and headers["Cache-Control"] == "no-store"
    expires = datetime.fromisoformat(token_body["expires_at"])
    assert timedelta(hours=1, minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=2)

    status, headers, body = api.post("/api/v1/enroll", {"token": token_body["token"], "hostname": "kassa-1"})
    assert status == 200 and headers["Cache-Control"] == "no-store"
    assert set(body) == {"agent_id", "broker_url", "username", "password"}
    assert body["username"] == body["agent_id"] and body["broker_url"] == "mqtts://mqtt.example.ru:8883"
    assert api.broker.accounts == {body["agent_id"]: body["password"]}

    status, _, again = api.post("/api/v1/enroll", {"token": token_body["token"]})
    assert (status, problem_type(again)) == (409, "token-used")


def test_each_refusal_has_its_status_and_problem_type(api: Api) -> None:
    expired = api.service.create_token(api.node_id, created_by="t", ttl=timedelta(microseconds=1)).token
    cases = [
        ({"token": "no-such-token"}, 403, "token-unknown"),
        ({"token": expired}, 410, "token-expired"),
        ({"hostname": "x"}, 422, "invalid-body"),
        ({"token": ""}, 422, "invalid-body"),
        (["not", "an", "object"], 422, "invalid-body"),
    ]
    for body, status, slug in cases:
        got_status, headers, problem = api.post("/api/v1/enroll", body)
        assert (got_status, problem_type(problem)) == (status, slug), body
        assert headers["Content-Type"].startswith("application/problem+json")
    status, _, problem = api.post("/api/v1/enroll", None, raw=b"{not json")
    assert (status, problem_type(problem)) == (422, "invalid-body")


def test_a_broker_outage_is_503_and_the_token_stays_usable(api: Api) -> None:
    token = api.service.create_token(api.node_id, created_by="t").token
    api.broker.fail = True
    status, _, problem = api.post("/api/v1/enroll", {"token": token})
    assert (status, problem_type(problem)) == (503, "broker-unavailable")
    api.broker.fail = False
    assert api.post("/api/v1/enroll", {"token": token})[0] == 200


def test_token_creation_and_revocation_need_the_admin(api: Api) -> None:
    assert api.post("/api/v1/enrollment-tokens", {"node_id": api.node_id})[0] == 401
    status, _, problem = api.post("/api/v1/enrollment-tokens", {"node_id": 999_999}, admin=True)
    assert (status, problem_type(problem)) == (404, "unknown-node")
    status, _, problem = api.post("/api/v1/enrollment-tokens", {"node_id": api.node_id, "ttl_hours": 24 * 31}, admin=True)
    assert (status, problem_type(problem)) == (422, "invalid-body")

    agent_id = api.service.redeem(api.service.create_token(api.node_id, created_by="t").token).agent_id
    assert api.post(f"/api/v1/agents/{agent_id}/revoke", {})[0] == 401
    assert agent_id in api.broker.accounts
    status, _, body = api.post(f"/api/v1/agents/{agent_id}/revoke", {}, admin=True)
    assert (status, body) == (200, {"agent_id": agent_id, "revoked": True})
    assert agent_id not in api.broker.accounts
    status, _, problem = api.post("/api/v1/agents/nobody-1/revoke", {}, admin=True)
    assert (status, problem_type(problem)) == (404, "unknown-agent")
