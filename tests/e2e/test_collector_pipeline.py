"""End to end: a simulated Shtrih register (scenario ``ofd-backlog``, reached over ``sim://`` by the
real driver) → the agent runtime → Mosquitto → the collector service → the database.

The oldest unsent document is 20 days old, so the collector must store the register's state and
raise ``ofd_backlog`` critical with about 10 days to block; then the register's clock jumps 10 days
and the alert must escalate to blocked from the states the agent publishes.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from agent.config import load_config
from agent.runtime import AgentRuntime
from collector.config import CollectorConfig
from collector.service import CollectorService
from collector.storage import create_engine_from_url
from collector.storage import repository as repo
from collector.storage.schema import register_state, registers
from firmware_sim.clock import ManualClock
from firmware_sim.hosts import install_sim_url_handler, register_sim, unregister_sim
from firmware_sim.scenario import load_scenario
from firmware_sim.shtrih import ShtrihDevice

sys.path.insert(0, str(Path(__file__).parent.parent / "collector"))  # the ingest tests' helpers
sys.path.insert(0, str(Path(__file__).parent.parent))
import ingest_testkit as kit
from companykit import single_company
from netkit import wait_for

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]



@pytest.fixture(params=kit.BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with kit.database_url(request.param, tmp_path) as url:
        yield url




def test_simulated_register_to_stored_state_and_escalating_alert(
    mqtt_broker: Any, tmp_path: Path, db_url: str
) -> None:
    clock = ManualClock(datetime.now().replace(microsecond=0))
    model = load_scenario("ofd-backlog").build(clock)
    install_sim_url_handler()
    sim_name = f"e2e-{uuid.uuid4().hex[:8]}"
    register_sim(sim_name, ShtrihDevice(model))

    collector = CollectorService(
        CollectorConfig(broker_url=mqtt_broker.url, db_url=db_url, client_id="collector-e2e", evaluator_period=0.5,
                        company=single_company(db_url)),
        serve_web=False,
    )
    collector.start()
    agent_config = load_config(None, env={}, overrides={
        "agent_id": "store-17",
        "heartbeat": 0.3,  # the clock jump alone is not a "change": heartbeats carry it
        "broker": {"url": mqtt_broker.url, "keepalive": 5, "reconnect_min": 0.05, "reconnect_max": 0.3},
        "outbox": {"path": str(tmp_path / "outbox.sqlite"), "commit_interval": 0.05},
        "devices": [{"protocol": "shtrih", "url": f"sim://{sim_name}", "poll_interval": 0.1}],
    })
    agent = AgentRuntime(agent_config)
    agent.start()
    engine = create_engine_from_url(db_url)
    try:
        def backlog_alert() -> Any:
            with engine.connect() as conn:
                return repo.load_alert(conn, register_id, "ofd_backlog")

        register_id = f"shtrih-{model.serial}"
        stored = wait_for(lambda: _latest(engine, register_id), 15, "the register's stored state")
        assert stored.unsent_count == len(model.ofd_queue) >= 40
        # the ФН reports the oldest unsent document's time to the minute
        assert stored.oldest_unsent_at == model.ofd_queue[0].created_at.replace(second=0)
        with engine.connect() as conn:
            owner = conn.execute(sa.select(registers.c.agent_id).where(registers.c.register_id == register_id)).scalar_one()
        assert owner == "store-17"

        alert = wait_for(backlog_alert, 10, "the ofd_backlog alert")
        assert (alert.severity, alert.status) == ("critical", "active")
        evaluated = wait_for(lambda: _latest(engine, register_id, evaluated=True), 5, "the time to block")
        assert abs(evaluated.time_to_block_seconds - timedelta(days=10).total_seconds()) < 3600
        assert evaluated.worst_severity == "critical"

        clock.advance(timedelta(days=10, hours=1))  # the oldest unsent document is now 30 d 1 h old
        escalated = wait_for(
            lambda: (a := backlog_alert()) is not None and a.severity == "blocked" and a, 10, "escalation to blocked"
        )
        assert escalated.status == "active"
        final = wait_for(
            lambda: (r := _latest(engine, register_id, evaluated=True)) and r.time_to_block_seconds < 0 and r,
            5, "a time to block in the past",
        )
        assert final.worst_severity == "blocked"
    finally:
        agent.stop(timeout=2)
        collector.stop()
        engine.dispose()
        unregister_sim(sim_name)


def _latest(engine: sa.Engine, register_id: str, *, evaluated: bool = False) -> Any:
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(
                register_state.c.unsent_count,
                register_state.c.oldest_unsent_at,
                register_state.c.time_to_block_seconds,
                register_state.c.worst_severity,
            ).where(register_state.c.register_id == register_id)
        ).first()
    if row is None or (evaluated and row.time_to_block_seconds is None):
        return None
    return row
