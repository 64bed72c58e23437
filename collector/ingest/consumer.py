"""The collector's MQTT connection (paho-mqtt 2.x).

* Fixed client id and a **persistent session** (``clean_session=False``): while the collector is
  down or restarting, the broker queues every QoS 1 uplink message for it.
* **Manual ack**: paho does not PUBACK on receipt; the writer calls :meth:`MqttConsumer.ack` only
  after the transaction holding the message committed. A message received but not committed
  when the process dies is redelivered by the broker on the next connect — at-least-once into
  the database, duplicates removed by the (agent, session, seq) keys.
* LWT and a retained ``_collector/status`` online/offline, so agents pause ``hist`` replay while
  no collector is there to ack it.

A message larger than ``max_message_bytes`` is cut to the prefix a dead letter keeps as soon as it
arrives, with its real size and SHA-256, so an oversize payload never waits in the queue whole and
is never decoded (the broker's ``message_size_limit`` should stop most of them before).

A PUBACK is only meaningful on the connection that received the message (packet ids are per
connection), so each message carries the connection generation it came in on and acks for an
older generation are dropped — the broker redelivers those messages anyway.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from collector.config import CollectorConfig
from collector.ingest.mqtt_io import ReadAheadClient, queue_pubacks, queue_publishes
from collector.ingest.thread_names import name_os_thread
from collector.storage.ingest import DEAD_LETTER_RAW_BYTES
from protocol.mqtt.models import CollectorStatusPayload, encode
from protocol.mqtt.topics import COLLECTOR_STATUS_TOPIC, UPLINK_FILTERS, shared

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Oversize:
    """What is known of a payload that was too large to keep: ``InboundMessage.payload`` is its prefix."""

    size: int
    sha256: str
    limit: int


@dataclass(frozen=True, slots=True)
class InboundMessage:
    topic: str
    payload: bytes
    mid: int
    qos: int
    received_at: datetime
    generation: int  # which connection delivered it (acks are per connection)
    oversize: Oversize | None = None


def inbound_message(
    topic: str, payload: bytes | bytearray, *, mid: int, qos: int, generation: int, limit: int
) -> InboundMessage:
    """The message as the writer gets it: a payload over ``limit`` bytes is kept as a bounded prefix."""
    oversize = None
    if len(payload) > limit:
        oversize = Oversize(len(payload), hashlib.sha256(payload).hexdigest(), limit)
        payload = payload[:DEAD_LETTER_RAW_BYTES]
    return InboundMessage(
        topic=topic, payload=bytes(payload), mid=mid, qos=qos, received_at=datetime.now(UTC),
        generation=generation, oversize=oversize,
    )


MessageSink = Callable[[InboundMessage], None]


def subscription_filters(config: CollectorConfig) -> list[str]:
    if config.shared:
        return [shared(topic_filter, config.shared_group) for topic_filter in UPLINK_FILTERS]
    return list(UPLINK_FILTERS)


def collector_status_payload(status: Literal["online", "offline"]) -> bytes:
    return encode(CollectorStatusPayload(status=status, ts=datetime.now(UTC)))


class MqttConsumer:
    """Owns the paho client; hands every uplink message to ``sink`` (called on paho's thread)."""

    def __init__(self, config: CollectorConfig, sink: MessageSink) -> None:
        self._config = config
        self._sink = sink
        self._lock = threading.Lock()
        self._generation = 0
        self.connected = threading.Event()
        self.subscribed = threading.Event()  # SUBACK seen: from here on the broker queues for us
        self.client = ReadAheadClient(
            CallbackAPIVersion.VERSION2,
            client_id=config.client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        self.client.manual_ack_set(True)
        self.client.max_inflight_messages_set(config.broker_max_inflight)
        user, password = config.broker_credentials()
        if user is not None:
            self.client.username_pw_set(user, password)
        if config.broker_tls:
            self.client.tls_set()
        self.client.will_set(COLLECTOR_STATUS_TOPIC, collector_status_payload("offline"), qos=1, retain=True)
        self.client.reconnect_delay_set(1, 10)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    @property
    def generation(self) -> int:
        with self._lock:
            return self._generation

    def start(self, wait: float | None = 10.0) -> None:
        self.client.connect_async(self._config.broker_host, self._config.broker_port, self._config.broker_keepalive)
        self.client.loop_start()
        if wait is not None and not self.subscribed.wait(wait):
            log.warning("broker %s not reachable yet; retrying in the background", self._config.broker_url)

    def ack(self, messages: Sequence[InboundMessage]) -> int:
        """PUBACK committed messages, in one write; returns how many. A message whose connection
        is gone is skipped (the broker redelivers it); QoS 0 needs none."""
        with self._lock:
            generation = self._generation if self.connected.is_set() else None
        mids = [message.mid for message in messages if message.qos == 1 and message.generation == generation]
        queue_pubacks(self.client, mids)
        return len(mids)

    def publish_acks(self, acks: Sequence[tuple[str, bytes]]) -> int:
        """Send a batch's acks to their agents at QoS 0, in one write; returns how many (0 when not
        connected). QoS 1 would add nothing: agents use clean sessions, so no broker keeps an ack
        for an agent that is gone, and a lost ack loses no data — the next ack of the session
        covers the same records, or the agent sends them again and they are acked as duplicates."""
        if not self.connected.is_set():
            return 0
        queue_publishes(self.client, acks)
        return len(acks)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> bool:
        """QoS 1 publish (commands, refusals); False when not connected (paho queues nothing useful then)."""
        if not self.connected.is_set():
            return False
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def stop(self) -> None:
        """Graceful stop: retained ``offline`` first (the LWT fires only on an unclean loss)."""
        if self.connected.is_set():
            info = self.client.publish(COLLECTOR_STATUS_TOPIC, collector_status_payload("offline"), qos=1, retain=True)
            try:
                info.wait_for_publish(PUBLISH_TIMEOUT)
            except (RuntimeError, ValueError):
                log.warning("could not publish the collector's offline status")
        self.client.disconnect()
        self.client.loop_stop()
        self.connected.clear()
        self.subscribed.clear()

    # --- paho callbacks (network thread) ----------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        name_os_thread("mqtt-loop")  # paho's own thread: named here, its first callback
        if reason.is_failure:
            log.error("broker refused the collector: %s", reason)
            return
        with self._lock:
            self._generation += 1
        log.info(
            "connected to %s as %s (session present: %s)",
            self._config.broker_url,
            self._config.client_id,
            getattr(flags, "session_present", None),
        )
        # Re-subscribing is idempotent and covers a broker that lost the session.
        client.subscribe([(topic_filter, 1) for topic_filter in subscription_filters(self._config)])
        client.publish(COLLECTOR_STATUS_TOPIC, collector_status_payload("online"), qos=1, retain=True)
        self.connected.set()

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        failed = [reason for reason in reasons if reason.is_failure]
        if failed:
            log.error("broker refused subscriptions: %s", failed)
            return
        self.subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connected.clear()
        self.subscribed.clear()
        if reason.is_failure:
            log.warning("lost the broker connection: %s", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            generation = self._generation
        try:
            topic = msg.topic
        except UnicodeDecodeError:  # brokers refuse such topics; if one slips through, dead-letter it
            topic = bytes(msg._topic).decode("utf-8", "replace")  # paho offers the raw topic no other way
        self._sink(
            inbound_message(
                topic, msg.payload, mid=msg.mid, qos=msg.qos, generation=generation,
                limit=self._config.max_message_bytes,
            )
        )
