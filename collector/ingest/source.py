"""The ingest source seam: where uplink messages come from and where acks and commands go back.

Two implementations, chosen by the scheme of ``broker_url``:

* ``mqtt://`` / ``mqtts://`` — :class:`~collector.ingest.consumer.MqttConsumer`: paho on one broker
  (Mosquitto, or a ``$share``-capable cluster such as EMQX/VerneMQ/HiveMQ), persistent session,
  manual PUBACK after commit;
* ``nats://`` / ``tls://`` — :class:`~collector.ingest.jetstream.JetStreamSource`: a NATS cluster
  whose MQTT gateway the agents talk to; collectors share one durable JetStream pull consumer
  and ack each message after its commit.

Both hand every message to the writer as an :class:`InboundMessage` whose topic is the agent's
MQTT topic, so nothing downstream knows which broker is in use.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol
from urllib.parse import urlsplit

from collector.config import NATS_SCHEMES, CollectorConfig
from collector.ingest.consumer import InboundMessage, MessageSink, MqttConsumer


class IngestSource(Protocol):
    connected: threading.Event
    subscribed: threading.Event  # from here on the broker keeps everything for us

    def start(self, wait: float | None = 10.0) -> None: ...

    def stop(self) -> None: ...

    def ack(self, messages: Sequence[InboundMessage]) -> int:
        """Confirm committed messages in one go; returns how many could be (the broker delivers the
        others again)."""

    def publish_acks(self, acks: Sequence[tuple[str, bytes]]) -> int:
        """Send a batch's ``(topic, payload)`` acks to their agents at most once each, in one go;
        returns how many went out (0 when not connected: the agents' next acks cover them)."""

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> bool:
        """Send a command or refusal to an agent's MQTT ``topic`` (QoS 1); False when not connected."""


def open_source(config: CollectorConfig, sink: MessageSink) -> IngestSource:
    if urlsplit(config.broker_url).scheme in NATS_SCHEMES:
        from collector.ingest.jetstream import JetStreamSource  # nats-py only where it is used

        return JetStreamSource(config, sink)
    return MqttConsumer(config, sink)
