"""End to end: why documents do not reach the OFD, from the simulated register to the register JSON.

Simulated registers (Shtrih and ATOL drivers over ``sim://``, one per shipped OFD scenario) →
the real agent runtime (its OFD connect test against real loopback sockets) → a private
Mosquitto → the collector service (SQLite and PostgreSQL) → ``GET /api/v1/registers/{id}``'s ``ofd_cause`` and
the OFD backlog alert's fix. Then a register unplugged («касса не отвечает») and the agent
stopped («агент не на связи»).

Where the scenario's server is used: «no internet» points table 19 at a closed loopback port,
«OFD not acking» at a listener this test runs, «wrong host» at a ``.invalid`` name.
"""

from __future__ import annotations

import socket
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from agent.config import load_config as load_agent_config
from agent.runtime import AgentRuntime, open_driver
from collector.config import load_config
from collector.service import CollectorService
from collector.storage import create_engine_from_url, migrate
from firmware_sim.devices import make_device
from firmware_sim.hosts import SimRegistration, install_sim_url_handler, register_sim
from firmware_sim.model import RegisterModel
from firmware_sim.scenario import load_scenario

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "collector"))
import ingest_testkit
import test_notifications_e2e as company_kit
from netkit import free_port, wait_for

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]

AGENT = "agent-tverskaya"  # enrolled by company_kit.build_company
PROTOCOLS = ("shtrih", "atol")
# scenario → expected cause per protocol. Both report the OFD server the register uses (Shtrih
# table 19, ATOL settings 273/274), so the agent tests that host on both.
EXPECTED = {
    "no-internet": {"shtrih": "no_internet", "atol": "no_internet"},
    "wrong-ofd-host": {"shtrih": "wrong_ofd_host", "atol": "wrong_ofd_host"},
    "ofd-not-acking": {"shtrih": "ofd_not_acking", "atol": "ofd_not_acking"},
    "autonomous": {"shtrih": "autonomous", "atol": "autonomous"},
}
TEXTS = {
    "no_internet": "нет интернета в магазине",
    "wrong_ofd_host": "в кассе указан неверный адрес ОФД",
    "ofd_not_acking": "ОФД не подтверждает документы",
    "autonomous": "касса в автономном режиме — обмен с ОФД отключён",
    "register_unreachable": "касса не отвечает",
    "agent_offline": "агент не на связи",
}


@pytest.fixture
def ofd_listener() -> Iterator[int]:
    """A loopback TCP server standing in for a reachable OFD: accepts and closes."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = False

    def serve() -> None:
        while not stop:
            try:
                conn, _ = server.accept()
                conn.close()
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop = True
    thread.join(2)
    server.close()


def _model(scenario: str, listener_port: int, closed_port: int) -> RegisterModel:
    model = load_scenario(scenario).build(lambda: datetime.now().replace(microsecond=0))
    if scenario == "no-internet":
        model.ofd_port = closed_port
    elif scenario == "ofd-not-acking":
        model.ofd_port = listener_port
    return model


def _check_cause(register_json: Callable[[str], dict[str, Any] | None], register: str, want: str, backlog: bool) -> None:
    """The register JSON names ``want``; with documents waiting, the backlog alert's fix names it too."""

    def cause() -> str | None:
        body = register_json(register)
        return body["ofd_cause"]["cause"] if body and body.get("ofd_cause") else None

    wait_for(lambda: cause() == want, 30, f"{register}: cause {want}")
    body = register_json(register)
    assert body is not None and body["ofd_cause"]["text"] == TEXTS[want] and body["ofd_cause"]["fix"]
    if not backlog:  # an autonomous register has nothing waiting for an OFD
        return

    def backlog_alert() -> dict[str, Any] | None:
        alerts = (register_json(register) or {}).get("active_alerts", [])
        return next((a for a in alerts if a["rule"] == "ofd_backlog"), None)

    alert = wait_for(backlog_alert, 15, f"{register}: the OFD backlog alert")
    assert alert["fix"].startswith(f"Причина: {TEXTS[want]}.")


@pytest.fixture(params=ingest_testkit.BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with ingest_testkit.database_url(request.param, tmp_path) as url:
        yield url


def test_every_cause_reaches_the_register_json_on_both_protocols(
    mqtt_broker: Any, ofd_listener: int, db_url: str, tmp_path: Path
) -> None:
    install_sim_url_handler()
    closed_port = free_port()
    sims: dict[str, SimRegistration] = {}
    devices = []
    for protocol in PROTOCOLS:
        for scenario in EXPECTED:
            register = f"kkt-{protocol}-{scenario}"
            name = f"ofd-{uuid.uuid4().hex[:6]}-{register}"
            sims[register] = register_sim(name, make_device(protocol, _model(scenario, ofd_listener, closed_port)))
            devices.append({"protocol": protocol, "url": f"sim://{name}", "poll_interval": 0.2, "register_id": register})

    engine = create_engine_from_url(db_url)
    migrate(engine)
    company = company_kit.build_company(engine)
    web_port = free_port()
    config = load_config(None, env={}, overrides={
        "broker_url": mqtt_broker.url, "db_url": db_url, "client_id": "collector-ofd-e2e",
        "listen": f"127.0.0.1:{web_port}", "evaluator_period": 0.5,
    })  # fmt: skip
    service = CollectorService(config)
    service.start()
    agent = AgentRuntime(
        load_agent_config(None, env={}, overrides={
            "agent_id": AGENT, "heartbeat": 0.5,
            "broker": {"url": mqtt_broker.url, "keepalive": 5, "reconnect_min": 0.05, "reconnect_max": 0.3},
            "outbox": {"path": str(tmp_path / "outbox.sqlite"), "commit_interval": 0.05},
            "devices": devices,
        }),
        opener=open_driver,
    )
    agent.start()
    agent_stopped = False

    def register_json(register: str) -> dict[str, Any] | None:
        status, body = company_kit.call(web_port, "GET", f"/api/v1/registers/{register}", company.owner_token)
        return body if status == 200 else None

    def cause(register: str) -> str | None:
        body = register_json(register)
        return body["ofd_cause"]["cause"] if body and body.get("ofd_cause") else None

    try:
        for protocol in PROTOCOLS:
            for scenario, expected in EXPECTED.items():
                _check_cause(register_json, f"kkt-{protocol}-{scenario}", expected[protocol], scenario != "autonomous")

        for protocol in PROTOCOLS:  # the agent tested the host the register itself reported
            wrong = register_json(f"kkt-{protocol}-wrong-ofd-host")
            assert wrong is not None
            check = wrong["ofd_cause"]["details"]["link_check"]
            assert check["host"] == "ofd.kassa-monitor.invalid" and check["resolved"] is False

            def acking_check(register: str = f"kkt-{protocol}-ofd-not-acking") -> dict[str, Any] | None:
                body = register_json(register)
                return (body.get("ofd_cause") or {}).get("details", {}).get("link_check") if body else None

            # «ОФД не подтверждает» needs no link check, so the cause can come before the check's result.
            assert wait_for(lambda: acking_check(), 20, f"{protocol}: the link check of ofd-not-acking")["connected"] is True

        sims["kkt-shtrih-no-internet"].unplug()  # the register stops answering; the agent stays
        wait_for(lambda: cause("kkt-shtrih-no-internet") == "register_unreachable", 30, "«касса не отвечает»")

        agent.stop(timeout=3)
        agent_stopped = True
        wait_for(lambda: cause("kkt-atol-no-internet") == "agent_offline", 30, "«агент не на связи»")
    finally:
        if not agent_stopped:
            agent.stop(timeout=3)
        service.stop()
        engine.dispose()
        for registration in sims.values():
            registration.close()
