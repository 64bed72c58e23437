"""The register page and the register JSON show why documents do not reach the OFD: the cause
beside the backlog, with its fix in place of the backlog alert's generic one."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer

from collector.storage import repository as repo
from collector.storage.rows import LatestState
from protocol.kkt.state import OfdLinkCheck, Vendor

sys.path.insert(0, str(Path(__file__).parents[2]))  # importlib mode: make the shared helper importable
import pages_testkit as kit

NOW = kit.FIXED_NOW
engine = kit.module_engine
fleet = kit.seeded_fleet


def _store(engine: sa.Engine, fleet: Any, host: str, *, connected: bool) -> str:
    """tverskaya-1 (20 days of backlog) now reports its OFD server, transport and the agent's connect test."""
    register_id = fleet.registers["tverskaya-1"]
    state = kit.make_state("0010670001", Vendor.SHTRIH, NOW, backlog_days=20)
    check = OfdLinkCheck(host=host, port=7777, resolved=True, connected=connected,
                         error=None if connected else "TCP: Connection refused", checked_at=NOW - timedelta(seconds=30))  # fmt: skip
    ofd = state.ofd.model_copy(update={
        "transport_connected": connected, "message_waiting": True, "server_host": host, "server_port": 7777,
        "link_check": check,
    })  # fmt: skip
    state = state.model_copy(update={"ofd": ofd})
    latest = LatestState.from_register_state(
        register_id, state, agent_id="agent-tverskaya-1", session=1, seq=11, agent_ts=NOW, received_at=NOW, link_up=True
    )
    with engine.begin() as conn:
        assert repo.upsert_latest_state(conn, latest)
    return register_id


def _run(engine: sa.Engine, session: Any) -> None:
    app = kit.build_app(engine, clock=lambda: NOW)

    async def go() -> None:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            await session(client)

    asyncio.run(go())


def test_register_page_and_json_name_the_cause_and_its_fix(engine: sa.Engine, fleet: Any) -> None:
    register_id = _store(engine, fleet, "f1.taxcom.ru", connected=False)

    async def session(client: TestClient) -> None:
        page = await (await client.get(f"/registers/{register_id}")).text()
        assert '<dt>Сервер ОФД в кассе</dt><dd data-field="ofd-server">f1.taxcom.ru:7777</dd>' in page
        assert 'data-field="ofd-cause"><strong class="warn-text">нет интернета в магазине</strong>' in page
        assert "Что делать: Касса не может подключиться к серверу ОФД f1.taxcom.ru:7777." in page
        assert "data-ofd-cause>Причина: нет интернета в магазине." in page  # on the backlog alert
        assert 'data-field="ofd-link-check"><strong class="warn-text">не подключается</strong>' in page
        assert "TCP: Connection refused" in page
        response = await client.get(f"/api/v1/registers/{register_id}")
        assert response.status == 200
        body = await response.json()
        assert body["ofd_cause"]["cause"] == "no_internet"
        assert body["ofd_cause"]["details"]["link_check"]["error"] == "TCP: Connection refused"
        (backlog,) = [a for a in body["active_alerts"] if a["rule"] == "ofd_backlog"]
        assert backlog["fix"].startswith("Причина: нет интернета в магазине. Касса не может подключиться")

    _run(engine, session)


def test_a_backlog_without_diagnosis_keeps_the_generic_fix(engine: sa.Engine, fleet: Any) -> None:
    register_id = fleet.registers["tverskaya-1"]  # the seeded state carries no exchange bits

    async def session(client: TestClient) -> None:
        page = await (await client.get(f"/registers/{register_id}")).text()
        assert 'data-field="ofd-cause"' not in page and "data-ofd-cause" not in page
        assert "неизвестен" in page  # the OFD server the register uses is not known
        body = await (await client.get(f"/api/v1/registers/{register_id}")).json()
        assert body["ofd_cause"] is None

    _run(engine, session)


def test_a_server_of_another_operator_than_the_contracted_one_is_a_wrong_address(engine: sa.Engine, fleet: Any) -> None:
    register_id = _store(engine, fleet, "kkt.sbis.ru", connected=True)
    with engine.begin() as conn:
        contract = repo.load_contracts(conn, [register_id])[register_id]
        repo.upsert_contract(conn, replace(contract, ofd_operator="taxcom"))

    async def session(client: TestClient) -> None:
        body = await (await client.get(f"/api/v1/registers/{register_id}")).json()
        assert body["ofd_cause"]["cause"] == "wrong_ofd_host"
        assert body["contract"]["ofd_operator"] == "taxcom"
        assert "(Такском: f1.taxcom.ru): сейчас указан «kkt.sbis.ru»" in body["ofd_cause"]["fix"]
        page = await (await client.get(f"/registers/{register_id}")).text()
        assert "в кассе указан неверный адрес ОФД" in page

    _run(engine, session)
