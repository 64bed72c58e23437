"""A 3-node NATS cluster (Debian's nats-server, JetStream + MQTT gateway) with competing collectors:
a broker node or a collector killed with -9 mid-stream loses nothing and duplicates nothing, every
agent is back online well within the offline threshold, and alerts are still raised.

Needs PostgreSQL (not skipped under CI) and nats-server (installed by .ci/run; skipped elsewhere
only outside CI)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion

from collector.config import CollectorConfig
from collector.service import CollectorService
from collector.storage import create_engine_from_url
from collector.storage.schema import agents, alerts, events, state_history

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "collector"))
import dbkit
import ingest_testkit
from cluster_testkit import (
    AGENTS,
    agent_password,
    cluster,
    collector_settings,
    duplicates,
    nats_cluster,
    spawn_collector,
    start_agent,
    start_collector,
    wait_consumer,
)
from netkit import wait_for

__all__ = ["cluster", "nats_cluster"]  # fixtures used by name
pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(240)]

OFFLINE_WARNING = timedelta(minutes=5)  # DESIGN.md §5: agent offline, warning threshold


@pytest.fixture
def db_url() -> Iterator[str]:
    with dbkit.fresh_pg_database("kassa_cluster") as url:
        yield url


@pytest.fixture
def registers(model_register: Any) -> list[Any]:
    """One in-process simulated register per agent (the root conftest's ``ModelRegister``)."""
    return [model_register, *(type(model_register)() for _ in AGENTS[1:3])]


class ShiftToggler(threading.Thread):
    """Opens and closes shifts on every register, so each agent emits a stream of events and states."""

    def __init__(self, registers: list[Any], period: float = 0.15) -> None:
        super().__init__(name="toggler", daemon=True)
        self.registers = registers
        self.period = period
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.period):
            for register in self.registers:
                register.change(lambda m: m.close_shift() if m.shift_open else m.open_shift())


def recorded_events(runtime: Any) -> list[tuple[str, int, int]]:
    """Wrap ``emit_event`` so the test knows every event the agent created: (agent, session, seq)."""
    created: list[tuple[str, int, int]] = []
    emit = runtime.emit_event

    def recording(*args: Any, **kwargs: Any) -> tuple[int, int]:
        session, seq = emit(*args, **kwargs)
        if args[0] is not None:  # register events go to `events`; agent-level ones elsewhere
            created.append((runtime.agent_id, session, seq))
        return session, seq

    runtime.emit_event = recording
    return created


def stored_events(engine: sa.Engine) -> set[tuple[str, int, int]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(events.c.agent_id, events.c.session, events.c.seq))
        return {(row.agent_id, int(row.session), int(row.seq)) for row in rows}


def agents_online(engine: sa.Engine, runtimes: list[Any]) -> bool:
    """Every agent online in the database with the session of its current connection."""
    with engine.connect() as conn:
        rows = {row.agent_id: row for row in conn.execute(sa.select(agents))}
    for runtime in runtimes:
        row = rows.get(runtime.agent_id)
        session = runtime.publisher.session
        if row is None or session is None or not row.online or row.status_session != session:
            return False
    return True


def test_node_killed_mid_stream(cluster: Any, db_url: str, registers: list[Any], tmp_path: Path) -> None:
    engine = create_engine_from_url(db_url)
    collectors = [start_collector(cluster, node, db_url, f"collector-{node}") for node in (0, 1)]
    runtimes = [
        start_agent(cluster, agent, node, tmp_path / f"{agent}.sqlite", register)
        for node, (agent, register) in enumerate(zip(AGENTS[:3], registers, strict=True))
    ]
    created = [recorded_events(runtime) for runtime in runtimes]
    toggler = ShiftToggler(registers)
    try:
        wait_for(lambda: agents_online(engine, runtimes), 60, "every agent online through its own node")
        toggler.start()
        time.sleep(2.0)
        victim = next(node for node in cluster.nodes if node.mqtt == runtimes[0].publisher.endpoint[1])
        sessions_before = [runtime.publisher.session for runtime in runtimes]
        killed_at = time.monotonic()
        victim.kill()
        time.sleep(2.0)  # the stream goes on while pos-a and collector-0 move to other nodes
        toggler.stopping.set()
        toggler.join()

        wait_for(lambda: agents_online(engine, runtimes), 60, "every agent online again after the node kill")
        online_after = time.monotonic() - killed_at
        assert runtimes[0].publisher.endpoint[1] != victim.mqtt, "pos-a must have moved to another node"
        assert runtimes[0].publisher.session != sessions_before[0]

        left: dict[str, Any] = {}

        def drained() -> bool:
            left["missing"] = sorted({key for keys in created for key in keys} - stored_events(engine))
            left["awaiting ack"] = {runtime.agent_id: runtime.outbox.stats().awaiting_ack for runtime in runtimes}
            return not left["missing"] and not any(left["awaiting ack"].values())

        try:
            wait_for(drained, 60, "every event committed and acked back to its agent")
        except BaseException as exc:
            raise AssertionError(f"not drained: {left}") from exc
        drained_after = time.monotonic() - killed_at
        total = sum(len(keys) for keys in created)
        assert total >= 3 * 20, f"too few events to prove anything: {total}"
        assert duplicates(engine, events) == []
        assert duplicates(engine, state_history) == []
        assert online_after < OFFLINE_WARNING.total_seconds()

        # Alerts still raised through the healed cluster: paper out on pos-a's register.
        registers[0].change(lambda m: setattr(m, "paper_present", False))
        wait_for(lambda: _active_alert(engine, "kkt-pos-a", "paper_out"), 30, "the paper_out alert")
        with engine.connect() as conn:
            offline = conn.execute(
                sa.select(alerts.c.register_id).where(alerts.c.rule == "agent_offline", alerts.c.status == "active")
            ).all()
        assert offline == [], f"an agent left offline after the failover: {offline}"
        print(f"\nnode kill: {total} events, all agents online after {online_after:.1f} s, drained after {drained_after:.1f} s")
    finally:
        toggler.stopping.set()
        for runtime in runtimes:
            runtime.stop()
        for service in collectors:
            service.stop()
        engine.dispose()


def _active_alert(engine: sa.Engine, register: str, rule: str) -> bool:
    with engine.connect() as conn:
        status = conn.execute(
            sa.select(alerts.c.status).where(alerts.c.register_id == register, alerts.c.rule == rule)
        ).scalar_one_or_none()
    return status == "active"


def test_collector_killed_mid_batch(cluster: Any, db_url: str, tmp_path: Path) -> None:
    """Two ``kassa-collector run`` processes share the stream; one is killed -9 while messages
    flow: what it had fetched but not acked goes to the other after ack_wait. Every state lands
    exactly once."""
    engine = create_engine_from_url(db_url)
    processes = [spawn_collector(cluster, node, db_url, f"proc-{node}", tmp_path) for node in (1, 2)]
    agent = AGENTS[3]
    count = 3000
    try:
        wait_consumer(cluster)
        publisher = _mqtt_client(cluster.mqtt_urls[0], agent)
        infos = []
        for seq in range(count):
            topic, payload = ingest_testkit.state_msg(
                agent, f"kkt-{agent}", 1, seq, ingest_testkit.register_state(receipts=seq)
            )
            infos.append(publisher.publish(topic, payload, qos=1))
            if seq == count // 3:
                wait_for(lambda: _count(engine) > 100, 60, "the collectors to start committing")
                processes[0].kill()  # SIGKILL mid-stream, with a batch in hand
                processes[0].wait(10)
        for info in infos:
            info.wait_for_publish(30)
        publisher.disconnect()
        publisher.loop_stop()
        wait_for(lambda: _count(engine) >= count, 90, f"all {count} states committed")
        assert _count(engine) == count
        assert duplicates(engine, state_history) == []
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                process.wait(20)
        engine.dispose()


def _count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(state_history)).scalar_one())


def _mqtt_client(url: str, agent: str) -> mqtt.Client:
    host, port = url.removeprefix("mqtt://").split(":")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=agent, clean_session=True)
    client.username_pw_set(agent, agent_password(agent))
    client.max_inflight_messages_set(500)
    client.max_queued_messages_set(0)
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    client.connect(host, int(port), keepalive=30)
    client.loop_start()
    assert connected.wait(30), f"{agent} could not connect to {url}"
    return client


def test_agent_lost_with_its_node_is_shown_offline_without_a_will(
    cluster: Any, db_url: str, model_register: Any, tmp_path: Path
) -> None:
    """The node holding an agent's connection dies and the agent does not come back (it knows no
    other node): the cluster publishes no last will, and the agent is still reported offline, by
    the silence of its heartbeats."""
    engine = create_engine_from_url(db_url)
    settings = collector_settings(cluster, 0, db_url, "collector-silence")
    settings["thresholds"] = {"agent_offline_warning": 3, "agent_offline_major": 600}
    service = CollectorService(CollectorConfig(**settings), serve_web=False)
    service.start()
    agent = AGENTS[3]
    runtime = start_agent(cluster, agent, 1, tmp_path / "outbox.sqlite", model_register, fallbacks=False)
    try:
        wait_for(lambda: agents_online(engine, [runtime]), 60, "the agent online")
        cluster.nodes[1].kill()
        lost_at = time.monotonic()
        wait_for(lambda: _active_alert(engine, f"kkt-{agent}", "agent_offline"), 30, "the agent_offline alert")
        print(f"\nagent lost with its node: offline alert after {time.monotonic() - lost_at:.1f} s (threshold 3 s)")
    finally:
        runtime.stop()
        service.stop()
        engine.dispose()
