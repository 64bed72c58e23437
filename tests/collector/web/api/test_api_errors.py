"""Every error is an RFC 7807 problem: bad parameters name themselves, unknown ids are 404,
missing credentials 401, wrong methods 405, and a crash is a bare 500 without a stack trace."""

from __future__ import annotations

import pytest

from collector.storage import Scope

PROBLEM_KEYS = {"type", "title", "status", "detail", "invalid_params"}


def _is_problem(reply, status: int) -> dict:
    assert reply.status == status
    assert reply.media_type == "application/problem+json"
    body = reply.json
    assert set(body) == PROBLEM_KEYS
    assert body["status"] == status
    assert body["type"].startswith("urn:kassa-monitor:problem:")
    return body


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/api/v1/registers", {"limit": "0"}, "limit"),
        ("/api/v1/registers", {"limit": "5000"}, "limit"),
        ("/api/v1/registers", {"offset": "-1"}, "offset"),
        ("/api/v1/registers", {"status": "sleeping"}, "status"),
        ("/api/v1/registers", {"severity": "catastrophic"}, "severity"),
        ("/api/v1/registers", {"sort": "random"}, "sort"),
        ("/api/v1/registers", {"node": "moscow"}, "node"),
        ("/api/v1/registers", {"rule": "no_such_rule"}, "rule"),
        ("/api/v1/registers", {"colour": "red"}, "colour"),
        ("/api/v1/registers.csv", {"limit": "abc"}, "limit"),
        ("/api/v1/alerts", {"acknowledged": "maybe"}, "acknowledged"),
        ("/api/v1/alerts", {"state": "open"}, "state"),
        ("/api/v1/alerts", {"sort": "name"}, "sort"),
        ("/api/v1/dead-letters", {"limit": "-5"}, "limit"),
    ],
)
def test_bad_query_parameters_are_400_naming_the_parameter(api, path, params, param) -> None:
    body = _is_problem(api.get(path, params=params), 400)
    assert param in [p["name"] for p in body["invalid_params"]]
    assert param in body["detail"]


def test_bad_parameters_of_a_register_subresource(api, fleet) -> None:
    path = f"/api/v1/registers/{fleet.registers['tverskaya']}/history"
    naive = _is_problem(api.get(path, params={"since": "2026-11-28T09:00:00"}), 400)
    assert naive["invalid_params"][0]["name"] == "since"


def test_a_repeated_parameter_is_refused(api) -> None:
    body = _is_problem(api.get("/api/v1/registers?status=online&status=offline"), 400)
    assert "status" in body["detail"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/registers/shtrih-nope",
        "/api/v1/registers/shtrih-nope/history",
        "/api/v1/registers/shtrih-nope/events",
        "/api/v1/alerts/424242",
    ],
)
def test_unknown_ids_are_404(api, path) -> None:
    _is_problem(api.get(path), 404)


def test_unknown_alert_in_an_action_is_404(api) -> None:
    _is_problem(api.post("/api/v1/alerts/424242/ack"), 404)


def test_a_non_numeric_alert_id_is_400(api) -> None:
    body = _is_problem(api.get("/api/v1/alerts/abc"), 400)
    assert "alert_id" in body["detail"]


def test_unknown_route_is_a_404_problem(api) -> None:
    _is_problem(api.get("/api/v1/no-such-thing"), 404)


def test_wrong_method_is_a_405_problem_with_allow(api) -> None:
    reply = api.request("DELETE", "/api/v1/registers")
    _is_problem(reply, 405)
    assert reply.headers["Allow"] == "GET"


@pytest.mark.parametrize("token", [None, "wrong-token-wrong-token", ""])
def test_missing_or_wrong_credentials_are_401(api, token) -> None:
    reply = api.get("/api/v1/registers", token=token or False)
    _is_problem(reply, 401)
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")


def test_other_schemes_are_not_accepted(api) -> None:
    reply = api.get("/api/v1/registers", token=False, headers={"Authorization": "Basic YWRtaW46YWRtaW4="})
    _is_problem(reply, 401)


def test_dead_letters_are_for_administrators_only(make_api_as, fleet) -> None:
    _is_problem(make_api_as(Scope.tenant(fleet.tenant_a)).get("/api/v1/dead-letters"), 403)


class _Exploding:
    async def authenticate(self, request):
        raise RuntimeError("secret-internal-detail")


def test_an_unexpected_failure_is_a_bare_500(make_api, fleet, caplog) -> None:
    reply = make_api(authenticator=_Exploding()).get("/api/v1/registers")
    body = _is_problem(reply, 500)
    assert "secret" not in reply.text
    assert "Traceback" not in reply.text
    assert body["detail"] == "the server failed; see its log"
    assert "secret-internal-detail" in caplog.text  # logged for the operator, not sent to the client


@pytest.mark.parametrize("path", ["/api/v1/nodes", "/api/v1/registers/{tverskaya}", "/healthz"])
def test_endpoints_without_parameters_refuse_any(api, fleet, path) -> None:
    body = _is_problem(api.get(path.format(**fleet.registers), params={"verbose": "1"}), 400)
    assert "verbose" in body["detail"]
