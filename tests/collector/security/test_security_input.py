"""Bad input through the accounts API: a clear problem document naming what is wrong, and
nothing half-applied — malformed ИНН and e-mail, oversized fields, unknown roles, tree cycles,
clashing renames, broken CSV lines (tree and contracts), wrong media types and oversized files."""

from __future__ import annotations

import random
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))
import security_testkit as kit

from collector.accounts import kep, kep_documents
from collector.accounts.audit import Actor
from collector.accounts.csvrows import MAX_IMPORT_BYTES
from collector.accounts.errors import InvalidInput
from collector.storage import begin_write

SIGNUP = "/api/v1/auth/signup"
PROBLEM = "application/problem+json"


def _signup_body(**changes: Any) -> dict[str, Any]:
    body = {"email": "new@example.test", "password": kit.PASSWORD, "company": "Ромашка-2", "inn": kit.make_inn()}
    return {**body, **changes}


@pytest.mark.parametrize(
    ("changes", "status", "named"),
    [
        ({"inn": "1234567890"}, 422, "ИНН"),  # wrong control digit
        ({"inn": "12345abcde"}, 422, "ИНН"),
        ({"email": "not-an-email"}, 422, "e-mail"),
        ({"company": "x" * 201}, 422, "company"),
        ({"password": "p" * 257}, 422, "password"),
        ({"password": "short"}, 422, "at least"),
        ({"inn": "1" * 13}, 422, "inn"),
        ({"role": "owner"}, 422, "role"),  # unknown fields are refused, not ignored
    ],
)
def test_bad_sign_up_input_is_refused_by_name(client: kit.Client, changes: dict[str, Any], status: int, named: str) -> None:
    reply = client.call("POST", SIGNUP, json=_signup_body(**changes))
    assert reply.status == status, reply.text
    assert reply.media_type == PROBLEM
    assert named in reply.text
    assert client.mailer.sent == []


def test_malformed_json_and_wrong_media_type(client: kit.Client) -> None:
    broken = client.call("POST", SIGNUP, data=b"{not json", headers={"Content-Type": "application/json"})
    assert broken.status == 400 and broken.json["type"].endswith("malformed-json")
    form = client.call("POST", SIGNUP, data={"email": "x"})
    assert form.status == 415


def test_an_unknown_role_is_refused_and_nothing_granted(client: kit.Client, world: kit.World) -> None:
    group, node = int(world.a["{group_id}"]), world.nodes["moscow"]
    before = client.call("GET", "/api/v1/groups", who="owner_a").json
    reply = client.call("POST", "/api/v1/grants", who="owner_a", json={"group_id": group, "role": "superuser", "node_id": node})
    assert reply.status == 422
    assert [p["name"] for p in reply.json["invalid_params"]] == ["role"]
    assert client.call("GET", "/api/v1/groups", who="owner_a").json == before


def _parent_and_name(client: kit.Client, who: str, node_id: int) -> tuple[int | None, str]:
    nodes = client.call("GET", "/api/v1/tree", who=who).json["nodes"]
    found = next(node for node in nodes if node["id"] == node_id)
    return found["parent_id"], found["name"]


def test_a_tree_cycle_is_refused(make_client: Any, fresh_world: kit.World) -> None:
    client, n = make_client(on=fresh_world), fresh_world.nodes
    reply = client.call("PATCH", f"/api/v1/nodes/{n['brand']}", who="owner_a", json={"parent_id": n["moscow"]})
    assert reply.status == 422 and "below itself" in reply.json["detail"]
    root = client.call("PATCH", f"/api/v1/nodes/{n['root_a']}", who="owner_a", json={"parent_id": n["moscow"]})
    assert root.status == 422
    assert _parent_and_name(client, "owner_a", n["brand"]) == (n["root_a"], "Ромашка Маркет")


def test_a_move_with_a_clashing_rename_is_undone_whole(make_client: Any, fresh_world: kit.World) -> None:
    client, n = make_client(on=fresh_world), fresh_world.nodes
    reply = client.call(
        "PATCH", f"/api/v1/nodes/{n['arbat']}", who="owner_a", json={"parent_id": n["spb"], "name": "Невский 10"}
    )
    assert reply.status == 409 and "Невский 10" in reply.json["detail"]
    assert _parent_and_name(client, "owner_a", n["arbat"]) == (n["moscow"], "Арбат 5")  # the move rolled back too
    empty = client.call("PATCH", f"/api/v1/nodes/{n['arbat']}", who="owner_a", json={})
    assert empty.status == 422


def test_oversized_and_empty_names_in_the_tree(client: kit.Client, world: kit.World) -> None:
    parent = world.nodes["moscow"]
    long = client.call("POST", "/api/v1/nodes", who="owner_a", json={"parent_id": parent, "kind": "store", "name": "я" * 201})
    assert long.status == 422 and long.json["invalid_params"][0]["name"] == "name"
    blank = client.call("POST", "/api/v1/nodes", who="owner_a", json={"parent_id": parent, "kind": "store", "name": "   "})
    assert blank.status == 422 and "empty" in blank.json["detail"]
    level = client.call("POST", "/api/v1/nodes", who="owner_a", json={"parent_id": parent, "kind": "planet", "name": "Марс"})
    assert level.status == 422 and "unknown level" in level.json["detail"]


BROKEN_TREE_CSV = (
    "brand;city;store;register_id;protocol\n"
    "Ромашка Маркет;Казань;Баумана 1;;\n"  # fine: would create Казань and its store
    "Ромашка Маркет;Казань;Баумана 2;kkt-new-1;ftp\n"  # unknown protocol for a new register
    "Ромашка Маркет;Казань;;;\n"  # no store
    "a;b;c;d;e;f\n"  # too many cells
)


def test_a_broken_tree_csv_changes_nothing_and_names_its_lines(make_client: Any, fresh_world: kit.World) -> None:
    client = make_client(on=fresh_world)
    before = client.call("GET", "/api/v1/tree", who="owner_a").json
    headers = {"Content-Type": "text/csv"}
    dry = client.call("POST", "/api/v1/tree/import", who="owner_a", data=BROKEN_TREE_CSV.encode(), headers=headers,
                      params={"dry_run": "true"})
    assert dry.status == 200
    assert dry.json["ok"] is False and dry.json["applied"] is False
    assert [e["line"] for e in dry.json["errors"]] == [3, 4, 5]
    assert any("Казань" in change for change in dry.json["changes"])

    real = client.call("POST", "/api/v1/tree/import", who="owner_a", data=BROKEN_TREE_CSV.encode(), headers=headers)
    assert real.status == 422 and real.media_type == PROBLEM
    assert [p["name"] for p in real.json["invalid_params"]] == ["line 3", "line 4", "line 5"]
    assert client.call("GET", "/api/v1/tree", who="owner_a").json == before

    good = BROKEN_TREE_CSV.splitlines()[0] + "\n" + BROKEN_TREE_CSV.splitlines()[1] + "\n"
    applied = client.call("POST", "/api/v1/tree/import", who="owner_a", data=good.encode(), headers=headers)
    assert applied.status == 200 and applied.json["applied"] is True
    names = {node["name"] for node in client.call("GET", "/api/v1/tree", who="owner_a").json["nodes"]}
    assert {"Казань", "Баумана 1"} <= names
    audit = client.call("GET", "/api/v1/audit", who="owner_a", params={"target_type": "node"}).json["items"]
    assert any(entry["action"] == "node.create" and entry["details"].get("import_line") == 2 for entry in audit)


def test_a_broken_contract_csv_changes_nothing(make_client: Any, fresh_world: kit.World) -> None:
    client = make_client(on=fresh_world)
    mine, theirs = fresh_world.registers["tverskaya"], fresh_world.registers["b_store"]
    text = f"register_id,activated,paid_until\n{mine},да,2027-01-31\n{theirs},да,2027-01-31\n{mine}x,может быть,31.02.2027\n"
    reply = client.call("POST", "/api/v1/contracts/import", who="owner_a", data=text.encode(),
                        headers={"Content-Type": "text/csv"})
    assert reply.status == 422
    assert [p["name"] for p in reply.json["invalid_params"]] == ["line 3", "line 4"]
    # Another company's register reads exactly like a missing one.
    assert reply.json["invalid_params"][0]["reason"] == f"register {theirs!r} not found"
    contract = client.call("GET", f"/api/v1/registers/{mine}/contract", who="owner_a").json
    assert contract["activated"] is None  # the good line was not applied either


def test_import_media_type_and_size_are_checked(client: kit.Client) -> None:
    wrong = client.call("POST", "/api/v1/tree/import", who="owner_a", json={"store": "x"})
    assert wrong.status == 415
    huge = ("store\n" + "x" * (MAX_IMPORT_BYTES + 10)).encode()
    too_big = client.call("POST", "/api/v1/tree/import", who="owner_a", data=huge, headers={"Content-Type": "text/csv"})
    assert too_big.status == 413
    latin1 = client.call("POST", "/api/v1/tree/import", who="owner_a", data="store\nМосква\n".encode("cp1251"),
                         headers={"Content-Type": "text/csv"})
    assert latin1.status == 400 and "UTF-8" in latin1.json["detail"]


def test_kep_order_input_and_illegal_transitions(make_client: Any, fresh_world: kit.World) -> None:
    client = make_client(on=fresh_world)
    order = int(fresh_world.a["{order_id}"])
    employee = {"subject": "employee", "full_name": "Сидоров", "position": "Кассир", "email": "s@kep.test",
                "inn": kit.make_person_inn(random.Random(7))}
    no_snils = client.call("POST", "/api/v1/kep-orders", who="owner_a", json=employee)
    assert no_snils.status == 422 and "СНИЛС" in no_snils.json["detail"]
    bad_inn = client.call("POST", "/api/v1/kep-orders", who="owner_a", json={**employee, "subject": "head", "inn": "123456789012"})
    assert bad_inn.status == 422 and "ИНН" in bad_inn.json["detail"]
    for who in ("owner_a", "accountant"):  # the issuer's move, whatever the customer's role
        jump = client.call("POST", f"/api/v1/kep-orders/{order}/transition", who=who, json={"to": "issued"})
        assert jump.status == 403, jump.text
    state = client.call("GET", "/api/v1/kep-orders", who="owner_a").json["items"]
    assert {item["id"]: item["state"] for item in state}[order] == "requested"
    no_kep = client.call("POST", f"/api/v1/registers/{fresh_world.registers['tverskaya']}/fns-application",
                         who="owner_a", json={"kind": "fn_replacement"})
    assert no_kep.status == 409 and "КЭП" in no_kep.json["detail"]


def test_an_issued_kep_unlocks_the_fns_application(make_client: Any, fresh_world: kit.World, engine: sa.Engine) -> None:
    client = make_client(on=fresh_world)
    order, register = int(fresh_world.a["{order_id}"]), fresh_world.registers["tverskaya"]
    with begin_write(engine) as conn:  # the issuer's side (``kassa-collector kep``) and the customer's upload
        kep.advance(conn, Actor.cli(), fresh_world.tenant_a, order, kep.KepState.DOCUMENTS_REQUESTED, at=kit.T0,
                    documents=["passport"])
        kep_documents.add_document(conn, Actor.user(conn, fresh_world.users["accountant"]), fresh_world.tenant_a,
                                   order, "passport", "p.pdf", b"%PDF-1.7", at=kit.T0)
    path = f"/api/v1/kep-orders/{order}/transition"
    assert client.call("POST", path, who="accountant", json={"to": "documents_received"}).status == 403
    with begin_write(engine) as conn:
        kep.advance(conn, Actor.user(conn, fresh_world.users["accountant"]), fresh_world.tenant_a, order,
                    kep.KepState.DOCUMENTS_RECEIVED, at=kit.T0)
        expired = kep.IssuedCertificate("01AB", "Директор А", kit.T0 - timedelta(days=1))
        with pytest.raises(InvalidInput, match="expired"):
            kep.advance(conn, Actor.cli(), fresh_world.tenant_a, order, kep.KepState.ISSUED, at=kit.T0,
                        certificate=expired)
        kep.advance(conn, Actor.cli(), fresh_world.tenant_a, order, kep.KepState.ISSUED, at=kit.T0,
                    certificate=kep.IssuedCertificate("01AB", "Директор А", kit.T0 + timedelta(days=365)))
    assert client.call("GET", "/api/v1/kep", who="viewer").json["valid"] is True

    assert client.call("POST", f"/api/v1/registers/{register}/fns-application", who="accountant",
                       json={"kind": "fn_replacement"}).status == 403  # a technical action
    applied = client.call("POST", f"/api/v1/registers/{register}/fns-application", who="owner_a",
                          json={"kind": "fn_replacement", "note": "ФН заменён"})
    assert applied.status == 201 and "01AB" in applied.json["message"]
    audit = client.call("GET", "/api/v1/audit", who="owner_a", params={"target_id": register}).json["items"]
    assert audit[0]["action"] == "register.fns_application" and audit[0]["details"]["kep_serial"] == "01AB"
