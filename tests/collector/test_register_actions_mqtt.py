"""Remote actions through the running collector service and a real Mosquitto: the dispatcher
publishes the command (QoS 1, not retained, with register and deadline), the agent's
``action_result`` events come back on the event path and finish the lifecycle, a silent agent's
action expires, and a Z-report's new state closes the shift the collector stores.

The agent is ``actions_testkit.StandInAgent``, so every answer can be had on demand; the same flow
with the real agent and the simulator is ``tests/e2e/test_remote_actions_collector.py``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from collector.accounts.audit import Actor, list_entries
from collector.actions import store
from collector.storage.engine import begin_write
from collector.storage.schema import register_state, registers
from protocol.mqtt.actions import ActionName

sys.path.insert(0, str(Path(__file__).parent))
import ingest_testkit as kit
from actions_testkit import StandInAgent

sys.path.insert(0, str(Path(__file__).parents[1]))
from netkit import wait_for

pytestmark = [pytest.mark.mosquitto, pytest.mark.timeout(60)]

REGISTER = "shtrih-act-0001"
AGENT = "agent-act"


@pytest.fixture(params=kit.BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with kit.database_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def running(mqtt_broker: Any, db_url: str) -> Iterator[Any]:
    with kit.running_services(mqtt_broker) as make:
        yield make(db_url)


def stand_in(broker: Any, **kw: Any) -> StandInAgent:
    host, port = broker.url.removeprefix("mqtt://").split(":")
    agent = StandInAgent(host, int(port), AGENT, REGISTER, **kw)
    agent.start()
    return agent


def tenant_of(service: Any) -> int:
    def probe() -> int | None:
        with service.engine.connect() as conn:  # a fresh snapshot each time
            return conn.execute(sa.select(registers.c.tenant_id).where(
                registers.c.register_id == REGISTER)).scalar_one_or_none()

    return int(wait_for(probe, 10, "the register to be stored"))


def request(service: Any, action: ActionName, at: datetime | None = None) -> store.ActionRow:
    tenant = tenant_of(service)
    with begin_write(service.engine) as conn:
        row = store.request_action(conn, Actor.cli(), tenant, REGISTER, action, at or datetime.now(UTC))
    service.actions.wake()
    return row


def status_of(service: Any, action_id: str) -> str:
    with service.engine.connect() as conn:
        row = store.get_row(conn, action_id)
    assert row is not None
    return row.status


def test_a_z_report_goes_out_and_its_result_and_new_state_come_back(
    running: Any, mqtt_broker: Any, mqtt_recorder: Any
) -> None:
    recorder = mqtt_recorder([f"kassa/v1/{AGENT}/cmd"])
    agent = stand_in(mqtt_broker)
    try:
        wait_for(lambda: _shift(running) == "open", 10, "the open shift to be stored")
        row = request(running, ActionName.CLOSE_SHIFT)
        wait_for(lambda: status_of(running, row.id) == "done", 15, "the action to be done")
        [command] = agent.commands
        assert (command.id, command.cmd, command.register) == (row.id, "close_shift", REGISTER)
        assert command.deadline is not None and abs(command.deadline - row.deadline) < timedelta(seconds=3)
        [sent] = recorder.wait_for(lambda ms: ms)
        assert not sent.retain
        wait_for(lambda: _shift(running) == "closed", 10, "the closed shift to be stored")
        with running.engine.connect() as conn:
            actions = [e.action for e in list_entries(conn, tenant_of(running), target_type="register")]
        assert actions == ["register_action.done", "register_action.request"]
    finally:
        agent.close()


def test_a_refusal_reaches_the_row_with_its_reason(running: Any, mqtt_broker: Any) -> None:
    agent = stand_in(mqtt_broker, answers=("refused",))
    try:
        wait_for(lambda: _shift(running) == "open", 10, "the register's state")
        row = request(running, ActionName.X_REPORT)
        wait_for(lambda: status_of(running, row.id) == "refused", 15, "the refusal")
        with running.engine.connect() as conn:
            final = store.get_row(conn, row.id)
        assert final is not None and (final.reason, final.meaning) == ("policy", "Отказ по тесту")
    finally:
        agent.close()


def test_an_unanswered_action_expires_and_is_never_sent_late(running: Any, mqtt_broker: Any) -> None:
    agent = stand_in(mqtt_broker, silent=True)
    try:
        wait_for(lambda: _shift(running) == "open", 10, "the register's state")
        # Requested long enough ago that its deadline and grace are over: never published, expired.
        late = request(running, ActionName.CHECK_NOW, at=datetime.now(UTC) - timedelta(minutes=5))
        wait_for(lambda: status_of(running, late.id) == "expired", 10, "the overdue action to expire")
        assert agent.commands == []
        fresh = request(running, ActionName.CHECK_NOW)
        wait_for(lambda: status_of(running, fresh.id) == "sent", 10, "the fresh action to be sent")
        wait_for(lambda: agent.commands, 10, "the agent to get it")
        assert [c.id for c in agent.commands] == [fresh.id]
        sample = running.metrics.registry.get_sample_value
        counted = [sample("kassa_collector_register_actions_total", {"outcome": o}) for o in ("expired", "sent")]
        assert counted == [1.0, 1.0]
    finally:
        agent.close()


def _shift(service: Any) -> str | None:
    with service.engine.connect() as conn:
        return conn.execute(sa.select(register_state.c.shift_status).where(
            register_state.c.register_id == REGISTER)).scalar_one_or_none()
