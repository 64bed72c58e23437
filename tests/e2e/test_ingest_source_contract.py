"""The ingest source seam (collector/ingest/source.py): the Mosquitto consumer and the NATS
JetStream source pass the same contract, against real brokers (a private Mosquitto; the 3-node
NATS cluster of cluster_testkit).

1. an agent's QoS 1 publish reaches the sink as its MQTT topic and payload;
2. a message not acked before the source stops is delivered again to the next source;
3. an acked one is not;
4. ``publish`` reaches the agent's MQTT subscription on its topic.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from collector.config import CollectorConfig
from collector.ingest.consumer import InboundMessage, MqttConsumer
from collector.ingest.jetstream import JetStreamSource
from collector.ingest.source import IngestSource, open_source

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from cluster_testkit import AGENTS, agent_password, cluster, collector_settings, nats_cluster
from netkit import wait_for

__all__ = ["cluster", "nats_cluster"]  # fixtures used by name
pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

AGENT = AGENTS[0]


@dataclass
class Setup:
    """What a contract test needs from one broker: the collector's config and an agent's MQTT login."""

    kind: str
    config: CollectorConfig
    mqtt_host: str
    mqtt_port: int
    username: str | None
    password: str | None


@pytest.fixture(params=["mosquitto", "nats"])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    db_url = f"sqlite:///{tmp_path}/unused.db"  # the sources never touch it
    if request.param == "mosquitto":
        broker = request.getfixturevalue("mqtt_broker")
        config = CollectorConfig(broker_url=broker.url, db_url=db_url, client_id="contract")
        yield Setup("mosquitto", config, broker.host, broker.port, None, None)
        return
    cluster = request.getfixturevalue("cluster")
    settings = collector_settings(cluster, 0, db_url, "contract")
    settings.pop("company")
    host, port = cluster.mqtt_urls[1].removeprefix("mqtt://").split(":")
    yield Setup("nats", CollectorConfig(**settings), host, int(port), AGENT, agent_password(AGENT))


class Sink:
    """Keeps the agent's messages (the uplink filters also match the collector's own status)."""

    def __init__(self) -> None:
        self.messages: list[InboundMessage] = []
        self.others: list[InboundMessage] = []

    def __call__(self, message: InboundMessage) -> None:
        mine = message.topic.startswith(f"kassa/v1/{AGENT}/")
        (self.messages if mine else self.others).append(message)


def started(setup: Setup, sink: Sink) -> IngestSource:
    source = open_source(setup.config, sink)
    assert isinstance(source, JetStreamSource if setup.kind == "nats" else MqttConsumer)
    source.start(wait=30)
    assert source.subscribed.is_set() and source.connected.is_set()
    return source


def agent_client(setup: Setup) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=AGENT, clean_session=True)
    if setup.username:
        client.username_pw_set(setup.username, setup.password)
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    client.connect(setup.mqtt_host, setup.mqtt_port, keepalive=10)
    client.loop_start()
    assert connected.wait(30), "the agent could not connect"
    return client


def publish(client: mqtt.Client, topic: str, payload: bytes) -> None:
    client.publish(topic, payload, qos=1).wait_for_publish(20)


def test_uplink_reaches_the_sink_as_the_agents_topic(setup: Setup) -> None:
    sink = Sink()
    source = started(setup, sink)
    agent = agent_client(setup)
    try:
        publish(agent, f"kassa/v1/{AGENT}/state/kkt-1", b'{"x": 1}')
        wait_for(lambda: sink.messages, 20, "the message at the sink")
        message = sink.messages[0]
        assert (message.topic, message.payload, message.qos) == (f"kassa/v1/{AGENT}/state/kkt-1", b'{"x": 1}', 1)
        assert source.ack([message]) == 1
    finally:
        agent.disconnect()
        source.stop()


def test_unacked_message_comes_again_and_acked_one_does_not(setup: Setup) -> None:
    sink = Sink()
    source = started(setup, sink)
    agent = agent_client(setup)
    try:
        publish(agent, f"kassa/v1/{AGENT}/event/kkt-1", b"acked")
        publish(agent, f"kassa/v1/{AGENT}/event/kkt-1", b"not acked")
        wait_for(lambda: len(sink.messages) == 2, 20, "both messages at the sink")
        acked = next(message for message in sink.messages if message.payload == b"acked")
        assert source.ack([acked]) == 1
        source.stop()  # sends what was acked; gives back the rest

        again = Sink()
        source = started(setup, again)
        wait_for(lambda: again.messages, 40, "the unacked message delivered again")
        publish(agent, f"kassa/v1/{AGENT}/event/kkt-1", b"marker")
        # No order between the two: JetStream may hold the unacked one for ack_wait first.
        wait_for(lambda: {m.payload for m in again.messages} >= {b"not acked", b"marker"}, 20, "the marker")
        # At least once: the unacked one may come twice (given back at the stop, then again after
        # ack_wait when the connection dropped meanwhile); the collector deduplicates it. The acked
        # one never comes again.
        assert {m.payload for m in again.messages} == {b"marker", b"not acked"}
        source.ack(again.messages + again.others)
    finally:
        agent.disconnect()
        source.stop()


def test_publish_reaches_the_agents_subscription(setup: Setup) -> None:
    source = started(setup, Sink())
    agent = agent_client(setup)
    received: list[tuple[str, bytes]] = []
    subscribed = threading.Event()
    agent.on_message = lambda _c, _u, msg: received.append((msg.topic, bytes(msg.payload)))
    agent.on_subscribe = lambda *args: subscribed.set()
    try:
        agent.subscribe(f"kassa/v1/{AGENT}/ack", qos=0)
        assert subscribed.wait(20)
        wait_for(lambda: source.publish(f"kassa/v1/{AGENT}/ack", b"committed") and received, 20, "the ack at the agent")
        assert received[0] == (f"kassa/v1/{AGENT}/ack", b"committed")
    finally:
        agent.disconnect()
        source.stop()

