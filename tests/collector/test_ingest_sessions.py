"""Forged session numbers against the running system: a real agent (``AgentRuntime`` reading a
simulated Shtrih register) → Mosquitto → the collector service, and a forger on the same anonymous
broker. An implausible jump is dead-lettered; a plausible forgery is superseded as soon as the
real agent contradicts it (rebirth → birth), and the agent's acks keep flowing."""

from __future__ import annotations

import json
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
from collector.storage import create_engine_from_url
from collector.storage import repository as repo
from collector.storage.schema import agents, register_state, state_history
from firmware_sim.clock import ManualClock
from firmware_sim.hosts import install_sim_url_handler, register_sim, unregister_sim
from firmware_sim.scenario import load_scenario
from firmware_sim.shtrih import ShtrihDevice

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: the helpers next to us
sys.path.insert(0, str(Path(__file__).parents[1]))
import ingest_testkit as kit
from netkit import wait_for

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]
AGENT = "store-6"


@pytest.fixture(params=kit.BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with kit.database_url(request.param, tmp_path) as url:
        yield url


def latest(engine: sa.Engine, register_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(register_state.c.session, register_state.c.unsent_count, register_state.c.fn_valid_until).where(
                register_state.c.register_id == register_id
            )
        ).first()


def forged_state(register_id: str, session: int) -> tuple[str, bytes]:
    """What the attacker publishes: an expired ФН and a 99 999-document backlog."""
    state = kit.register_state(clock=datetime.now().replace(microsecond=0), unsent=99_999, oldest_unsent_age=timedelta(days=40))
    state = state.model_copy(update={"fn": state.fn.model_copy(update={"valid_until": datetime(2020, 1, 1).date()})})
    return kit.state_msg(AGENT, register_id, session, 0, state, ts=datetime.now().astimezone())


def test_forged_sessions_are_refused_or_superseded_by_the_real_agent(
    mqtt_broker: Any, mqtt_recorder: Any, tmp_path: Path, db_url: str
) -> None:
    install_sim_url_handler()
    sim_name = f"sessions-{uuid.uuid4().hex[:8]}"
    model = load_scenario("healthy").build(ManualClock(datetime.now().replace(microsecond=0)))
    register_sim(sim_name, ShtrihDevice(model))
    register_id = f"shtrih-{model.serial}"
    recorder = mqtt_recorder([f"kassa/v1/{AGENT}/cmd", f"kassa/v1/{AGENT}/ack"])
    engine = create_engine_from_url(db_url)
    agent = AgentRuntime(load_config(None, env={}, overrides={
        "agent_id": AGENT,
        "heartbeat": 0.3,
        "broker": {"url": mqtt_broker.url, "keepalive": 5, "reconnect_min": 0.05, "reconnect_max": 0.3},
        "outbox": {"path": str(tmp_path / "outbox.sqlite"), "commit_interval": 0.05},
        "devices": [{"protocol": "shtrih", "url": f"sim://{sim_name}", "poll_interval": 0.1}],
    }))
    with kit.running_services(mqtt_broker) as collector:
        collector(db_url, max_session_jump=1000)
        agent.start()
        try:
            real = wait_for(lambda: latest(engine, register_id), 15, "the real agent's state")
            real_session, real_unsent = real.session, real.unsent_count

            # 1. A jump of 10¹² is dead-lettered; nothing of it is shown.
            recorder.publish(*forged_state(register_id, 10**12))
            letters = wait_for(lambda: _dead_letters(engine), 10, "the dead letter of the forged session")
            assert letters[0].reason == "implausible_session" and "jumps" in letters[0].detail
            assert latest(engine, register_id).session == real_session

            # 2. A plausible jump is stored, and superseded as soon as the real agent contradicts it.
            recorder.publish(*forged_state(register_id, real_session + 500))
            wait_for(lambda: _history_sessions(engine) >= {real_session + 500}, 10, "the forged state in the history")
            rebirth = recorder.wait_for(lambda ms: any(m.topic.endswith("/cmd") for m in ms), timeout=10)
            assert json.loads(next(m for m in rebirth if m.topic.endswith("/cmd")).payload)["cmd"] == "rebirth"
            healed = wait_for(
                lambda: (row := latest(engine, register_id)) is not None and row.session == real_session and row,
                10, "the real agent's session back in the latest state",
            )
            assert healed.unsent_count == real_unsent != 99_999
            assert healed.fn_valid_until > datetime.now().date()
            with engine.connect() as conn:
                stored_agent = conn.execute(sa.select(agents.c.last_session, agents.c.status_session, agents.c.online).where(
                    agents.c.agent_id == AGENT)).one()
            assert stored_agent.last_session == real_session and stored_agent.status_session == real_session
            assert stored_agent.online is True

            # 3. The real agent's records keep being acked in its own session (its outbox drains).
            acked_before = _acked(recorder, real_session)
            wait_for(lambda: _acked(recorder, real_session) > acked_before + 3, 10, "acks of the real session advancing")
            assert latest(engine, register_id).session == real_session
        finally:
            agent.stop(timeout=2)
            engine.dispose()
            unregister_sim(sim_name)


def _dead_letters(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        return repo.list_dead_letters(conn)


def _history_sessions(engine: sa.Engine) -> set[int]:
    with engine.connect() as conn:
        return set(conn.execute(sa.select(state_history.c.session).distinct()).scalars())


def _acked(recorder: Any, session: int) -> int:
    acks = [json.loads(m.payload) for m in list(recorder.messages) if m.topic.endswith("/ack")]
    return max((ack["seq"] for ack in acks if ack["session"] == session), default=-1)
