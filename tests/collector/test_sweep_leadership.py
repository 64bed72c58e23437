"""Collectors sharing a database elect one sweeper (``engine.leadership``); it hands over when it stops."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from collector.ingest.engine import AlertEngine, EvaluationWorker
from collector.ingest.engine.leadership import SweepLeadership
from collector.storage import create_engine_from_url

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: make the helper next to us importable
import ingest_testkit as kit

engine = kit.engine  # the fixture: a migrated engine on SQLite and on PostgreSQL


def test_one_collector_leads_the_sweep_and_another_takes_over_when_it_stops(engine: sa.Engine) -> None:
    other_engine = create_engine_from_url(engine.url)  # as another collector process would
    first, second = SweepLeadership(engine), SweepLeadership(other_engine)
    try:
        assert first.leading()
        assert not second.leading()
        assert first.leading()  # keeps the lead period after period
        first.release()
        assert second.leading()
        assert not first.leading()
    finally:
        first.release()
        second.release()
        other_engine.dispose()


def test_a_worker_that_does_not_lead_skips_the_sweep_and_stopping_hands_the_lead_over(engine: sa.Engine) -> None:
    leader = SweepLeadership(engine)
    assert leader.leading()
    follower = EvaluationWorker(AlertEngine(engine), period=0.05, leadership=SweepLeadership(engine))
    follower.start()
    try:
        time.sleep(0.5)  # ten periods
        assert follower.sweeps == 0
    finally:
        follower.stop()
        leader.release()
    successor = SweepLeadership(engine)
    try:
        assert successor.leading()  # nobody holds it any more
    finally:
        successor.release()


@pytest.mark.postgres
def test_the_leader_whose_database_session_was_killed_leads_again_and_releases_cleanly(tmp_path: Path) -> None:
    """A PostgreSQL failover or restart ends the session that held the lock. The next period must
    take the lead again (the sweep — offline detection — would stop for good otherwise), and
    stopping must not raise from the dead session. (SQLite's flock lives in this process.)"""
    with kit.database_url("postgresql", tmp_path) as url:
        pg = create_engine_from_url(url)
        leader = SweepLeadership(pg)
        try:
            assert leader.leading()
            pid = _backend_pid(leader)
            _terminate(pg, pid)
            assert leader.leading()  # lost, then taken again on a new session
            assert _backend_pid(leader) != pid
            _terminate(pg, _backend_pid(leader))
            leader.release()  # the session is gone: nothing to unlock, nothing raised
            assert not leader.held
        finally:
            leader.release()
            pg.dispose()


def _backend_pid(leadership: SweepLeadership) -> int:
    assert leadership._conn is not None
    return int(leadership._conn.execute(sa.select(sa.func.pg_backend_pid())).scalar_one())


def _terminate(engine: sa.Engine, pid: int) -> None:
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.pg_terminate_backend(pid))).scalar_one()
