"""Remote actions through the whole chain, collector included: a request stored by the collector →
its dispatcher → a real Mosquitto → the agent runtime → the driver → the simulated register
(``sim://``), and the ``action_result`` events and re-polled state back into the collector's
database. Shtrih on SQLite, ATOL on PostgreSQL.

The agent's local policy decides: what it allows runs (a Z-report closes the register's shift and
the collector stores it closed), what it does not is refused with the setting to change, and that
reason lands on the collector's row.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from agent.config import load_config
from agent.runtime import AgentRuntime
from collector.accounts.audit import Actor
from collector.actions import store
from collector.storage.engine import begin_write
from collector.storage.schema import register_state, registers
from firmware_sim.clock import ManualClock
from firmware_sim.devices import make_device
from firmware_sim.hosts import install_sim_url_handler, register_sim, unregister_sim
from firmware_sim.model import RegisterModel
from protocol.mqtt.actions import ActionName

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "collector"))
import ingest_testkit
from netkit import wait_for

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow, pytest.mark.timeout(90)]

AGENT = "store-act-collector"
REGISTER = "kkt-act-1"
CASES = [
    pytest.param(("shtrih", "sqlite"), id="shtrih-sqlite"),
    pytest.param(("atol", "postgresql"), id="atol-postgresql", marks=pytest.mark.postgres),
]


def shift_stored(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return conn.execute(sa.select(register_state.c.shift_status).where(
            register_state.c.register_id == REGISTER)).scalar_one_or_none()


def final_row(engine: sa.Engine, action_id: str) -> store.ActionRow | None:
    with engine.connect() as conn:
        row = store.get_row(conn, action_id)
    return row if row is not None and row.final else None


def request(service: Any, action: ActionName) -> str:
    with begin_write(service.engine) as conn:
        tenant = conn.execute(sa.select(registers.c.tenant_id).where(registers.c.register_id == REGISTER)).scalar_one()
        row = store.request_action(conn, Actor.cli(), tenant, REGISTER, action, datetime.now(UTC))
    service.actions.wake()
    return row.id


@pytest.fixture(params=CASES)
def chain(request: pytest.FixtureRequest, mqtt_broker: Any, tmp_path: Path) -> Iterator[tuple[Any, RegisterModel]]:
    protocol, backend = request.param
    install_sim_url_handler()
    model = RegisterModel(clock=ManualClock(datetime.now().replace(microsecond=0)))
    model.open_shift()
    model.sell()
    name = f"act-coll-{uuid.uuid4().hex[:8]}"
    register_sim(name, make_device(protocol, model))
    config = load_config(None, env={}, overrides={
        "agent_id": AGENT, "heartbeat": 5,
        "broker": {"url": mqtt_broker.url, "keepalive": 5, "reconnect_min": 0.05, "reconnect_max": 0.3},
        "outbox": {"path": str(tmp_path / "outbox.sqlite"), "commit_interval": 0.02},
        "devices": [{"protocol": protocol, "url": f"sim://{name}", "poll_interval": 0.3, "register_id": REGISTER}],
        "actions": {"allow": ["check_now", "x_report", "close_shift"]},  # opening a shift is not allowed here
    })  # fmt: skip
    agent = AgentRuntime(config)
    with ingest_testkit.database_url(backend, tmp_path) as url, ingest_testkit.running_services(mqtt_broker) as make:
        service = make(url)
        agent.start()
        try:
            yield service, model
        finally:
            agent.stop(timeout=2)
            unregister_sim(name)


def test_a_z_report_runs_on_the_register_and_a_refused_action_says_why(chain: tuple[Any, RegisterModel]) -> None:
    service, model = chain
    wait_for(lambda: shift_stored(service.engine) == "open", 20, "the open shift to reach the collector")
    fd_before = model.last_fd_number

    close = request(service, ActionName.CLOSE_SHIFT)
    done = wait_for(lambda: final_row(service.engine, close), 30, "the Z-report's final result")
    assert done.status == "done", (done.status, done.reason, done.meaning)
    assert not model.shift_open and model.last_fd_number == fd_before + 1
    wait_for(lambda: shift_stored(service.engine) == "closed", 20, "the closed shift to reach the collector")

    reopen = request(service, ActionName.OPEN_SHIFT)
    refused = wait_for(lambda: final_row(service.engine, reopen), 30, "the policy refusal")
    assert (refused.status, refused.reason) == ("refused", "policy")
    assert refused.meaning and "open_shift" in refused.meaning  # names the setting to change
    assert not model.shift_open  # nothing ran
