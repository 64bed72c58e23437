"""The collector's cheaper MQTT I/O (``collector.ingest.mqtt_io``): the read-ahead socket, and a
batch of PUBACKs in one write reaching a real broker (acked messages are not redelivered to the
persistent session, unacked ones are)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from collector.config import CollectorConfig
from collector.ingest.consumer import InboundMessage, MqttConsumer
from collector.ingest.mqtt_io import ReadAhead


def test_read_ahead_serves_small_reads_from_one_recv_and_says_what_it_holds() -> None:
    left, right = socket.socketpair()
    with left, right:
        reader = ReadAhead(left)
        right.sendall(b"\x30\x03abc\x40\x02\x00\x01")
        time.sleep(0.05)
        assert reader.recv(1) == b"\x30"
        assert reader.pending() == 8  # the rest came with the first recv()
        assert reader.recv(1) == b"\x03" and reader.recv(3) == b"abc"
        assert reader.recv(10) == b"\x40\x02\x00\x01"  # never more than what is buffered
        assert reader.pending() == 0
        left.setblocking(False)
        with pytest.raises(BlockingIOError):
            reader.recv(1)
        assert reader.fileno() == left.fileno()  # the rest of the socket is the socket's
        right.close()
        assert reader.recv(1) == b""  # end of stream passes through


class _Collecting:
    def __init__(self) -> None:
        self.messages: list[InboundMessage] = []
        self.lock = threading.Lock()

    def __call__(self, message: InboundMessage) -> None:
        if "/state/" not in message.topic:
            return  # the collector's own retained status also matches its subscriptions
        with self.lock:
            self.messages.append(message)

    def wait(self, count: int, timeout: float = 10.0) -> list[InboundMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.02)
        raise AssertionError(f"received {len(self.messages)} of {count} messages")


@pytest.fixture
def consumer_at(mqtt_broker: Any) -> Iterator[Any]:
    started: list[MqttConsumer] = []

    def start(sink: _Collecting) -> MqttConsumer:
        config = CollectorConfig(broker_url=mqtt_broker.url, db_url="sqlite://", client_id="io-test")
        consumer = MqttConsumer(config, sink)
        consumer.start()
        started.append(consumer)
        return consumer

    yield start
    for consumer in started:
        consumer.stop()


@pytest.mark.mosquitto
def test_a_batch_of_pubacks_reaches_the_broker(consumer_at: Any, mqtt_recorder: Any) -> None:
    first = _Collecting()
    consumer = consumer_at(first)
    publisher = mqtt_recorder([])
    for seq in range(200):
        publisher.publish(f"kassa/v1/agent-{seq}/state/kkt-{seq}", b"{}")
    received = first.wait(200)
    assert consumer.ack(received[:150]) == 150  # 50 left unacked
    time.sleep(0.3)
    consumer.stop()
    again = _Collecting()
    consumer_at(again)  # same client id, persistent session: the broker redelivers what was not acked
    redelivered = again.wait(50)
    time.sleep(0.5)
    assert sorted(m.topic for m in again.messages) == sorted(m.topic for m in received[150:])
    assert len(redelivered) == 50


@pytest.mark.mosquitto
def test_a_burst_is_read_whole_and_in_order(consumer_at: Any, mqtt_recorder: Any) -> None:
    """Packets the read-ahead buffer holds are read in bursts (``READ_BURST`` a loop turn), one
    cut at the buffer's end completed by the next read: every message arrives once, in order."""
    sink = _Collecting()
    consumer_at(sink)
    publisher = mqtt_recorder([])
    payloads = [bytes([seq % 251]) * (1000 + seq * 37 % 3000) for seq in range(2000)]
    publisher.publish("kassa/v1/agent-x/state/kkt-x", b"{}")  # connected
    sent = [publisher.client.publish(f"kassa/v1/agent-{seq}/state/kkt-{seq}", payload, qos=1)
            for seq, payload in enumerate(payloads)]  # without waiting for each PUBACK: the broker streams them
    for info in sent:
        info.wait_for_publish(10)
    received = sink.wait(2001, timeout=30)[1:]
    time.sleep(0.3)
    assert len(sink.messages) == 2001
    assert [m.topic for m in received] == [f"kassa/v1/agent-{seq}/state/kkt-{seq}" for seq in range(2000)]
    assert [m.payload for m in received] == payloads
