"""Collectors sharing a database elect one sweeper (``engine.leadership``); it hands over when it stops."""

from __future__ import annotations

import sys
import time
from pathlib import Path

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
