"""Shared by the NATS cluster tests (imported by path): one 3-node cluster per test module, with
the collector's and the agents' accounts in its users file, collectors on it in-process or as
``kassa-collector run`` subprocesses, and real agent runtimes connected to chosen nodes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
import sqlalchemy as sa

from agent.config import load_config
from agent.runtime import AgentRuntime
from collector.config import CollectorConfig
from collector.enrollment.nats_users import NatsUsersBackend
from collector.service import CollectorService

sys.path.insert(0, str(Path(__file__).parent.parent))
from companykit import single_company
from natskit import NatsCluster, require_nats_server

COLLECTOR_USER = "kassa-collector"
COLLECTOR_PASSWORD = "collector-secret"
AGENTS = ("pos-a", "pos-b", "pos-c", "pos-d")
STREAM = "KASSA_TEST"
REPO = Path(__file__).resolve().parents[2]


def agent_password(agent: str) -> str:
    return f"{agent}-secret"


@pytest.fixture
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """A fresh 3-node cluster per test (it is up in under a second): a node restarted after the last
    test's kill was still catching up on JetStream's metadata when the next test made its stream,
    which stalled that test's collectors now and then."""
    require_nats_server()
    workdir = tmp_path_factory.mktemp("nats")
    users = NatsUsersBackend(workdir / "users.conf")
    users.ensure_collector(COLLECTOR_USER, COLLECTOR_PASSWORD)
    for agent in AGENTS:
        users.add_agent(agent, agent_password(agent))
    cluster = NatsCluster(workdir)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster(nats_cluster: NatsCluster) -> Iterator[NatsCluster]:
    """The test's own cluster (``nats_cluster``), stopped with every node after the test."""
    yield nats_cluster


def wait_consumer(cluster: NatsCluster, timeout: float = 60.0) -> None:
    """Until the collectors' stream and shared consumer exist (agents' publishes before that are
    acknowledged by the gateway but kept by no stream: the stream is created at deployment)."""
    asyncio.run(_wait_consumer(cluster, timeout))


async def _wait_consumer(cluster: NatsCluster, timeout: float) -> None:
    nc = await nats.connect(servers=cluster.nats_urls, user=COLLECTOR_USER, password=COLLECTOR_PASSWORD)
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                await nc.jetstream().consumer_info(STREAM, "collectors")
                return
            except nats.js.errors.NotFoundError:
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(f"no collector created {STREAM} within {timeout} s") from None
                await asyncio.sleep(0.2)
    finally:
        await nc.close()


def collector_settings(cluster: NatsCluster, first_node: int, db_url: str, client_id: str) -> dict[str, Any]:
    urls = cluster.nats_urls
    return {
        "broker_url": urls[first_node],
        "broker_fallback_urls": urls[:first_node] + urls[first_node + 1 :],
        "broker_username": COLLECTOR_USER,
        "broker_password": COLLECTOR_PASSWORD,
        "db_url": db_url,
        "client_id": client_id,
        "company": single_company(db_url),  # the agents here report without enrollment
        "jetstream_stream": STREAM,
        "jetstream_ack_wait": 3.0,  # a dead collector's messages go to another one within 3 s
        "collector_status_period": 1.0,
        "evaluator_period": 0.5,
        "history_sample_minutes": 0,  # every state a history row: the tests count them (none lost, none twice)
    }


def start_collector(cluster: NatsCluster, first_node: int, db_url: str, client_id: str) -> CollectorService:
    service = CollectorService(
        CollectorConfig(**collector_settings(cluster, first_node, db_url, client_id)), serve_web=False
    )
    service.start()
    assert service.consumer.subscribed.wait(30), f"{client_id} never consumed the stream"
    return service


def spawn_collector(cluster: NatsCluster, first_node: int, db_url: str, client_id: str, workdir: Path) -> subprocess.Popen[bytes]:
    """``kassa-collector run`` in its own process (so a test can kill -9 it), configured by TOML."""
    settings = collector_settings(cluster, first_node, db_url, client_id)
    lines = [f"{key} = {_toml(value)}" for key, value in settings.items()]
    config = workdir / f"{client_id}.toml"
    config.write_text("\n".join(lines) + "\n")
    log = (workdir / f"{client_id}.log").open("ab")
    env = {**os.environ, "KASSA_COLLECTOR_CONFIG": str(config), "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "collector", "run", "--no-web", "--log-level", "INFO"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO,
    )


def _toml(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


def start_agent(
    cluster: NatsCluster, agent: str, first_node: int, outbox: Path, register: Any, *, fallbacks: bool = True
) -> AgentRuntime:
    """A real agent runtime whose ``url`` is node ``first_node``'s MQTT gateway, the others fallbacks
    (none with ``fallbacks=False``: an agent that never finds another node)."""
    urls = cluster.mqtt_urls
    config = load_config(None, env={}, overrides={
        "agent_id": agent,
        "heartbeat": 0.5,
        "broker": {
            "url": urls[first_node],
            "fallback_urls": urls[first_node + 1 :] + urls[:first_node] if fallbacks else [],
            "username": agent,
            "password": agent_password(agent),
            "keepalive": 5,
            "subscribe_qos": 0,
            "reconnect_min": 0.05,
            "reconnect_max": 0.5,
        },
        "outbox": {"path": str(outbox), "commit_interval": 0.05},
        "devices": [{"protocol": "shtrih", "url": "sim://model", "poll_interval": 0.1, "register_id": f"kkt-{agent}"}],
    })
    runtime = AgentRuntime(config, opener=lambda device: register)
    runtime.start()
    return runtime


def duplicates(engine: sa.Engine, table: sa.Table) -> list[Any]:
    """(agent, session, seq) stored more than once (the unique key forbids it; checked anyway)."""
    key = (table.c.agent_id, table.c.session, table.c.seq)
    query = sa.select(*key, sa.func.count()).group_by(*key).having(sa.func.count() > 1)
    with engine.connect() as conn:
        return list(conn.execute(query))
