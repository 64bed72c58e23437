"""Control characters in the URL (issue 13, item 11): ``%00`` and its kin in any query or path
parameter of any route are a 400 problem document naming the parameter, never a 500 — on SQLite
and on PostgreSQL (which refuses NUL in text, so the 500 came from there)."""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import quote

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import security_testkit as kit
from test_security_routes import ROUTES, fill

from collector.web.routing import OPERATIONS_KEY, Operation

PROBLEM = "application/problem+json"
CONTROLS = ["\x00", "\n", "\x1b", "\x7f", "\x85"]  # NUL, a line break, ESC, DEL, a C1 control


def _refused(reply: kit.Reply, parameter: str) -> None:
    assert reply.status == 400, reply.text
    assert reply.media_type == PROBLEM
    assert reply.json["type"].endswith(":invalid-parameter")
    assert parameter in [param["name"] for param in reply.json["invalid_params"]], reply.json


def _query_names(operations: list[Operation], method: str, template: str) -> list[str]:
    for operation in operations:
        if (operation.method, operation.path) == (method, template) and operation.query is not None:
            return list(operation.query.model_fields)
    return []


def test_a_control_character_in_any_path_parameter_is_a_400(client: kit.Client, world: kit.World) -> None:
    checked = 0
    for method, template in sorted(ROUTES):
        if "{" not in template:
            continue
        for placeholder, value in world.a.values.items():
            if placeholder not in template:
                continue
            path = fill(template.replace(placeholder, quote(value + "\x00", safe="")), world.a)
            _refused(client.call(method, path, who="owner_a"), placeholder.strip("{}"))
            checked += 1
    assert checked >= 40


def test_a_control_character_in_any_query_parameter_is_a_400(client: kit.Client, world: kit.World) -> None:
    operations = client.app[OPERATIONS_KEY]
    checked = 0
    for method, template in sorted(ROUTES):
        route = ROUTES[(method, template)]
        if route.access == "stream":
            continue
        path = fill(template, world.a)
        # The operation's own parameters, and for pages (no declared model) the list filters.
        for name in _query_names(operations, method, template) or ["q", "tag", "protocol", "register"]:
            _refused(client.call(method, path, who="owner_a", params={name: "x\x00"}), name)
            checked += 1
    assert checked >= 150


@pytest.mark.parametrize("control", CONTROLS)
@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/api/v1/registers", "q"),
        ("/api/v1/registers", "tag"),
        ("/api/v1/registers", "protocol"),
        ("/api/v1/registers.csv", "q"),
        ("/api/v1/alerts", "register"),
        ("/api/v1/audit", "target_id"),
        ("/registers", "q"),
        ("/alerts", "register"),
        ("/admin/why", "register"),
    ],
)
def test_the_reported_parameters_refuse_every_control_character(
    client: kit.Client, world: kit.World, path: str, name: str, control: str
) -> None:
    value = world.registers["tverskaya"]
    assert client.call("GET", path, who="owner_a", params={name: value}).status == 200  # the same, clean
    _refused(client.call("GET", path, who="owner_a", params={name: value + control}), name)


def test_a_control_character_in_a_parameter_name_is_refused(client: kit.Client) -> None:
    reply = client.call("GET", "/api/v1/registers?q%00=1", who="owner_a")
    _refused(reply, "q\\x00")


def test_an_anonymous_caller_gets_the_same_400(client: kit.Client) -> None:
    _refused(client.call("GET", "/registers/kkt%00"), "register_id")


def test_printable_unicode_still_passes(client: kit.Client) -> None:
    reply = client.call("GET", "/api/v1/registers", who="owner_a", params={"q": "Тверская ✓\u00a0"})
    assert reply.status == 200 and reply.json["items"] == []


def test_a_malformed_id_on_a_page_is_a_400_page_not_a_500(client: kit.Client, world: kit.World) -> None:
    token, cookies = client.page_csrf("owner_a")
    reply = client.call("POST", "/admin/tree/nodes/abc/delete", who="owner_a", cookies=cookies,
                        data={"csrf_token": token})
    assert reply.status == 400 and "node_id" in reply.text


def test_a_nul_in_a_json_body_is_a_400_naming_the_field(client: kit.Client) -> None:
    reply = client.call("POST", "/api/v1/tags", who="owner_a", json={"name": "Метка\x00"})
    _refused(reply, "name")
    login = client.call("POST", "/api/v1/auth/login", json={"email": "a\x00@b.test", "password": "x" * 12})
    _refused(login, "email")
    nested = client.call("POST", "/api/v1/alerts/ack", who="owner_a", json={"ids": [1], "comment": ["\ud800"]})
    _refused(nested, "comment.0")  # a lone surrogate cannot be stored either


def test_a_nul_in_a_form_is_a_400_naming_the_field(client: kit.Client, world: kit.World) -> None:
    token, cookies = client.page_csrf("owner_a")
    alert = world.a["{alert_id}"]
    reply = client.call("POST", f"/alerts/{alert}/comment", who="owner_a", cookies=cookies,
                        data={"csrf_token": token, "text": "проверка\x00"})
    _refused(reply, "text")


def test_line_breaks_in_body_text_still_pass(client: kit.Client, world: kit.World) -> None:
    alert = world.a["{alert_id}"]
    reply = client.call("POST", f"/api/v1/alerts/{alert}/comments", who="owner_a",
                        json={"text": "строка 1\nстрока 2\tконец"})
    assert reply.status in (200, 201), reply.text
