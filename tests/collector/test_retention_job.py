"""The retention job: history, events (register and agent) and dead letters older than their
horizon are deleted in chunks, newer rows and tables kept "forever" are untouched, the job runs
on its period in the service and survives a failed run."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))
import ingest_testkit

from collector.config import load_config
from collector.housekeeping import RetentionJob, RetentionPolicy
from collector.metrics import CollectorMetrics
from collector.service import CollectorService
from collector.storage import begin_write
from collector.storage import repository as repo
from collector.storage.rows import AgentEventRow, EventRow, HistoryRow, RegisterIdentity
from collector.storage.schema import agent_events, dead_letters, events, state_history

engine = ingest_testkit.engine  # the fixture: a migrated engine per backend
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
AGENT, REGISTER = "agent-r", "kkt-r"


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def seed(engine: sa.Engine) -> None:
    with begin_write(engine) as conn:
        tenant = repo.create_tenant(conn, "Ромашка")
        store = repo.create_node(conn, tenant, parent_id=None, kind="store", name="Тверская 1")
        repo.enroll_agent(conn, AGENT, tenant_id=tenant, node_id=store, enrolled_at=days_ago(400))
        repo.ensure_register(conn, RegisterIdentity(REGISTER, "shtrih"), agent_id=AGENT, seen_at=days_ago(400))
        ages = [200] * 7 + [10] * 3  # seven past the 180-day horizon
        repo.insert_history(conn, [HistoryRow(AGENT, 1, seq, REGISTER, days_ago(age), days_ago(age), {})
                                   for seq, age in enumerate(ages)])
        repo.insert_events(conn, [EventRow(AGENT, 1, 100 + i, REGISTER, "shift_opened", days_ago(age), days_ago(age))
                                  for i, age in enumerate([120, 120, 120, 120, 5])])
        repo.insert_agent_events(conn, [AgentEventRow(AGENT, 1, 200 + i, "outbox_gap", days_ago(age), days_ago(age))
                                        for i, age in enumerate([150, 150, 1])])
        for age in (40, 40, 40, 2):
            repo.dead_letter(conn, "kassa/v1/x", "invalid_json", "", b"{", received_at=days_ago(age))


def counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                for t in (state_history, events, agent_events, dead_letters)}


def test_old_rows_go_in_chunks_and_newer_ones_stay(engine: sa.Engine) -> None:
    seed(engine)
    metrics = CollectorMetrics()
    job = RetentionJob(engine, RetentionPolicy(history_days=180, events_days=100, dead_letters_days=30),
                       chunk=3, metrics=metrics, clock=lambda: NOW)
    assert job.run_once() == {"state_history": 7, "events": 6, "dead_letters": 3}
    assert counts(engine) == {"state_history": 3, "events": 1, "agent_events": 1, "dead_letters": 1}
    assert metrics.registry.get_sample_value("kassa_collector_retention_deleted_total", {"table": "events"}) == 6
    assert job.run_once() == {"state_history": 0, "events": 0, "dead_letters": 0}  # nothing left to do
    with engine.connect() as conn:
        oldest = conn.execute(sa.select(sa.func.min(state_history.c.ts))).scalar_one()
    assert oldest == days_ago(10)


def test_a_zero_horizon_keeps_that_table_forever(engine: sa.Engine) -> None:
    seed(engine)
    job = RetentionJob(engine, RetentionPolicy(history_days=0, events_days=0, dead_letters_days=30), clock=lambda: NOW)
    assert job.run_once() == {"dead_letters": 3}
    assert counts(engine)["state_history"] == 10 and counts(engine)["events"] == 5
    nothing = RetentionJob(engine, RetentionPolicy(0, 0, 0))
    nothing.start()  # nothing to purge: no thread at all
    assert nothing._thread is None


def test_the_job_runs_on_its_period_and_survives_a_failed_run(engine: sa.Engine) -> None:
    seed(engine)
    calls = {"n": 0}

    def flaky_clock() -> datetime:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("the first run fails")
        return NOW

    job = RetentionJob(engine, RetentionPolicy(), period=0.05, first_delay=0.0, clock=flaky_clock)
    job.start()
    try:
        deadline = time.monotonic() + 10
        while job.runs < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        job.stop()
    assert job.runs >= 2 and counts(engine)["state_history"] == 3
    assert job._thread is not None and not job._thread.is_alive()


def test_the_service_takes_the_horizons_from_its_settings(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="history_days"):
        load_config(None, env={"KASSA_COLLECTOR_HISTORY_DAYS": "-5"})
    config = load_config(None, env={"KASSA_COLLECTOR_HISTORY_DAYS": "45", "KASSA_COLLECTOR_DEAD_LETTERS_DAYS": "0"},
                         overrides={"db_url": f"sqlite:///{tmp_path}/c.db"})
    service = CollectorService(config, serve_web=False)
    try:
        assert service.retention.policy == RetentionPolicy(history_days=45, events_days=365, dead_letters_days=0)
        assert service.retention.period == 3600
    finally:
        service.stop()
