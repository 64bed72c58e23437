"""The periodic sweep stretches its interval on a big fleet, so sweeping takes at most
``SWEEP_SHARE`` of the evaluator thread and ingest keeps up (``bench/fleet.py`` at 50 000 registers)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import sqlalchemy as sa

from collector.ingest.batcher import IngestWriter
from collector.ingest.engine import AlertEngine, EvaluationWorker
from collector.ingest.engine.worker import SWEEP_SHARE

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: make the helper next to us importable
import ingest_testkit as kit

engine = kit.engine  # the fixture: a migrated engine on SQLite and on PostgreSQL


def _registers(engine: sa.Engine, count: int) -> None:
    writer = IngestWriter(engine, kit.FakeDownlink())
    writer.process([
        kit.inbound(*kit.state_msg(f"agent-{n}", f"kkt-{n}", 1, 0, kit.register_state()), at=kit.T0) for n in range(count)
    ])


def test_a_sweep_that_takes_long_spaces_the_next_ones_out(engine: sa.Engine) -> None:
    _registers(engine, 40)
    worker = EvaluationWorker(AlertEngine(engine), period=0.001)
    assert worker.sweep_interval() == 0.001  # nothing swept yet: the configured period
    worker.sweep()
    assert worker.sweeps == 1 and worker.last_sweep_seconds > 0
    assert worker.sweep_interval() == worker.last_sweep_seconds / SWEEP_SHARE  # 40 registers take far over 1 ms
    relaxed = EvaluationWorker(AlertEngine(engine), period=3600)
    relaxed.sweep()
    assert relaxed.sweep_interval() == 3600  # a small fleet keeps its configured period


def test_the_running_worker_spends_at_most_its_share_sweeping(engine: sa.Engine) -> None:
    _registers(engine, 40)
    worker = EvaluationWorker(AlertEngine(engine), period=0.001)
    worker.start()
    try:
        time.sleep(3.0)
    finally:
        worker.stop()
    assert worker.sweeps >= 2
    # Each sweep is followed by a wait of its own length / SWEEP_SHARE (the old loop swept back to back).
    assert worker.sweep_seconds_total <= 3.0 * SWEEP_SHARE + worker.last_sweep_seconds
