"""``bench/soak.py --smoke`` end to end, so the soak cannot rot: agents, Mosquitto, the collector
on a fresh PostgreSQL database, one kill -9 of each kind and bad messages; nothing lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))  # importlib mode: tests/dbkit.py
import dbkit

SOAK = Path(__file__).parents[2] / "bench" / "soak.py"


@pytest.mark.slow
@pytest.mark.mosquitto
@pytest.mark.postgres
@pytest.mark.timeout(240)
def test_soak_smoke_loses_nothing() -> None:
    with dbkit.fresh_pg_database("kassa_soak") as db_url:
        run = subprocess.run(
            [sys.executable, str(SOAK), "--smoke", "--seed", "7", "--db", db_url],
            capture_output=True, text=True, timeout=200, env=os.environ.copy(),
        )  # fmt: skip
    lines = [line for line in run.stdout.splitlines() if line.startswith("SOAK ")]
    assert lines, f"no figures printed; stdout:\n{run.stdout}\nstderr:\n{run.stderr[-3000:]}"
    figures = json.loads(lines[-1].removeprefix("SOAK "))
    assert run.returncode == 0, figures
    assert figures["lost"] == 0 and figures["duplicated"] == 0 and figures["settled"]
    assert min(figures["kills"].values()) >= 1, figures["kills"]  # each kind: agent, collector, broker
    assert figures["states_sent"] > 0 and figures["states_stored"] == figures["states_sent"] - figures["still_in_outbox"]
    assert sum(figures["bad_messages_injected"].values()) > 0
    assert figures["dead_letters_by_reason"], "bad messages on subscribed topics must be dead-lettered"
