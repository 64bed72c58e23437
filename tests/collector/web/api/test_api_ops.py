"""Tree and rollups, dead letters, and the operations endpoints (healthz, readyz, metrics)."""

from __future__ import annotations

import asyncio
import base64
from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, Counter
from pydantic import SecretStr

from collector.config import CollectorConfig
from collector.storage import Scope, create_engine_from_url, migrate
from collector.storage import repository as repo
from collector.web import StaticTokenAuth, WebSettings, create_app


def _names(tree: list[dict]) -> list:
    return [(node["name"], _names(node["children"])) if node["children"] else node["name"] for node in tree]


def test_node_tree_nests_every_visible_node(api, fleet) -> None:
    reply = api.get("/api/v1/nodes")
    assert reply.status == 200
    assert _names(reply.json["roots"]) == [
        ("ООО Ромашка", [("Ромашка Маркет", [("Москва", ["Тверская 1", "Арбат 5"]), ("Санкт-Петербург", ["Невский 10"])])]),
        ("ООО Лютик", ["Лютик Центр"]),
    ]


def test_a_subtree_grant_sees_its_node_as_the_root(make_api_as, fleet) -> None:
    moscow = make_api_as(Scope.subtrees(fleet.tenant_a, [fleet.nodes["moscow"]]))
    assert _names(moscow.get("/api/v1/nodes").json["roots"]) == [("Москва", ["Тверская 1", "Арбат 5"])]
    rollups = {item["name"]: item for item in moscow.get("/api/v1/nodes/rollups").json["items"]}
    assert set(rollups) == {"Москва", "Тверская 1", "Арбат 5"}


def test_rollups_count_every_descendant_and_keep_the_earliest_block(api, fleet) -> None:
    rollups = {item["id"]: item for item in api.get("/api/v1/nodes/rollups").json["items"]}
    tverskaya_blocks = fleet.blocks["tverskaya"].at
    for key in ("legal", "brand"):
        node = rollups[fleet.nodes[key]]
        assert node["registers"] == 3
        assert node["by_severity"] == {"info": 0, "warning": 0, "major": 2, "critical": 1, "blocked": 0}
        assert datetime.fromisoformat(node["earliest_blocks_at"]) == tverskaya_blocks
    spb = rollups[fleet.nodes["spb"]]
    assert spb["registers"] == 1 and spb["by_severity"]["major"] == 1
    assert datetime.fromisoformat(spb["earliest_blocks_at"]) == fleet.blocks["nevsky"].at
    arbat = rollups[fleet.nodes["arbat"]]
    assert arbat["earliest_blocks_at"] is None
    assert rollups[fleet.nodes["b_legal"]]["by_severity"]["blocked"] == 1
    # b_store cannot sell now (shift over 24 h): counted as such, and its past is no "stop ahead".
    assert rollups[fleet.nodes["b_legal"]]["cannot_sell"] == 1
    assert rollups[fleet.nodes["b_legal"]]["earliest_blocks_at"] is None
    assert rollups[fleet.nodes["legal"]]["cannot_sell"] == 0


def test_dead_letters_newest_first_paged_with_raw_bytes(api, fleet, t0) -> None:
    first = api.get("/api/v1/dead-letters", params={"limit": 2})
    assert first.status == 200
    assert first.json["total"] == 3
    assert [item["id"] for item in first.json["items"]] == list(reversed(fleet.dead_letters))[:2]
    newest = first.json["items"][0]
    assert base64.b64decode(newest["raw_base64"]) == bytes([0, 255, 2])
    assert newest["reason"] == "invalid_json"
    assert datetime.fromisoformat(newest["received_at"]) == t0 - timedelta(minutes=8)
    rest = api.get("/api/v1/dead-letters", params={"limit": 2, "offset": 2}).json["items"]
    assert [item["id"] for item in rest] == [fleet.dead_letters[0]]


def test_healthz_needs_no_credentials(api) -> None:
    reply = api.get("/healthz", token=False)
    assert reply.status == 200
    assert reply.json == {"status": "ok"}


def test_readyz_reports_database_and_broker(make_api, fleet) -> None:
    no_broker = make_api().get("/readyz", token=False)
    assert no_broker.status == 200
    checks = {check["name"]: check for check in no_broker.json["checks"]}
    assert checks["database"]["ok"] is True
    assert checks["broker"]["ok"] is None
    assert make_api(broker_ready=lambda: True).get("/readyz").json["ready"] is True
    down = make_api(broker_ready=lambda: False).get("/readyz")
    assert down.status == 503
    assert down.json["ready"] is False


def test_readyz_survives_a_failing_broker_callback(make_api, fleet) -> None:
    def broken() -> bool:
        raise RuntimeError("paho state unavailable")

    reply = make_api(broker_ready=broken).get("/readyz")
    assert reply.status == 503
    broker = next(check for check in reply.json["checks"] if check["name"] == "broker")
    assert "paho state unavailable" in broker["detail"]


def test_readyz_is_503_when_the_database_is_unreachable(make_api, fleet, tmp_path) -> None:
    unreachable = create_engine_from_url(f"sqlite:///{tmp_path}/missing-dir/x.db")
    try:
        reply = make_api(engine=unreachable).get("/readyz")
    finally:
        unreachable.dispose()
    assert reply.status == 503
    database = next(check for check in reply.json["checks"] if check["name"] == "database")
    assert database["ok"] is False


def test_metrics_expose_the_service_registry_and_http_counters(make_api, fleet) -> None:
    registry = CollectorRegistry()
    Counter("kassa_collector_messages", "test counter", registry=registry).inc(7)
    api = make_api(metrics_registry=registry)
    api.get("/api/v1/registers")
    api.get("/api/v1/registers", params={"limit": "0"})
    api.get(f"/api/v1/registers/{fleet.registers['arbat']}")
    reply = api.get("/metrics", token=False)
    assert reply.status == 200
    assert reply.media_type == "text/plain"
    text = reply.text
    assert "kassa_collector_messages_total 7.0" in text
    assert 'kassa_http_requests_total{method="GET",route="/api/v1/registers",status="200"} 1.0' in text
    assert 'kassa_http_requests_total{method="GET",route="/api/v1/registers",status="400"} 1.0' in text
    # labelled by route template, never by the raw path
    assert 'route="/api/v1/registers/{register_id}"' in text
    assert fleet.registers["arbat"] not in text
    assert 'kassa_http_request_duration_seconds_count{method="GET",route="/api/v1/registers"} 2.0' in text


def test_the_service_config_starts_an_app_with_its_own_engine(tmp_path) -> None:
    """``collector.service`` passes its ``CollectorConfig``; open demo mode is chosen explicitly
    (without it the default is accounts, see tests/collector/security)."""
    url = f"sqlite:///{tmp_path}/service.db"
    migrate(url)

    async def go() -> tuple[int, dict, int]:
        client = TestClient(TestServer(create_app(CollectorConfig(db_url=url, web_auth="open")), host="127.0.0.1"))
        await client.start_server()
        try:
            async with client.get("/api/v1/registers") as listed, client.get("/readyz") as ready:
                return listed.status, await listed.json(), ready.status
        finally:
            await client.close()

    status, body, ready = asyncio.run(go())
    assert status == 200
    assert body == {"items": [], "total": 0, "limit": 50, "offset": 0, "next": None}
    assert ready == 200


def test_token_mode_needs_a_token_of_some_length() -> None:
    with pytest.raises(ValueError, match="api_token"):
        WebSettings(web_auth="token").authenticator()
    with pytest.raises(ValueError, match="16 characters"):
        WebSettings(api_token="short").authenticator()


def test_two_apps_may_share_one_registry() -> None:
    registry = CollectorRegistry()
    settings = WebSettings(db_url="sqlite://", api_token="t" * 16)
    create_app(settings, metrics_registry=registry)
    create_app(settings, metrics_registry=registry)  # no duplicate-timeseries error


def test_settings_read_a_token_from_a_service_config() -> None:
    plain = WebSettings.from_config(SimpleNamespace(db_url="sqlite://", api_token="p" * 16)).authenticator()
    secret = WebSettings.from_config(SimpleNamespace(api_token=SecretStr("s" * 16))).authenticator()
    assert plain == StaticTokenAuth("p" * 16)
    assert secret == StaticTokenAuth("s" * 16)


def test_refused_agents_are_listed_for_the_operator(api, mutable_fleet, db_engine, t0) -> None:
    with db_engine.begin() as conn:
        for minutes in (5, 3):
            repo.dead_letter(conn, "kassa/v1/stranger/state/kkt-9", "unknown_agent", "agent 'stranger' is not enrolled",
                             b"{}", received_at=t0 - timedelta(minutes=minutes))
    reply = api.get("/api/v1/refused-agents")
    assert reply.status == 200
    assert [(a["agent_id"], a["reason"], a["messages"], a["tenant_id"]) for a in reply.json["items"]] == [
        ("stranger", "unknown_agent", 2, None)]  # the fleet's invalid_json letters are not refusals
    assert datetime.fromisoformat(reply.json["items"][0]["last_at"]) == t0 - timedelta(minutes=3)
