"""Alert lists and the user actions (ack, comment, silence, bulk ack) with their history."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from collector.storage import Scope


def _rules(reply: Any) -> list[str]:
    return [item["rule"] for item in reply.json["items"]]


def test_active_alerts_worst_first_then_oldest(api, fleet) -> None:
    reply = api.get("/api/v1/alerts")
    assert reply.status == 200
    assert _rules(reply) == ["shift_too_long", "ofd_backlog", "fn_validity", "agent_offline", "register_unreachable"]
    assert reply.json["total"] == 5


def test_sort_by_time_is_newest_first(api, fleet) -> None:
    reply = api.get("/api/v1/alerts", params={"sort": "time"})
    assert _rules(reply) == ["register_unreachable", "shift_too_long", "agent_offline", "ofd_backlog", "fn_validity"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"state": "cleared"}, ["paper_out"]),
        ({"state": "all", "severity": "warning", "sort": "time"}, ["register_unreachable", "shift_too_long", "agent_offline", "paper_out", "ofd_backlog", "fn_validity"]),
        ({"severity": "critical"}, ["shift_too_long", "ofd_backlog"]),
        ({"rule": "fn_validity"}, ["fn_validity"]),
        ({"acknowledged": "true"}, []),
        ({"acknowledged": "false", "severity": "blocked"}, ["shift_too_long"]),
    ],
)
def test_alert_filters(api, fleet, params, expected) -> None:
    assert _rules(api.get("/api/v1/alerts", params=params)) == expected


def test_alert_filters_by_node_and_register(api, fleet) -> None:
    assert _rules(api.get("/api/v1/alerts", params={"node": fleet.nodes["moscow"]})) == ["ofd_backlog", "agent_offline"]
    by_register = api.get("/api/v1/alerts", params={"register": fleet.registers["nevsky"]})
    assert _rules(by_register) == ["fn_validity", "register_unreachable"]


@pytest.mark.usefixtures("mutable_fleet")
def test_acknowledge_writes_who_and_when_once(api, fleet, t0) -> None:
    alert_id = fleet.alerts["tverskaya:ofd_backlog"]
    reply = api.post(f"/api/v1/alerts/{alert_id}/ack")
    assert reply.status == 200
    alert = reply.json
    assert alert["acknowledged"] is True
    assert alert["acked_by"] == "admin"
    assert datetime.fromisoformat(alert["acked_at"]) == t0
    assert [(h["action"], h["actor"]) for h in alert["history"]] == [("acknowledged", "admin")]
    again = api.post(f"/api/v1/alerts/{alert_id}/ack").json
    assert len(again["history"]) == 1  # acknowledging twice changes nothing
    listed = next(i for i in api.get("/api/v1/registers").json["items"] if i["register_id"] == fleet.registers["tverskaya"])
    assert listed["active_alerts"][0]["acknowledged"] is True
    assert _rules(api.get("/api/v1/alerts", params={"acknowledged": "true"})) == ["ofd_backlog"]


@pytest.mark.usefixtures("mutable_fleet")
def test_acknowledging_a_cleared_alert_is_allowed(api, fleet) -> None:
    reply = api.post(f"/api/v1/alerts/{fleet.alerts['arbat:paper_out']}/ack")
    assert reply.status == 200
    assert reply.json["acknowledged"] is True
    assert reply.json["status"] == "cleared"


@pytest.mark.usefixtures("mutable_fleet")
def test_comment_is_stored_with_author_and_in_history(api, fleet, t0) -> None:
    alert_id = fleet.alerts["nevsky:fn_validity"]
    reply = api.post(f"/api/v1/alerts/{alert_id}/comments", json={"text": "  ФН заказан, замена в пятницу  "})
    assert reply.status == 201
    comment = reply.json
    assert comment["text"] == "ФН заказан, замена в пятницу"
    assert comment["author"] == "admin"
    assert datetime.fromisoformat(comment["at"]) == t0
    detail = api.get(f"/api/v1/alerts/{alert_id}").json
    assert [c["id"] for c in detail["comments"]] == [comment["id"]]
    assert detail["history"][-1]["action"] == "commented"
    assert detail["history"][-1]["details"]["text"] == "ФН заказан, замена в пятницу"


@pytest.mark.usefixtures("mutable_fleet")
def test_silence_and_lift_write_history(api, fleet, t0) -> None:
    alert_id = fleet.alerts["arbat:agent_offline"]
    until = t0 + timedelta(hours=2)
    silenced = api.post(f"/api/v1/alerts/{alert_id}/silence", json={"until": until.isoformat()})
    assert silenced.status == 200
    assert datetime.fromisoformat(silenced.json["silenced_until"]) == until
    lifted = api.post(f"/api/v1/alerts/{alert_id}/silence", json={"until": None}).json
    assert lifted["silenced_until"] is None
    assert [(h["action"], h["actor"]) for h in lifted["history"]] == [("silenced", "admin"), ("unsilenced", "admin")]
    assert datetime.fromisoformat(lifted["history"][0]["details"]["to"]) == until


@pytest.mark.usefixtures("mutable_fleet")
def test_bulk_acknowledge(api, fleet) -> None:
    first, second = fleet.alerts["tverskaya:ofd_backlog"], fleet.alerts["nevsky:fn_validity"]
    api.post(f"/api/v1/alerts/{first}/ack")
    reply = api.post("/api/v1/alerts/ack", json={"ids": [second, first, second]})
    assert reply.status == 200
    assert reply.json == {"acknowledged": [second], "unchanged": [first]}


@pytest.mark.usefixtures("mutable_fleet")
def test_bulk_acknowledge_is_all_or_nothing(api, fleet) -> None:
    good = fleet.alerts["nevsky:fn_validity"]
    reply = api.post("/api/v1/alerts/ack", json={"ids": [good, 999_999]})
    assert reply.status == 404
    assert "999999" in reply.json["detail"]
    assert api.get(f"/api/v1/alerts/{good}").json["acknowledged"] is False


@pytest.mark.usefixtures("mutable_fleet")
def test_actions_outside_the_scope_are_not_found_and_write_nothing(make_api, make_api_as, fleet) -> None:
    moscow = make_api_as(Scope.subtrees(fleet.tenant_a, [fleet.nodes["moscow"]]))
    outside = fleet.alerts["nevsky:fn_validity"]
    assert moscow.get(f"/api/v1/alerts/{outside}").status == 404
    assert moscow.post(f"/api/v1/alerts/{outside}/ack").status == 404
    assert moscow.post(f"/api/v1/alerts/{outside}/comments", json={"text": "x"}).status == 404
    assert moscow.post(f"/api/v1/alerts/{outside}/silence", json={"until": None}).status == 404
    assert moscow.post("/api/v1/alerts/ack", json={"ids": [fleet.alerts["tverskaya:ofd_backlog"], outside]}).status == 404
    assert _rules(moscow.get("/api/v1/alerts")) == ["ofd_backlog", "agent_offline"]
    admin_view = make_api().get(f"/api/v1/alerts/{outside}").json
    assert admin_view["acknowledged"] is False and admin_view["history"] == [] and admin_view["comments"] == []
    inside = moscow.post(f"/api/v1/alerts/{fleet.alerts['tverskaya:ofd_backlog']}/ack").json
    assert inside["acked_by"] == "operator-moscow"


@pytest.mark.usefixtures("mutable_fleet")
@pytest.mark.parametrize(
    ("path", "body", "status", "param"),
    [
        ("comments", {"text": ""}, 422, "text"),
        ("comments", {"text": "   "}, 422, None),  # refused by the lifecycle: whitespace only
        ("comments", {}, 422, "text"),
        ("comments", {"text": "ok", "extra": 1}, 422, "extra"),
        ("silence", {"until": "2026-11-28T12:00:00"}, 422, "until"),  # no zone: ambiguous
        ("silence", {"until": "tomorrow"}, 422, "until"),
    ],
)
def test_invalid_bodies_are_problems_naming_the_field(api, fleet, path, body, status, param) -> None:
    reply = api.post(f"/api/v1/alerts/{fleet.alerts['arbat:agent_offline']}/{path}", json=body)
    assert reply.status == status
    assert reply.media_type == "application/problem+json"
    if param is not None:
        assert param in [p["name"] for p in reply.json["invalid_params"]]


def test_body_media_type_and_syntax(api, fleet) -> None:
    url = f"/api/v1/alerts/{fleet.alerts['arbat:agent_offline']}/comments"
    wrong_type = api.post(url, data="text=hi", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert wrong_type.status == 415
    malformed = api.post(url, data="{not json", headers={"Content-Type": "application/json"})
    assert malformed.status == 400
    assert malformed.json["type"].endswith("malformed-json")
    empty_ids = api.post("/api/v1/alerts/ack", json={"ids": []})
    assert empty_ids.status == 422


@pytest.mark.usefixtures("mutable_fleet")
def test_a_viewer_may_see_but_not_act(make_api_as, fleet) -> None:
    # sees the whole tenant, may act on nothing (an empty set of nodes)
    viewer = make_api_as(Scope.tenant(fleet.tenant_a), action_scope=Scope.subtrees(fleet.tenant_a, []))
    alert_id = fleet.alerts["tverskaya:ofd_backlog"]
    assert viewer.get(f"/api/v1/alerts/{alert_id}").status == 200
    for reply in (
        viewer.post(f"/api/v1/alerts/{alert_id}/ack"),
        viewer.post(f"/api/v1/alerts/{alert_id}/comments", json={"text": "x"}),
        viewer.post(f"/api/v1/alerts/{alert_id}/silence", json={"until": None}),
        viewer.post("/api/v1/alerts/ack", json={"ids": [alert_id]}),
    ):
        assert reply.status == 403
        assert reply.media_type == "application/problem+json"
    assert viewer.get(f"/api/v1/alerts/{alert_id}").json["history"] == []
    # out of sight stays 404, not 403: existence is not revealed
    assert viewer.post(f"/api/v1/alerts/{fleet.alerts['b_store:shift_too_long']}/ack").status == 404
