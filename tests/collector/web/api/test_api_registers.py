"""GET /api/v1/registers (filters, sort, paging, time to block), the CSV export and register detail."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest

from collector.storage import Scope

DAY = 86_400


def _ids(reply: Any, fleet: Any) -> list[str]:
    by_id = {register_id: key for key, register_id in fleet.registers.items()}
    return [by_id[item["register_id"]] for item in reply.json["items"]]


def test_default_list_puts_cannot_sell_first_then_time_left_then_nothing_threatening(api, fleet) -> None:
    reply = api.get("/api/v1/registers")
    assert reply.status == 200
    assert reply.json["total"] == 4
    assert _ids(reply, fleet) == ["b_store", "tverskaya", "nevsky", "arbat"]
    assert [item["sell_status"] for item in reply.json["items"]] == ["cannot_sell", "will_stop", "will_stop", "no_threat"]


def test_each_register_says_whether_it_can_sell_and_what_to_do(api, fleet) -> None:
    items = {item["register_id"]: item for item in api.get("/api/v1/registers").json["items"]}
    b_store = items[fleet.registers["b_store"]]
    assert b_store["sell_text"] == "Сейчас не может продавать: смена открыта 26 ч"
    assert b_store["block_cause"] == "shift_too_long" and b_store["sell_reasons"] == ["shift_too_long"]
    assert b_store["fix"].startswith("Закройте смену (Z-отчёт)")
    tverskaya = items[fleet.registers["tverskaya"]]
    assert tverskaya["sell_text"] == "через 10 дн.: 30 дней без передачи документов в ОФД"
    assert "Проверьте интернет в магазине" in tverskaya["fix"]
    assert items[fleet.registers["arbat"]]["sell_text"] == "Не грозит" and items[fleet.registers["arbat"]]["fix"] is None
    only_blocked = api.get("/api/v1/registers?sell=cannot_sell").json
    assert [item["register_id"] for item in only_blocked["items"]] == [fleet.registers["b_store"]]


def test_time_to_block_seconds_cause_and_null_when_nothing_threatens(api, fleet, t0) -> None:
    items = {item["register_id"]: item for item in api.get("/api/v1/registers").json["items"]}
    tverskaya = items[fleet.registers["tverskaya"]]
    # 30-day limit minus a 20-day-old unsent document, on the register clock.
    assert tverskaya["time_to_block_seconds"] == 10 * DAY
    assert tverskaya["block_cause"] == "ofd_backlog"
    assert tverskaya["blocks_at"].startswith((t0 + timedelta(days=10)).date().isoformat())
    nevsky = items[fleet.registers["nevsky"]]
    # ФН valid through the whole day 10 days ahead: midnight after it is 10 d 12 h from 12:00 local.
    assert nevsky["time_to_block_seconds"] == 10 * DAY + 12 * 3600
    assert nevsky["block_cause"] == "fn_validity"
    arbat = items[fleet.registers["arbat"]]
    assert arbat["time_to_block_seconds"] is None
    assert arbat["blocks_at"] is None
    assert arbat["block_cause"] is None


def test_items_carry_identity_node_path_state_parts_and_active_alerts(api, fleet) -> None:
    item = next(i for i in api.get("/api/v1/registers").json["items"] if i["register_id"] == fleet.registers["tverskaya"])
    assert item["serial"] == "0010670001"
    assert item["protocol"] == "shtrih"
    assert item["model"] == "ШТРИХ-М-01Ф"
    assert item["agent_id"] == "agent-tverskaya"
    assert item["online"] is True and item["link_up"] is True
    assert item["node"] == {
        "id": fleet.nodes["tverskaya"],
        "name": "Тверская 1",
        "path": ["ООО Ромашка", "Ромашка Маркет", "Москва", "Тверская 1"],
    }
    assert item["shift"] == {"status": "open", "opened_at": "2026-11-28T07:00:00"}
    assert item["fn"]["serial"] == "9996044010670001"
    assert item["fn"]["valid_until"] is not None
    assert item["ofd"] == {"unsent_count": 12, "first_unsent_at": "2026-11-08T12:00:00"}
    assert item["worst_severity"] == "critical"
    [alert] = item["active_alerts"]
    assert alert["rule"] == "ofd_backlog"
    assert alert["severity"] == "critical"
    assert alert["acknowledged"] is False
    assert alert["id"] == fleet.alerts["tverskaya:ofd_backlog"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "online"}, ["b_store", "tverskaya"]),  # cannot sell now first
        ({"status": "offline"}, ["arbat"]),
        ({"status": "unreachable"}, ["nevsky"]),
        ({"severity": "critical"}, ["b_store", "tverskaya"]),
        ({"severity": "major"}, ["b_store", "tverskaya", "nevsky", "arbat"]),
        ({"severity": "blocked"}, ["b_store"]),
        ({"rule": "fn_validity"}, ["nevsky"]),
        ({"rule": "paper_out"}, []),  # only a cleared one exists
        ({"tag": "24/7"}, ["tverskaya", "nevsky"]),
        ({"protocol": "atol"}, ["b_store", "arbat"]),
        ({"q": "0003"}, ["nevsky"]),
        ({"q": "тверская"}, ["tverskaya"]),  # store name, any case, Cyrillic
        ({"q": "99960440"}, ["b_store", "tverskaya", "nevsky", "arbat"]),  # ФН serial prefix
        ({"protocol": "shtrih", "status": "online"}, ["tverskaya"]),
    ],
)
def test_filters(api, fleet, params, expected) -> None:
    reply = api.get("/api/v1/registers", params=params)
    assert reply.status == 200
    assert _ids(reply, fleet) == expected
    assert reply.json["total"] == len(expected)


def test_node_filter_takes_the_whole_subtree(api, fleet) -> None:
    moscow = api.get("/api/v1/registers", params={"node": fleet.nodes["moscow"]})
    assert _ids(moscow, fleet) == ["tverskaya", "arbat"]
    brand = api.get("/api/v1/registers", params={"node": fleet.nodes["brand"]})
    assert sorted(_ids(brand, fleet)) == ["arbat", "nevsky", "tverskaya"]


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("serial", ["tverskaya", "arbat", "nevsky", "b_store"]),
        ("severity", ["b_store", "tverskaya", "nevsky", "arbat"]),  # equal majors: sooner block first
        ("time_to_block", ["b_store", "tverskaya", "nevsky", "arbat"]),
    ],
)
def test_sorts(api, fleet, sort, expected) -> None:
    assert _ids(api.get("/api/v1/registers", params={"sort": sort}), fleet) == expected


def test_pagination_walks_the_same_order_and_keeps_the_total(api, fleet) -> None:
    whole = _ids(api.get("/api/v1/registers"), fleet)
    pages = []
    for offset in (0, 3):
        reply = api.get("/api/v1/registers", params={"limit": 3, "offset": offset})
        assert reply.json["total"] == 4
        assert reply.json["limit"] == 3 and reply.json["offset"] == offset
        pages.extend(_ids(reply, fleet))
    assert pages == whole
    assert api.get("/api/v1/registers", params={"offset": 10}).json["items"] == []


def _csv_rows(reply: Any) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(reply.text), delimiter=";"))


@pytest.mark.parametrize(
    "params",
    [{}, {"status": "online"}, {"severity": "major", "sort": "serial"}, {"node": "moscow"}, {"q": "лютик"}, {"limit": 2, "offset": 1}],
)
def test_csv_export_equals_the_filtered_list(api, fleet, params) -> None:
    params = {key: fleet.nodes[value] if key == "node" else value for key, value in params.items()}
    listed = api.get("/api/v1/registers", params=params).json["items"]
    reply = api.get("/api/v1/registers.csv", params=params)
    assert reply.status == 200
    assert reply.media_type == "text/csv"
    assert reply.body.startswith(b"\xef\xbb\xbf")  # BOM: spreadsheets then read the Cyrillic right
    assert "attachment" in reply.headers["Content-Disposition"]
    rows = _csv_rows(reply)
    assert [row["register_id"] for row in rows] == [item["register_id"] for item in listed]
    for row, item in zip(rows, listed, strict=True):
        assert row["serial"] == (item["serial"] or "")
        assert row["node_path"] == " / ".join(item["node"]["path"])
        assert row["worst_severity"] == (item["worst_severity"] or "")
        assert row["time_to_block_seconds"] == ("" if item["time_to_block_seconds"] is None else str(item["time_to_block_seconds"]))
        assert row["block_cause"] == (item["block_cause"] or "")
        assert row["active_alerts"] == ",".join(f"{a['rule']}:{a['severity']}" for a in item["active_alerts"])


def test_csv_export_is_not_limited_to_one_page(api, fleet) -> None:
    rows = _csv_rows(api.get("/api/v1/registers.csv"))
    assert len(rows) == 4


def test_register_detail_has_state_contract_alerts_and_events(api, fleet) -> None:
    register_id = fleet.registers["tverskaya"]
    reply = api.get(f"/api/v1/registers/{register_id}")
    assert reply.status == 200
    detail = reply.json
    assert detail["register_id"] == register_id
    assert detail["tags"] == ["24/7"]
    assert detail["state"]["serial"] == "0010670001"
    assert detail["state"]["ofd"]["unsent_count"] == 12
    assert detail["contract"]["activated"] is True
    assert [alert["rule"] for alert in detail["alerts"]] == ["ofd_backlog"]
    assert [event["kind"] for event in detail["recent_events"]] == ["link_lost", "ofd_backlog_started", "shift_opened"]
    assert detail["time_to_block_seconds"] == 10 * DAY


def test_register_detail_lists_active_alerts_before_recent_cleared_ones(api, fleet) -> None:
    detail = api.get(f"/api/v1/registers/{fleet.registers['arbat']}").json
    assert [(alert["rule"], alert["status"]) for alert in detail["alerts"]] == [
        ("agent_offline", "active"),
        ("paper_out", "cleared"),
    ]
    assert detail["contract"] is None


def test_history_points_in_a_window(api, fleet, t0) -> None:
    register_id = fleet.registers["tverskaya"]
    reply = api.get(f"/api/v1/registers/{register_id}/history")
    points = reply.json["points"]
    assert [point["unsent_count"] for point in points] == [10, 11, 12]
    assert all(point["oldest_unsent_age_seconds"] == 20 * DAY for point in points)
    assert points[0]["shift_status"] == "open"
    window = {"since": (t0 - timedelta(hours=2)).isoformat(), "until": (t0 - timedelta(hours=1)).isoformat()}
    assert [p["unsent_count"] for p in api.get(f"/api/v1/registers/{register_id}/history", params=window).json["points"]] == [11]
    assert len(api.get(f"/api/v1/registers/{register_id}/history", params={"limit": 2}).json["points"]) == 2


def test_events_newest_first_and_by_kind(api, fleet) -> None:
    register_id = fleet.registers["tverskaya"]
    events = api.get(f"/api/v1/registers/{register_id}/events").json["items"]
    assert [event["kind"] for event in events] == ["link_lost", "ofd_backlog_started", "shift_opened"]
    assert events[0]["data"] == {"error": "timeout"}
    only = api.get(f"/api/v1/registers/{register_id}/events", params={"kind": "shift_opened"}).json["items"]
    assert [event["kind"] for event in only] == ["shift_opened"]


def test_a_scoped_caller_sees_only_its_subtree(make_api_as, fleet) -> None:
    moscow = make_api_as(Scope.subtrees(fleet.tenant_a, [fleet.nodes["moscow"]]))
    listed = moscow.get("/api/v1/registers")
    assert _ids(listed, fleet) == ["tverskaya", "arbat"]
    assert listed.json["total"] == 2
    assert len(_csv_rows(moscow.get("/api/v1/registers.csv"))) == 2
    # even naming a node outside the grant does not widen the view
    assert moscow.get("/api/v1/registers", params={"node": fleet.nodes["spb"]}).json["items"] == []


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/registers/{nevsky}",
        "/api/v1/registers/{nevsky}/history",
        "/api/v1/registers/{nevsky}/events",
        "/api/v1/registers/{b_store}",
    ],
)
def test_registers_outside_the_scope_are_not_found(make_api_as, fleet, path) -> None:
    moscow = make_api_as(Scope.subtrees(fleet.tenant_a, [fleet.nodes["moscow"]]))
    reply = moscow.get(path.format(**fleet.registers))
    assert reply.status == 404
    assert reply.media_type == "application/problem+json"
    assert reply.json["status"] == 404
    assert "outside your scope" in reply.json["detail"]


def test_other_tenant_sees_only_its_own(make_api_as, fleet) -> None:
    tenant_b = make_api_as(Scope.tenant(fleet.tenant_b))
    assert _ids(tenant_b.get("/api/v1/registers"), fleet) == ["b_store"]
    assert tenant_b.get(f"/api/v1/registers/{fleet.registers['tverskaya']}").status == 404


def test_time_to_block_counts_down_with_the_clock_and_goes_negative_once_blocked(make_api, fleet, t0) -> None:
    later = make_api(clock=lambda: t0 + timedelta(days=11))
    items = {item["register_id"]: item for item in later.get("/api/v1/registers").json["items"]}
    assert items[fleet.registers["tverskaya"]]["time_to_block_seconds"] == -DAY
    assert items[fleet.registers["nevsky"]]["time_to_block_seconds"] == -DAY // 2
    assert items[fleet.registers["tverskaya"]]["block_cause"] == "ofd_backlog"
