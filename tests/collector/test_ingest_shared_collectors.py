"""Three collector processes under ``$share`` meeting a fleet for the first time.

Every agent's messages are spread over the three by the broker, so all three enroll the same
newcomers, create the same registers and mark the same agents seen at the same moment. Nothing
may deadlock (PostgreSQL), no batch may be refused and written one by one, only one «Новые кассы»
node may appear, and every message must be stored exactly once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from collector.accounts.new_registers import NEW_REGISTERS_KIND
from collector.storage import create_engine_from_url
from collector.storage.schema import agents, nodes, registers, state_history
from protocol.mqtt.topics import COLLECTOR_STATUS_TOPIC

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: make the helper next to us importable
import ingest_testkit as kit
from companykit import single_company
from netkit import wait_for

AGENTS = 400
STATES_PER_AGENT = 8
COLLECTORS = 3
# Log lines that mean contention went wrong: a deadlock retried, a batch refused and split up.
TROUBLE = ("deadlock", "one by one", "refused", "Traceback", "ERROR")


@pytest.fixture(params=kit.BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with kit.database_url(request.param, tmp_path) as url:
        yield url


def start_shared_collectors(broker: Any, db_url: str, workdir: Path, company: str) -> list[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KASSA_COLLECTOR_")}
    env["KASSA_COLLECTOR_HISTORY_SAMPLE_MINUTES"] = "0"  # every state a history row: the test counts them
    processes = []
    for index in range(COLLECTORS):
        with (workdir / f"collector-{index}.log").open("ab") as log:
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "collector", "run", "--broker", broker.url, "--db", db_url, "--no-web",
                 "--client-id", f"shared-{index}", "--shared", "--log-level", "WARNING",
                 "--company", company],
                stdout=log, stderr=subprocess.STDOUT, env=env,
            ))  # fmt: skip
    return processes


def stored(db_url: str) -> tuple[list[tuple[str, int, int]], int, int, int]:
    """(history keys, agents, registers, «Новые кассы» nodes)."""
    engine = create_engine_from_url(db_url)
    try:
        with engine.connect() as conn:
            keys = [tuple(r) for r in conn.execute(
                sa.select(state_history.c.agent_id, state_history.c.session, state_history.c.seq)
            )]  # fmt: skip
            count = sa.select(sa.func.count())
            return (
                keys,  # type: ignore[return-value]
                conn.execute(count.select_from(agents)).scalar_one(),
                conn.execute(count.select_from(registers)).scalar_one(),
                conn.execute(count.select_from(nodes).where(nodes.c.kind == NEW_REGISTERS_KIND)).scalar_one(),
            )
    finally:
        engine.dispose()


@pytest.mark.slow
@pytest.mark.mosquitto
def test_three_collectors_first_seeing_one_fleet_store_everything_once_without_contention_errors(
    db_url: str, mqtt_broker: Any, mqtt_recorder: Any, tmp_path: Path
) -> None:
    company = single_company(db_url)
    status = mqtt_recorder([COLLECTOR_STATUS_TOPIC])
    collectors = start_shared_collectors(mqtt_broker, db_url, tmp_path, company)
    try:
        # Each collector subscribes before it announces itself live: three live "online"s = all subscribed.
        status.wait_for(lambda ms: sum(1 for m in ms if b'"online"' in m.payload and not m.retain) >= COLLECTORS,
                        timeout=60)  # fmt: skip
        publisher = kit.FastPublisher(mqtt_broker.host, mqtt_broker.port, "fleet")
        expected = set()
        for n in range(AGENTS):
            publisher.publish(*kit.status_msg(f"agent-{n}", 1, "online"))
        for seq in range(STATES_PER_AGENT):  # interleaved: an agent's first states reach all three at once
            for n in range(AGENTS):
                agent = f"agent-{n}"
                publisher.publish(*kit.state_msg(agent, f"kkt-{n}", 1, seq, kit.register_state(f"{n:04d}", receipts=seq)))
                expected.add((agent, 1, seq))
        publisher.wait()
        publisher.close()
        wait_for(lambda: len(stored(db_url)[0]) >= len(expected), timeout=120, what="every state committed")
    finally:
        for process in collectors:
            process.terminate()
        for process in collectors:
            process.wait(30)
    keys, agent_count, register_count, landing_nodes = stored(db_url)
    assert len(keys) == len(expected) and set(keys) == expected  # each once, none lost
    assert (agent_count, register_count, landing_nodes) == (AGENTS, AGENTS, 1)
    logs = "\n".join((tmp_path / f"collector-{i}.log").read_text(errors="replace") for i in range(COLLECTORS))
    trouble = [line for line in logs.splitlines() if any(word.lower() in line.lower() for word in TROUBLE)]
    assert trouble == []
