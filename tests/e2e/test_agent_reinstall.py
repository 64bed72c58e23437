"""A reinstalled agent (its outbox lost) restarts its sessions at 1: the collector must store its
new records as new, show it online and its register's fresh state, and say «агент переустановлен»
— through the real agent runtime, Mosquitto and the collector service on SQLite and PostgreSQL."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from collector.ingest.epochs import REINSTALLED, STRIDE
from collector.storage import create_engine_from_url
from collector.storage.schema import agent_events, agents, state_history

sys.path.insert(0, str(Path(__file__).parent))
import session_testkit as session
from session_testkit import wait_for

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]
AGENT = "store-1"

db_url = session.db_url


def _shift_number(engine: sa.Engine) -> int | None:
    row = session.latest_state(engine)
    return None if row is None else row.state["shift"]["number"]


def test_a_reinstalled_agent_is_stored_as_new_shown_online_and_reported(
    mqtt_broker: Any, tmp_path: Path, db_url: str, model_register: Any
) -> None:
    collector = session.start_collector(mqtt_broker, db_url)
    engine = create_engine_from_url(db_url)
    outbox = tmp_path / "outbox.sqlite"
    try:
        old = session.start_agent(mqtt_broker, outbox, model_register)
        wait_for(lambda: old.outbox.depth() == 0 and _shift_number(engine) is not None, 15, "the first states acked")
        old.stop(timeout=2)
        # A second run of the old installation: sessions 1..3 are now stored for this agent.
        old = session.start_agent(mqtt_broker, outbox, model_register)
        wait_for(lambda: old.outbox.depth() == 0, 15, "the second run acked")
        old.stop(timeout=2)
        with engine.connect() as conn:
            old_sessions = conn.execute(sa.select(sa.func.max(state_history.c.session))).scalar_one()
        assert 2 <= old_sessions < STRIDE

        for path in tmp_path.glob("outbox.sqlite*"):
            path.unlink()  # reinstall: the outbox is gone
        shift = model_register.change(lambda m: (m.open_shift(), m.shift_number)[-1])
        new = session.start_agent(mqtt_broker, outbox, model_register)
        try:
            assert new.outbox.current_session <= old_sessions  # its numbering really restarted
            stored = wait_for(lambda: _shift_number(engine) == shift, 15, "the reinstalled agent's fresh state")
            assert stored
            row = session.latest_state(engine)
            assert row.session > STRIDE  # stored above every session of the old installation
            wait_for(lambda: new.outbox.depth() == 0, 15, "the new outbox drained by the collector's acks")
            with engine.connect() as conn:
                online = conn.execute(sa.select(agents.c.online).where(agents.c.agent_id == AGENT)).scalar_one()
                new_rows = conn.execute(
                    sa.select(sa.func.count()).select_from(state_history).where(state_history.c.session > STRIDE)
                ).scalar_one()
                reported = conn.execute(sa.select(agent_events).where(agent_events.c.kind == REINSTALLED)).all()
            assert online is True
            assert new_rows >= 1  # stored, not taken for duplicates of the old session numbers
            assert len(reported) == 1
            assert reported[0].data["message"].startswith("Агент переустановлен")
            assert reported[0].data["previous_session"] == old_sessions
            assert collector.metrics.agent_reinstalls._value.get() == 1
        finally:
            new.stop(timeout=2)
        # The new installation's goodbye is applied too (its session is the newest stored).
        wait_for(lambda: _agent_online(engine) is False, 10, "the reinstalled agent's shutdown status")
    finally:
        collector.stop()
        engine.dispose()


def _agent_online(engine: sa.Engine) -> bool | None:
    with engine.connect() as conn:
        value: bool | None = conn.execute(sa.select(agents.c.online).where(agents.c.agent_id == AGENT)).scalar()
    return value
