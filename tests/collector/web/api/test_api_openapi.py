"""The OpenAPI document: served, complete (every JSON route under /api of the router is
documented, nothing documented is missing), and every non-public operation is scoped: documented
with the bearer scheme and refused without credentials. Response bodies are validated against it
in every test through the client in conftest.py. (HTML pages are not part of the JSON API.)"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from collector.web import WebSettings, create_app
from collector.web.api.openapi import openapi_document
from collector.web.routing import Operation, add_operations

HTTP_METHODS = {"get", "post", "put", "patch", "delete"}
# The API operations reachable without credentials on purpose (the accounts flows before login);
# any other public /api/v1 operation is a mistake.
PUBLIC_API = {
    ("GET", "/api/v1/openapi.json"),
    ("POST", "/api/v1/auth/signup"),
    ("POST", "/api/v1/auth/confirm"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/password-reset"),
    ("POST", "/api/v1/auth/password-reset/confirm"),
    ("POST", "/api/v1/invitations/accept"),
}


def documented_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def routed_operations(app: web.Application) -> set[tuple[str, str]]:
    """JSON API routes, plus the operations endpoints the document also covers."""
    found = set()
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        path = route.resource.canonical
        if path.startswith("/api/") or path in ("/healthz", "/readyz", "/metrics"):
            found.add((route.method, path))
    return found


def undocumented_or_unscoped(app: web.Application) -> list[str]:
    """What is wrong with the app's routes against its document (empty when all is well)."""
    document = openapi_document(app)
    problems = [f"{m} {p} is routed but not documented" for m, p in sorted(routed_operations(app) - documented_operations(document))]
    problems += [f"{m} {p} is documented but not routed" for m, p in sorted(documented_operations(document) - routed_operations(app))]
    for method, path in sorted(documented_operations(document)):
        operation = document["paths"][path][method.lower()]
        if path.startswith("/api/v1/") and (method, path) not in PUBLIC_API:
            if operation["security"] != [{"bearerAuth": []}] or not operation["x-kassa-scoped"]:
                problems.append(f"{method} {path} is not scoped")
            if "401" not in operation["responses"]:
                problems.append(f"{method} {path} does not document 401")
    return problems


def _app() -> web.Application:
    return create_app(WebSettings(db_url="sqlite://", api_token="x" * 16))


def test_every_route_is_documented_and_scoped() -> None:
    assert undocumented_or_unscoped(_app()) == []


def test_a_route_added_behind_the_tables_back_is_caught() -> None:
    app = _app()

    async def sneaky(request: web.Request) -> web.Response:
        return web.Response(text="hi")

    app.router.add_get("/api/v1/sneaky", sneaky)
    assert undocumented_or_unscoped(app) == ["GET /api/v1/sneaky is routed but not documented"]


def test_a_public_api_operation_is_flagged_as_unscoped() -> None:
    app = _app()

    async def open_door(request: web.Request) -> web.Response:
        return web.Response(text="hi")

    add_operations(app, [Operation("GET", "/api/v1/open-door", open_door, "openDoor", "x", "test", public=True)])
    assert undocumented_or_unscoped(app) == [
        "GET /api/v1/open-door is not scoped",
        "GET /api/v1/open-door does not document 401",
    ]


def test_html_pages_are_not_part_of_the_api_check() -> None:
    app = _app()

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<h1>hi</h1>", content_type="text/html")

    app.router.add_get("/registers", page)
    assert undocumented_or_unscoped(app) == []


def test_document_is_served_without_credentials(api) -> None:
    reply = api.get("/api/v1/openapi.json", token=False)
    assert reply.status == 200
    document = reply.json
    assert document["openapi"] == "3.1.0"
    assert document["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer"}
    assert len({op["operationId"] for item in document["paths"].values() for op in item.values()}) == len(
        documented_operations(document)
    )


def test_every_reference_resolves(api) -> None:
    document = api.get("/api/v1/openapi.json").json
    text = str(document)
    names = set(re.findall(r"#/components/schemas/([A-Za-z0-9_]+)", text))
    assert names, "the document references no schemas at all"
    assert names <= set(document["components"]["schemas"])


def test_every_scoped_operation_refuses_a_caller_without_credentials(api, fleet) -> None:
    document = api.document
    samples = {"{register_id}": fleet.registers["tverskaya"], "{alert_id}": str(fleet.alerts["tverskaya:ofd_backlog"])}
    checked = 0
    for method, path in sorted(documented_operations(document)):
        operation = document["paths"][path][method.lower()]
        if not operation["security"]:
            continue
        concrete = path
        for placeholder, value in samples.items():
            concrete = concrete.replace(placeholder, value)
        concrete = re.sub(r"\{[^}]+\}", "1", concrete)  # any other id (nodes, groups, grants…)
        reply = api.request(method, concrete, token=False, json={} if method == "POST" else None)
        assert reply.status == 401, f"{method} {path} answered {reply.status} without credentials"
        checked += 1
    assert checked >= 13


def test_query_parameters_are_documented_from_the_models(api) -> None:
    parameters = api.document["paths"]["/api/v1/registers"]["get"]["parameters"]
    names = {parameter["name"] for parameter in parameters}
    assert {"status", "severity", "rule", "node", "tag", "protocol", "q", "sort", "limit", "offset"} <= names
    status = next(p for p in parameters if p["name"] == "status")
    assert status["schema"]["anyOf"][0]["enum"] == ["online", "offline", "unreachable"]
    alert_params = {p["name"] for p in api.document["paths"]["/api/v1/alerts"]["get"]["parameters"]}
    assert "register" in alert_params  # the public name, not the Python field name


def test_operations_declare_their_path_parameters_once(api) -> None:
    for path, item in api.document["paths"].items():
        placeholders = set(re.findall(r"\{([^}]+)\}", path))
        for method, operation in item.items():
            keys = [(p["name"], p["in"]) for p in operation["parameters"]]
            assert len(keys) == len(set(keys)), f"{method} {path} repeats a parameter"
            assert {name for name, where in keys if where == "path"} == placeholders, f"{method} {path}"
            assert all(status.isdigit() for status in operation["responses"])
