"""An agent whose computer clock is wrong (200 days behind, or 2 days ahead) must not delete fresh
data, move it in time or age a register: the real agent runtime, Mosquitto, the collector service
with its alert evaluator and retention job, on SQLite and PostgreSQL."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from agent.runtime import utc_now
from collector.storage import create_engine_from_url
from collector.storage import repository as repo
from collector.storage.schema import state_history

sys.path.insert(0, str(Path(__file__).parent))
import session_testkit as session
from session_testkit import wait_for

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]

db_url = session.db_url


def _history(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(sa.select(state_history.c.ts, state_history.c.received_at)).all()


def _alert(engine: sa.Engine, rule: str) -> Any:
    with engine.connect() as conn:
        return repo.load_alert(conn, session.REGISTER, rule)


@pytest.mark.parametrize(("error", "word"), [(-timedelta(days=200), "отстают"), (timedelta(days=2), "спешат")])
def test_a_wrong_agent_clock_deletes_nothing_ages_nothing_and_is_flagged(
    mqtt_broker: Any, tmp_path: Path, db_url: str, model_register: Any, error: timedelta, word: str
) -> None:
    model_register.change(lambda m: m.open_shift(at=m.now() - timedelta(minutes=30)))  # a 30-minute shift
    # History kept 180 days (the default); the agent_clock alert without its 10-minute guard.
    collector = session.start_collector(mqtt_broker, db_url, thresholds={"pending": {"agent_clock": 0}}, history_sample_minutes=0)  # every state stored: counted below
    engine = create_engine_from_url(db_url)
    started = datetime.now(UTC)
    agent = session.start_agent(mqtt_broker, tmp_path / "outbox.sqlite", model_register, now=lambda: utc_now() + error)
    try:
        wait_for(lambda: len(_history(engine)) >= 5, 15, "five states stored")
        flagged = wait_for(lambda: _alert(engine, "agent_clock"), 10, "the agent_clock alert")
        assert (flagged.severity, flagged.status) == ("warning", "active")
        assert f"Часы компьютера с агентом {word}" in flagged.message

        before = len(_history(engine))
        deleted = collector.retention.run_once()
        assert deleted["state_history"] == 0 and len(_history(engine)) >= before
        # Stored on the collector's clock: nothing was moved 200 days back or 2 days ahead.
        finished = datetime.now(UTC)
        for ts, received_at in _history(engine):
            assert started - timedelta(seconds=5) <= ts <= received_at <= finished

        collector.alert_engine.evaluate([session.REGISTER])  # a sweep now, on top of the ingest triggers
        assert _alert(engine, "shift_too_long") is None  # 30 minutes old, not 200 days (nor frozen)
        assert _alert(engine, "clock_skew") is None  # the register's clock is right
    finally:
        agent.stop(timeout=2)
        collector.stop()
        engine.dispose()
