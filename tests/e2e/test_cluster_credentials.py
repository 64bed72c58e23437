"""Enrollment and per-agent credentials on a 3-node NATS cluster: the users file written by
``NatsUsersBackend`` gives every agent what the Mosquitto ACLs of docs/enrollment.md give it, on
every node: its own uplink subjects to publish, its own cmd/ack (and the collector status) to
read, MQTT only; a revoked agent is refused at connect.

"Not received" is made exact with a marker (as in test_broker_acl.py): an allowed message
published after the forbidden one on the same connection arrives in order, so once the marker is
in, the forbidden one would be too."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion

from collector.enrollment.nats_users import NatsUsersBackend
from collector.enrollment.service import EnrollmentService
from collector.storage import create_engine_from_url, migrate
from collector.storage.tree import create_node, create_tenant

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from cluster_testkit import AGENTS, COLLECTOR_PASSWORD, COLLECTOR_USER, agent_password, nats_cluster
from natskit import NatsCluster
from netkit import wait_for

__all__ = ["nats_cluster"]  # fixture used by name
pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


class Agent:
    """A bare MQTT 3.1.1 client logged in as an agent; records what it receives and its SUBACKs."""

    def __init__(self, url: str, username: str, password: str) -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        self.received: list[tuple[str, bytes]] = []
        self.subacks: list[list[Any]] = []
        self.refused: Any = None
        self.connected = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=username, clean_session=True)
        self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda _c, _u, msg: self.received.append((msg.topic, bytes(msg.payload)))
        self.client.on_subscribe = lambda _c, _u, _mid, reasons, _p: self.subacks.append(list(reasons))
        self.client.on_disconnect = self._on_disconnect
        self.client.connect(host, int(port), keepalive=10)
        self.client.loop_start()

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self.refused = reason
        else:
            self.connected.set()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not self.connected.is_set():  # closed before a CONNACK: refused
            self.refused = reason

    def subscribe(self, topic: str) -> list[Any]:
        before = len(self.subacks)
        self.client.subscribe(topic, qos=0)
        wait_for(lambda: len(self.subacks) > before, 20, f"SUBACK for {topic}")
        return self.subacks[-1]

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(20)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connect(cluster: NatsCluster, node: int, username: str, password: str) -> Agent:
    agent = Agent(cluster.mqtt_urls[node], username, password)
    wait_for(lambda: agent.connected.is_set() or agent.refused is not None, 30, f"{username} CONNACK")
    if agent.refused is not None:
        agent.close()
        raise ConnectionRefusedError(f"{username}: {agent.refused}")
    return agent


class CollectorTap:
    """The collector's view over NATS: every kassa subject, as it arrives."""

    def __init__(self, cluster: NatsCluster) -> None:
        self.subjects: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.nc = self._run(nats.connect(servers=cluster.nats_urls, user=COLLECTOR_USER, password=COLLECTOR_PASSWORD))

        async def record(msg: Any) -> None:
            self.subjects.append(msg.subject)

        self._run(self.nc.subscribe("kassa.>", cb=record))
        self._run(self.nc.flush())

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(20)

    def publish(self, subject: str, payload: bytes) -> None:
        self._run(self.nc.publish(subject, payload))
        self._run(self.nc.flush())

    def close(self) -> None:
        self._run(self.nc.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@pytest.fixture
def tap(nats_cluster: NatsCluster) -> Iterator[CollectorTap]:
    tap = CollectorTap(nats_cluster)
    yield tap
    tap.close()


def test_agent_publishes_only_its_own_uplink_and_reads_only_its_own_downlink(
    nats_cluster: NatsCluster, tap: CollectorTap
) -> None:
    me, other = AGENTS[0], AGENTS[1]
    agent = connect(nats_cluster, 1, me, agent_password(me))
    victim = connect(nats_cluster, 2, other, agent_password(other))
    try:
        assert not agent.subscribe(f"kassa/v1/{me}/cmd")[0].is_failure
        assert not victim.subscribe(f"kassa/v1/{other}/cmd")[0].is_failure
        for forbidden in (f"kassa/v1/{other}/cmd", f"kassa/v1/{other}/ack", "kassa/v1/#", "kassa/v1/+/cmd", "#"):
            assert agent.subscribe(forbidden)[0].is_failure, f"{me} may subscribe to {forbidden}"

        for forbidden in (
            f"kassa/v1/{other}/state/kkt-1", f"kassa/v1/{other}/status", f"kassa/v1/{me}/cmd", f"kassa/v1/{me}/ack",
            "kassa/v1/_collector/status",
        ):
            agent.publish(forbidden, b"forged")
        agent.publish(f"kassa/v1/{me}/state/kkt-1", b"marker")
        wait_for(lambda: f"kassa.v1.{me}.state.kkt-1" in tap.subjects, 20, "the agent's own state at the collector")
        assert tap.subjects == [f"kassa.v1.{me}.state.kkt-1"], "a forbidden publish got through"

        tap.publish(f"kassa.v1.{other}.cmd", b"for the other agent")
        tap.publish(f"kassa.v1.{me}.cmd", b"marker")
        wait_for(lambda: (f"kassa/v1/{me}/cmd", b"marker") in agent.received, 20, "the agent's own command")
        wait_for(lambda: victim.received, 20, "the other agent's command")
        assert agent.received == [(f"kassa/v1/{me}/cmd", b"marker")]
        assert victim.received == [(f"kassa/v1/{other}/cmd", b"for the other agent")]
    finally:
        agent.close()
        victim.close()


def test_agent_credentials_are_mqtt_only(nats_cluster: NatsCluster) -> None:
    async def attempt() -> None:
        nc = await nats.connect(
            servers=nats_cluster.nats_urls[:1], user=AGENTS[0], password=agent_password(AGENTS[0]),
            allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=5,
        )
        await nc.close()

    with pytest.raises(nats.errors.Error):
        asyncio.run(attempt())


def test_enrollment_provisions_every_node_and_revocation_refuses_the_agent(
    nats_cluster: NatsCluster, tmp_path: Path
) -> None:
    engine = create_engine_from_url(f"sqlite:///{tmp_path}/enroll.db")
    migrate(engine)
    with engine.begin() as conn:
        tenant = create_tenant(conn, "Ромашка", created_at=datetime.now(UTC))
        store = create_node(conn, tenant, parent_id=None, kind="store", name="Тверская 1")
    backend = NatsUsersBackend(nats_cluster.users_file, reload=nats_cluster.reload)
    urls = nats_cluster.mqtt_urls
    service = EnrollmentService(engine, backend, broker_url=urls[0], broker_fallback_urls=urls[1:])
    try:
        enrollment = service.redeem(service.create_token(store, created_by="admin").token, "pos-7")
        assert sorted([enrollment.broker_url, *enrollment.broker_fallback_urls]) == sorted(urls)
        for node in range(3):  # each node reloaded the file: the new account works everywhere
            wait_for(lambda node=node: _accepted(nats_cluster, node, enrollment.username, enrollment.password),
                     20, f"the enrolled agent accepted on node {node + 1}")
        assert not _accepted(nats_cluster, 0, enrollment.username, "wrong password")

        service.revoke_agent(enrollment.agent_id)
        for node in range(3):
            wait_for(lambda node=node: not _accepted(nats_cluster, node, enrollment.username, enrollment.password),
                     20, f"the revoked agent refused on node {node + 1}")
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT revoked FROM agents")).scalar_one()
    finally:
        engine.dispose()


def _accepted(cluster: NatsCluster, node: int, username: str, password: str) -> bool:
    try:
        connect(cluster, node, username, password).close()
    except ConnectionRefusedError:
        return False
    return True
