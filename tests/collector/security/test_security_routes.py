"""The table-driven security test over every route of the app.

``ROUTES`` classifies each (method, route template) the router serves. For each route the tests
call it as: (a) tenant A's owner on tenant B's objects → 404/403 and none of B's data; (b) a
viewer on write routes → 403; (c) an accountant on technical actions → 403 while contracts and
КЭП succeed; (d) an operator granted Москва on Петербург's objects → 404, and lists without
Петербург; (e) anonymous → 401 except the public routes. A route missing from the table (or a
table entry no longer routed) fails the first test, so a new route cannot skip the checks.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import security_testkit as kit

from collector.web import WebSettings, create_app

Body = Callable[[kit.World, kit.Side], dict[str, Any]]


@dataclass(frozen=True)
class Route:
    """How a route must treat callers.

    ``access``: public (no credentials), read, write (needs a permission beyond viewing), self
    (the caller's own account: any user may), admin (the collector operator's token only, never
    a company's user), stream (SSE: only the anonymous check is run, the stream never ends).
    ``technical``: an operator's action (alerts, enrollment, registers) an accountant may not do;
    ``accounting``: an accountant's own work (contracts, КЭП), which must succeed for them.
    """

    access: str
    technical: bool = False
    accounting: bool = False
    json: Body | None = None
    form: Callable[[kit.World, kit.Side], dict[str, str]] | None = None
    csv: Callable[[kit.World, kit.Side], str] | None = None
    query: dict[str, str] = field(default_factory=dict)


def _node_body(world: kit.World, side: kit.Side) -> dict[str, Any]:
    return {"parent_id": int(side["{parent_id}"]), "kind": "store", "name": "Новый магазин"}


def _deletions_last(item: tuple[tuple[str, str], Route]) -> tuple[bool, tuple[str, str]]:
    """Order for running every write on one object: deletions (API and page forms) come last."""
    (method, template), _ = item
    return (method == "DELETE" or template.endswith("/delete"), (method, template))


def _receiver_body(side: kit.Side) -> dict[str, Any]:
    return {"channel": "email", "address": "duty@notify.test", "principal_user_id": int(side["{user_id}"])}


def _kep_order(world: kit.World, side: kit.Side) -> dict[str, Any]:
    import random

    inn = kit.make_person_inn(random.Random(side["{order_id}"]))
    return {"full_name": "Иванов Иван", "position": "Директор", "inn": inn, "email": "ivanov@kep.test"}


READ = Route("read")
PUBLIC = Route("public")
SELF = Route("self")
ACK = Route("write", technical=True)
_API = "/api/v1"

ROUTES: dict[tuple[str, str], Route] = {
    # operations and the document
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", f"{_API}/openapi.json"): PUBLIC,
    # monitoring API
    ("GET", f"{_API}/registers"): READ,
    ("GET", f"{_API}/registers.csv"): READ,
    ("GET", f"{_API}/registers/{{register_id}}"): READ,
    ("GET", f"{_API}/registers/{{register_id}}/history"): READ,
    ("GET", f"{_API}/registers/{{register_id}}/events"): READ,
    ("GET", f"{_API}/alerts"): READ,
    ("GET", f"{_API}/alerts/{{alert_id}}"): READ,
    ("POST", f"{_API}/alerts/ack"): Route("write", technical=True, json=lambda w, s: {"ids": [int(s["{alert_id}"])]}),
    ("POST", f"{_API}/alerts/{{alert_id}}/ack"): ACK,
    ("POST", f"{_API}/alerts/{{alert_id}}/comments"): Route("write", technical=True, json=lambda w, s: {"text": "x"}),
    ("POST", f"{_API}/alerts/{{alert_id}}/silence"): Route("write", technical=True, json=lambda w, s: {"until": None}),
    ("GET", f"{_API}/agents/{{agent_id}}/events"): READ,
    ("POST", f"{_API}/agents/{{agent_id}}/place"): Route(
        "write", technical=True, json=lambda w, s: {"node_id": int(s["{node_id}"])}
    ),
    ("GET", f"{_API}/refused-agents"): Route("admin", technical=True),
    ("GET", f"{_API}/nodes"): READ,
    ("GET", f"{_API}/nodes/rollups"): READ,
    ("GET", f"{_API}/dead-letters"): Route("admin", technical=True),
    # accounts: anonymous flows
    ("POST", f"{_API}/auth/signup"): PUBLIC,
    ("POST", f"{_API}/auth/confirm"): PUBLIC,
    ("POST", f"{_API}/auth/login"): PUBLIC,
    ("POST", f"{_API}/auth/password-reset"): PUBLIC,
    ("POST", f"{_API}/auth/password-reset/confirm"): PUBLIC,
    ("POST", f"{_API}/invitations/accept"): PUBLIC,
    # the caller's own account
    ("POST", f"{_API}/auth/logout"): SELF,
    ("GET", f"{_API}/me"): SELF,
    ("PATCH", f"{_API}/company"): Route("write", json=lambda w, s: {"time_zone": "Asia/Yekaterinburg"}),
    ("GET", f"{_API}/tokens"): SELF,
    ("POST", f"{_API}/tokens"): Route("self", json=lambda w, s: {"name": "ci"}),
    ("DELETE", f"{_API}/tokens/{{token_id}}"): SELF,
    # company
    ("GET", f"{_API}/tree"): READ,
    ("POST", f"{_API}/nodes"): Route("write", json=_node_body),
    ("PATCH", f"{_API}/nodes/{{node_id}}"): Route("write", json=lambda w, s: {"name": "Переименован"}),
    ("DELETE", f"{_API}/nodes/{{node_id}}"): Route("write"),
    ("POST", f"{_API}/tree/import"): Route("write", csv=lambda w, s: "store\nНовый\n", query={"dry_run": "true"}),
    ("GET", f"{_API}/levels"): READ,
    ("PUT", f"{_API}/levels"): Route(
        "write", json=lambda w, s: {"names": ["company", "legal_entity", "brand", "region", "city", "store"]}
    ),
    ("GET", f"{_API}/tags"): READ,
    ("POST", f"{_API}/tags"): Route("write", json=lambda w, s: {"name": "Новая метка"}),
    ("PUT", f"{_API}/registers/{{register_id}}/tags/{{tag_id}}"): Route("write", technical=True),
    ("DELETE", f"{_API}/registers/{{register_id}}/tags/{{tag_id}}"): Route("write", technical=True),
    ("GET", f"{_API}/groups"): Route("write"),  # lists every user's e-mail: group managers only
    ("POST", f"{_API}/groups"): Route("write", json=lambda w, s: {"name": "Новая группа"}),
    ("POST", f"{_API}/groups/{{group_id}}/members"): Route(
        "write", json=lambda w, s: {"user_id": int(s["{user_id}"])}
    ),
    ("DELETE", f"{_API}/groups/{{group_id}}/members/{{user_id}}"): Route("write"),
    ("POST", f"{_API}/grants"): Route(
        "write",
        json=lambda w, s: {"group_id": int(s["{group_id}"]), "role": "viewer", "node_id": int(s["{node_id}"])},
    ),
    ("DELETE", f"{_API}/grants/{{grant_id}}"): Route("write"),
    ("POST", f"{_API}/invitations"): Route(
        "write", json=lambda w, s: {"group_id": int(s["{group_id}"]), "email": "new.person@example.test"}
    ),
    ("GET", f"{_API}/registers/{{register_id}}/why"): READ,
    ("GET", f"{_API}/audit"): Route("write"),  # names everyone's changes: user managers only
    # contracts and КЭП
    ("GET", f"{_API}/registers/{{register_id}}/contract"): Route("read", accounting=True),
    ("PUT", f"{_API}/registers/{{register_id}}/contract"): Route(
        "write", accounting=True, json=lambda w, s: {"activated": True, "paid_until": "2027-06-30", "tariff": "год"}
    ),
    ("POST", f"{_API}/contracts/import"): Route(
        "write", accounting=True, csv=lambda w, s: f"register_id;activated\n{s['{register_id}']};да\n",
        query={"dry_run": "true"},
    ),
    ("GET", f"{_API}/kep-orders"): Route("write", accounting=True),  # applicants' personal data
    ("POST", f"{_API}/kep-orders"): Route("write", accounting=True, json=_kep_order),
    # The issuer's side of a КЭП order: the collector operator's credential only, never a company's user.
    ("POST", f"{_API}/kep-orders/{{order_id}}/transition"): Route(
        "admin", technical=True, json=lambda w, s: {"to": "documents_requested", "documents": ["passport"]}
    ),
    ("GET", f"{_API}/kep"): Route("read", accounting=True),
    ("GET", f"{_API}/company/alerts"): Route("write", accounting=True),  # company matters: КЭП handlers only
    ("POST", f"{_API}/company/alerts/{{company_alert_id}}/ack"): Route("write", accounting=True),
    ("POST", f"{_API}/ofd-documents"): Route(
        "write", json=lambda w, s: {"kind": "connection", "register_id": s["{register_id}"]}
    ),  # an accountant's, but 409 without a valid КЭП: see test_signed_requests
    ("POST", f"{_API}/registers/{{register_id}}/fns-application"): Route(
        "write", technical=True, json=lambda w, s: {"kind": "fn_replacement"}
    ),
    # remote actions on registers (an owner's request answers 409 here: the seeded registers have no agent)
    ("POST", f"{_API}/registers/{{register_id}}/actions"): Route(
        "write", technical=True, json=lambda w, s: {"action": "check_now"}
    ),
    ("GET", f"{_API}/registers/{{register_id}}/actions"): READ,
    ("GET", f"{_API}/actions/{{action_id}}"): READ,
    ("POST", f"{_API}/actions/bulk/preview"): Route(
        "write", technical=True, json=lambda w, s: {"node_id": int(s["{node_id}"]), "min_shift_hours": 1}
    ),
    ("POST", f"{_API}/actions/bulk"): Route(
        "write", technical=True, json=lambda w, s: {"node_id": int(s["{node_id}"]), "min_shift_hours": 1}
    ),
    # notification receivers: user and group managers of the company
    ("GET", f"{_API}/notifications/receivers"): Route("write"),  # addresses and who they serve
    ("POST", f"{_API}/notifications/receivers"): Route("write", json=lambda w, s: _receiver_body(s)),
    ("PUT", f"{_API}/notifications/receivers/{{receiver_id}}"): Route("write", json=lambda w, s: _receiver_body(s)),
    ("DELETE", f"{_API}/notifications/receivers/{{receiver_id}}"): Route("write"),
    ("POST", f"{_API}/notifications/receivers/{{receiver_id}}/test"): Route("write"),
    ("GET", f"{_API}/notifications/failures"): Route("write"),
    # enrollment
    ("POST", f"{_API}/enroll"): PUBLIC,
    ("POST", f"{_API}/enrollment-tokens"): Route(
        "write", technical=True, json=lambda w, s: {"node_id": int(s["{node_id}"])}
    ),
    ("POST", f"{_API}/agents/{{agent_id}}/revoke"): ACK,
    # pages
    ("GET", "/"): READ,
    ("GET", "/tree"): READ,
    ("GET", "/registers"): READ,
    ("GET", "/registers/{register_id}"): READ,
    ("GET", "/alerts"): READ,
    ("POST", "/alerts/ack"): Route("write", technical=True, form=lambda w, s: {"ids": s["{alert_id}"]}),
    ("POST", "/alerts/{alert_id}/ack"): Route("write", technical=True, form=lambda w, s: {}),
    ("POST", "/alerts/{alert_id}/comment"): Route("write", technical=True, form=lambda w, s: {"text": "x"}),
    ("POST", "/alerts/{alert_id}/silence"): Route("write", technical=True, form=lambda w, s: {"until": ""}),
    ("GET", "/events/stream"): Route("stream"),
    ("GET", "/static"): PUBLIC,
    # account pages (collector.web.pages.accounts); their forms carry the anonymous form token
    ("GET", "/login"): PUBLIC,
    ("POST", "/login"): PUBLIC,
    ("GET", "/signup"): PUBLIC,
    ("POST", "/signup"): PUBLIC,
    ("GET", "/confirm"): PUBLIC,
    ("POST", "/confirm"): PUBLIC,
    ("GET", "/password-reset"): PUBLIC,
    ("POST", "/password-reset"): PUBLIC,
    ("GET", "/password-reset/confirm"): PUBLIC,
    ("POST", "/password-reset/confirm"): PUBLIC,
    ("GET", "/invitations/accept"): PUBLIC,
    ("POST", "/invitations/accept"): PUBLIC,
    ("GET", "/reset"): PUBLIC,  # the links as mailed: redirects to the forms above
    ("GET", "/invite"): PUBLIC,
    ("POST", "/logout"): SELF,
    # administration pages (collector.web.pages.admin)
    ("GET", "/admin"): SELF,
    ("GET", "/admin/why"): READ,
    ("GET", "/admin/tree"): Route("write"),
    ("POST", "/admin/tree/nodes"): Route(
        "write", form=lambda w, s: {"parent_id": s["{parent_id}"], "kind": "store", "name": "Магазин со страницы"}
    ),
    ("POST", "/admin/tree/nodes/{node_id}"): Route("write", form=lambda w, s: {"name": "Переименован на странице"}),
    ("POST", "/admin/tree/nodes/{node_id}/delete"): Route("write", form=lambda w, s: {}),
    ("POST", "/admin/tree/import"): Route("write", form=lambda w, s: {"csv_text": "store\nНовый\n", "dry_run": "1"}),
    ("GET", "/admin/users"): Route("write"),  # every user's e-mail: group managers only
    ("POST", "/admin/groups"): Route("write", form=lambda w, s: {"name": "Группа со страницы"}),
    ("POST", "/admin/groups/{group_id}/members"): Route("write", form=lambda w, s: {"user_id": s["{user_id}"]}),
    ("POST", "/admin/groups/{group_id}/members/{user_id}/delete"): Route("write", form=lambda w, s: {}),
    ("POST", "/admin/grants"): Route(
        "write", form=lambda w, s: {"group_id": s["{group_id}"], "role": "viewer", "node_id": s["{node_id}"]}
    ),
    ("POST", "/admin/grants/{grant_id}/delete"): Route("write", form=lambda w, s: {}),
    ("POST", "/admin/invitations"): Route(
        "write", form=lambda w, s: {"group_id": s["{group_id}"], "email": "page.invite@example.test"}
    ),
    ("GET", "/admin/contracts"): Route("write", accounting=True),
    # Contract and КЭП forms are an accountant's own work, so they are sent without a body here (the
    # form check above refuses accountants); the owner's empty form comes back with its errors.
    ("POST", "/admin/contracts/{register_id}"): Route("write"),
    ("POST", "/admin/contracts/import"): Route("write"),
    ("GET", "/admin/kep"): Route("write", accounting=True),
    ("POST", "/admin/kep"): Route("write"),
    ("POST", "/admin/kep/{order_id}/transition"): Route("write"),
    ("POST", "/admin/kep/{order_id}/documents"): Route("write"),  # multipart: see test_pages_kep_workflow
    ("POST", "/admin/kep/certificates"): Route("write"),  # multipart: see test_pages_kep_workflow
    ("POST", "/admin/kep/alerts/{company_alert_id}/ack"): Route("write"),  # an accountant may: see the КЭП tests
    ("GET", "/admin/agents"): Route("write", technical=True),
    ("POST", "/admin/agents/tokens"): Route("write", technical=True, form=lambda w, s: {"node_id": s["{node_id}"]}),
    ("POST", "/admin/agents/{agent_id}/revoke"): Route("write", technical=True, form=lambda w, s: {}),
    ("POST", "/admin/agents/{agent_id}/place"): Route(
        "write", technical=True, form=lambda w, s: {"node_id": s["{node_id}"]}
    ),
    ("GET", "/admin/notifications"): Route("write"),
    ("POST", "/admin/notifications"): Route(
        "write",
        form=lambda w, s: {"channel": "webhook", "address": "https://hooks.example.test/kassa",
                           "principal_user_id": s["{user_id}"]},
    ),
    ("POST", "/admin/notifications/delete"): Route("write", form=lambda w, s: {"receiver_id": "999999999"}),
    ("POST", "/admin/notifications/test"): Route("write", form=lambda w, s: {"receiver_id": s["{receiver_id}"]}),
    ("POST", "/registers/{register_id}/fns-application"): Route(
        "write", technical=True, form=lambda w, s: {"kind": "fn_replacement"}
    ),
    ("POST", "/registers/{register_id}/ofd-document"): Route("write"),  # an accountant's: see test_signed_requests
    ("GET", "/registers/{register_id}/actions/{action}"): Route("write", technical=True),  # the confirmation page
    ("POST", "/registers/{register_id}/actions"): Route("write", technical=True, form=lambda w, s: {"action": "check_now"}),
    ("GET", "/tree/{node_id}/close-shifts"): Route("write", technical=True),
    ("POST", "/tree/{node_id}/close-shifts"): Route("write", technical=True, form=lambda w, s: {"hours": "1"}),
    ("GET", "/tree/{node_id}/close-shifts/{bulk_id}"): READ,
    ("GET", "/admin/company"): Route("write"),
    ("POST", "/admin/company"): Route("write", form=lambda w, s: {"time_zone": "Asia/Omsk"}),
    ("POST", "/admin/company/thresholds"): Route("write", form=lambda w, s: {"thr_shift_warning": "19"}),
    ("POST", "/admin/company/levels"): Route("write", form=lambda w, s: {"level_city": "Населённый пункт"}),
}
# Objects the tree decides about: out of a caller's view they must look nonexistent (404).
TREE_SCOPED = ("{register_id}", "{alert_id}", "{node_id}", "{agent_id}", "{action_id}")
ALLOWED_MISSES = {403, 404}


def routed(app: Any) -> set[tuple[str, str]]:
    found = set()
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        found.add((route.method, route.resource.canonical))
    return found


def fill(template: str, side: kit.Side) -> str:
    path = template
    for placeholder, value in side.values.items():
        path = path.replace(placeholder, value)
    assert "{" not in path, f"no sample object for a parameter of {template}"
    return path


def call(client: kit.Client, method: str, template: str, route: Route, side: kit.Side, who: str | None) -> kit.Reply:
    path = fill(template, side) if template != "/static" else "/static/missing.css"
    kwargs: dict[str, Any] = {"params": route.query} if route.query else {}
    if route.json is not None:
        kwargs["json"] = route.json(client.world, side)
    elif route.csv is not None:
        kwargs["data"] = route.csv(client.world, side).encode()
        kwargs["headers"] = {"Content-Type": "text/csv"}
    elif route.form is not None:
        form = route.form(client.world, side)
        if who is not None:
            token, cookies = client.page_csrf(who)
            form = {**form, "csrf_token": token}
            kwargs["cookies"] = cookies
        kwargs["data"] = form
    return client.call(method, path, who=who, **kwargs)


def test_every_route_is_classified(client: kit.Client) -> None:
    served = routed(client.app)
    unclassified = sorted(served - set(ROUTES))
    stale = sorted(set(ROUTES) - served)
    assert not unclassified, f"routes missing from the security table (classify them): {unclassified}"
    assert not stale, f"table entries no routes match (remove them): {stale}"


def test_a_new_unclassified_route_fails_the_check() -> None:
    async def sneaky(request: Any) -> Any:
        raise AssertionError("never called")

    app = create_app(WebSettings(web_auth="open", db_url="sqlite://"))
    app.router.add_get("/api/v1/sneaky/{thing}", sneaky)
    assert routed(app) - set(ROUTES) == {("GET", "/api/v1/sneaky/{thing}")}


def test_anonymous_callers_get_401_except_on_public_routes(client: kit.Client, world: kit.World) -> None:
    for (method, template), route in sorted(ROUTES.items()):
        reply = call(client, method, template, route, world.a, None)
        if route.access == "public":
            assert reply.status != 401, f"{method} {template} is public but answered 401"
        else:
            assert reply.status == 401, f"{method} {template} answered {reply.status} to an anonymous caller"
            assert world.registers["tverskaya"] not in reply.text


@pytest.mark.parametrize("who", ["owner_a", "moscow_op"])
def test_another_tenants_objects_look_nonexistent(client: kit.Client, world: kit.World, who: str) -> None:
    checked = 0
    for (method, template), route in sorted(ROUTES.items()):
        if "{" not in template or route.access in ("public", "stream"):
            continue
        reply = call(client, method, template, route, world.b, who)
        assert reply.status in ALLOWED_MISSES, f"{who}: {method} {template} on B's object answered {reply.status}"
        leaked = [marker for marker in world.b_markers if marker in reply.text and marker not in fill(template, world.b)]
        assert not leaked, f"{method} {template} leaked {leaked}"
        checked += 1
    assert checked >= 25


def test_lists_never_show_another_tenant(client: kit.Client, world: kit.World) -> None:
    for (method, template), route in sorted(ROUTES.items()):
        if method != "GET" or "{" in template or route.access not in ("read", "write", "self"):
            continue
        reply = call(client, method, template, route, world.a, "owner_a")
        assert reply.status == 200, f"{method} {template} answered {reply.status} to A's owner"
        leaked = [marker for marker in world.b_markers if marker in reply.text]
        assert not leaked, f"{method} {template} shows B's {leaked}"


def test_a_viewer_may_not_write(client: kit.Client, world: kit.World) -> None:
    for (method, template), route in sorted(ROUTES.items()):
        if route.access not in ("write", "admin"):
            continue
        reply = call(client, method, template, route, world.a, "viewer")
        assert reply.status == 403, f"viewer: {method} {template} answered {reply.status}"


def test_an_accountant_keeps_to_contracts_and_kep(client: kit.Client, world: kit.World) -> None:
    for (method, template), route in sorted(ROUTES.items()):
        if route.technical:
            reply = call(client, method, template, route, world.a, "accountant")
            assert reply.status == 403, f"accountant: {method} {template} answered {reply.status}"
        elif route.accounting:
            reply = call(client, method, template, route, world.a, "accountant")
            assert 200 <= reply.status < 300, f"accountant: {method} {template} answered {reply.status}: {reply.text}"


def test_a_city_grant_shows_nothing_of_another_city(client: kit.Client, world: kit.World) -> None:
    detail_checked = 0
    for (method, template), route in sorted(ROUTES.items()):
        if route.access in ("public", "stream"):
            continue
        if "{" not in template:
            if method == "GET" and route.access in ("read", "self"):
                reply = call(client, method, template, route, world.a, "moscow_op")
                assert reply.status == 200, f"{method} {template} answered {reply.status}"
                leaked = [marker for marker in world.spb_markers if marker in reply.text]
                assert not leaked, f"{method} {template} shows Петербург's {leaked} to the Moscow operator"
            continue
        if any(p in template for p in TREE_SCOPED):
            reply = call(client, method, template, route, world.spb, "moscow_op")
            assert reply.status == 404, f"moscow_op: {method} {template} on Петербург answered {reply.status}"
            detail_checked += 1
    assert detail_checked >= 18
    listed = call(client, "GET", "/api/v1/registers", READ, world.a, "moscow_op").json["items"]
    assert {item["register_id"] for item in listed} == {world.registers["tverskaya"], world.registers["arbat"]}


# A refusal must come from the rights check, not from the pages' CSRF guard.
PAGE_CSRF_REFUSAL = "Форма устарела"


def test_page_refusals_are_about_rights_not_the_form_token(client: kit.Client, world: kit.World) -> None:
    for (method, template), route in sorted(ROUTES.items()):
        if route.form is None:
            continue
        for who in ("viewer", "accountant"):
            reply = call(client, method, template, route, world.a, who)
            assert reply.status == 403 and PAGE_CSRF_REFUSAL not in reply.text, f"{who}: {method} {template}"


def test_the_owner_may_do_everything_the_others_were_refused(make_client: Any, fresh_world: kit.World) -> None:
    """The refusals above are about rights: the owner gets through every write with the same input
    (409 where the change itself conflicts: a node that still holds registers, a missing КЭП)."""
    client = make_client(on=fresh_world)
    outcomes = {}
    for (method, template), route in sorted(ROUTES.items(), key=_deletions_last):
        if route.access not in ("write", "self"):
            continue
        outcomes[(method, template)] = call(client, method, template, route, fresh_world.a, "owner_a").status
    refused = {key: status for key, status in outcomes.items() if not (200 <= status < 300 or status in (303, 409))}
    assert not refused, refused
    assert outcomes[("DELETE", "/api/v1/nodes/{node_id}")] == 409  # the store still has its register
    assert outcomes[("POST", "/api/v1/registers/{register_id}/fns-application")] == 409  # no КЭП yet
    audit = call(client, "GET", "/api/v1/audit", READ, fresh_world.a, "owner_a").json["items"]
    actions = {entry["action"] for entry in audit}  # (untagging an untagged register changes nothing)
    written = {"node.create", "node.rename", "tag.create", "register.tag", "group.create",
               "grant.create", "grant.revoke", "invitation.create", "contract.set",
               "token.create", "token.revoke", "enrollment.token_create", "enrollment.agent_revoke", "tree.levels"}
    assert written <= actions, written - actions
