"""The remote-action API over HTTP, on SQLite and PostgreSQL: an owner and an operator request
actions (201), a second one while the first is unfinished is a 409 with the reason, the register's
list and one action read back, rights per role, and the bulk preview and run."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import pytest

from collector.storage.engine import begin_write
from collector.web.routing import ENGINE_KEY

sys.path.insert(0, str(Path(__file__).parents[2]))
sys.path.insert(0, str(Path(__file__).parents[2] / "security"))
import accounts_testkit as accounts_kit
import security_testkit as kit
from actions_testkit import serve_register

engine = accounts_kit.engine
client = pytest.fixture(kit.fresh_site, name="client")
API = "/api/v1"


def serve(client: kit.Client, *keys: str, open_for: timedelta = timedelta(hours=2)) -> None:
    w = client.world
    with begin_write(client.app[ENGINE_KEY]) as conn:
        for key in keys:
            serve_register(conn, w.tenant_a, w.registers[key], f"agent-served-{w.registers[key]}", kit.T0,
                           open_for=open_for)


def test_request_list_and_read_an_action_and_one_at_a_time(client: kit.Client) -> None:
    serve(client, "tverskaya")
    register = client.world.registers["tverskaya"]
    made = client.call("POST", f"{API}/registers/{register}/actions", who="moscow_op", json={"action": "x_report"})
    assert made.status == 201, made.text
    action = made.json
    assert (action["status"], action["action"], action["register_id"]) == ("requested", "x_report", register)
    busy = client.call("POST", f"{API}/registers/{register}/actions", who="owner_a", json={"action": "close_shift"})
    assert busy.status == 409 and action["id"] in busy.text
    listed = client.call("GET", f"{API}/registers/{register}/actions", who="viewer").json
    assert listed["total"] == 2  # with the finished one the world seeds
    assert {item["id"]: item["status"] for item in listed["items"]}[action["id"]] == "requested"
    one = client.call("GET", f"{API}/actions/{action['id']}", who="accountant")
    assert one.status == 200 and one.json["requested_by"] == client.world.emails["moscow_op"]


@pytest.mark.parametrize(("who", "status"), [("accountant", 403), ("viewer", 403), ("owner_a", 201)])
def test_who_may_request(client: kit.Client, who: str, status: int) -> None:
    serve(client, "nevsky")
    reply = client.call("POST", f"{API}/registers/{client.world.registers['nevsky']}/actions", who=who,
                        json={"action": "check_now"})
    assert reply.status == status, reply.text


def test_an_operator_outside_the_subtree_gets_404_and_bad_input_422(client: kit.Client) -> None:
    serve(client, "nevsky", "tverskaya")
    nevsky = client.call("POST", f"{API}/registers/{client.world.registers['nevsky']}/actions", who="moscow_op",
                         json={"action": "check_now"})
    assert nevsky.status == 404
    unknown = client.call("POST", f"{API}/registers/{client.world.registers['tverskaya']}/actions", who="owner_a",
                          json={"action": "format_disk"})
    assert unknown.status == 422
    wrong_state = client.call("POST", f"{API}/registers/{client.world.registers['tverskaya']}/actions", who="owner_a",
                              json={"action": "set_datetime"})
    assert wrong_state.status == 409 and "shift closed" in wrong_state.text


def test_bulk_preview_then_run(client: kit.Client) -> None:
    w = client.world
    serve(client, "tverskaya", "arbat", "nevsky", open_for=timedelta(hours=30))
    body = {"node_id": w.nodes["moscow"], "min_shift_hours": 24}
    preview = client.call("POST", f"{API}/actions/bulk/preview", who="moscow_op", json=body)
    assert preview.status == 200, preview.text
    assert sorted(item["register_id"] for item in preview.json["items"]) == sorted(
        [w.registers["tverskaya"], w.registers["arbat"]])
    run = client.call("POST", f"{API}/actions/bulk", who="moscow_op", json=body)
    assert run.status == 200, run.text
    assert {item["status"] for item in run.json["items"]} == {"requested"} and len(run.json["items"]) == 2
    again = client.call("POST", f"{API}/actions/bulk", who="moscow_op", json=body).json
    assert {item["status"] for item in again["items"]} == {"refused"}  # each register's Z-report is still unfinished
    assert client.call("POST", f"{API}/actions/bulk/preview", who="moscow_op",
                       json={"node_id": w.nodes["spb"], "min_shift_hours": 24}).status == 404
