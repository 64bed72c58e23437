"""The MQTT connection: LWT per session, new session per connection, jittered reconnect."""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Callable
from typing import Any

import pytest

from agent.config import BrokerConfig
from agent.publisher import Backoff, MqttPublisher, Will


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    backoff = Backoff(1.0, 120.0, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(12)]
    caps = [min(120.0, 2.0**n) for n in range(12)]
    assert all(0 <= d <= cap for d, cap in zip(delays, caps, strict=True))
    # full jitter: not just the cap, and spread over the range
    assert len({round(d, 6) for d in delays}) == 12
    assert any(d < cap / 2 for d, cap in zip(delays[4:], caps[4:], strict=True))
    backoff.reset()
    assert backoff.next_delay() <= 1.0


class Harness:
    def __init__(self, broker: Any) -> None:
        self.sessions = itertools.count(1)
        self.connected: list[int] = []
        self.disconnected: list[int] = []
        self.messages: list[tuple[str, bytes]] = []
        self.up = threading.Event()
        config = BrokerConfig(url=broker.url, keepalive=5, reconnect_min=0.05, reconnect_max=0.3)
        self.publisher = MqttPublisher(
            config,
            "agent-t",
            new_session=lambda: next(self.sessions),
            will=lambda s: Will("kassa/v1/agent-t/status", f"dead {s}".encode()),
            subscriptions=["kassa/v1/agent-t/cmd"],
            on_connected=self._connected,
            on_message=lambda t, p: self.messages.append((t, p)),
            on_disconnected=self.disconnected.append,
        )

    def _connected(self, session: int) -> None:
        self.connected.append(session)
        self.up.set()


@pytest.fixture
def harness(mqtt_broker: Any) -> Any:
    h = Harness(mqtt_broker)
    h.publisher.start()
    assert h.up.wait(5)
    yield h
    h.publisher.stop(timeout=2)


def wait(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    done = threading.Event()
    deadline = threading.Timer(timeout, done.set)
    deadline.start()
    try:
        while not predicate():
            if done.wait(0.02):
                pytest.fail("condition not reached in time")
    finally:
        deadline.cancel()


def test_publish_acks_and_downlink(harness: Harness, mqtt_recorder: Any) -> None:
    recorder = mqtt_recorder(["kassa/v1/agent-t/#"])
    acked = threading.Event()
    assert harness.publisher.publish("kassa/v1/agent-t/state/r1", b"x", on_ack=acked.set)
    assert acked.wait(5)
    recorder.publish("kassa/v1/agent-t/cmd", b"hello")
    wait(lambda: harness.messages == [("kassa/v1/agent-t/cmd", b"hello")])
    assert harness.publisher.session == 1


def test_broker_restart_gives_a_new_session_and_kill_fires_the_lwt(
    mqtt_broker: Any, harness: Harness, mqtt_recorder: Any
) -> None:
    mqtt_broker.kill()
    wait(lambda: harness.disconnected == [1])
    assert not harness.publisher.publish("kassa/v1/agent-t/state/r1", b"lost")  # nothing sent while down
    mqtt_broker.start()
    wait(lambda: harness.connected == [1, 2])
    # The LWT registered with the second connection names session 2.
    watcher = mqtt_recorder(["kassa/v1/agent-t/status"])
    client = harness.publisher._client  # the live paho client, to cut its socket without DISCONNECT
    assert client is not None
    sock = client.socket()
    assert sock is not None
    sock.close()
    got = watcher.wait_for(lambda m: any(x.payload == b"dead 2" for x in m))
    assert got[-1].payload == b"dead 2"


def test_stop_publishes_farewell_before_disconnect(harness: Harness, mqtt_recorder: Any) -> None:
    recorder = mqtt_recorder(["kassa/v1/agent-t/status"])
    harness.publisher.stop(farewell=lambda s: Will("kassa/v1/agent-t/status", f"bye {s}".encode()))
    recorder.wait_for(lambda m: len(m) >= 1)
    threading.Event().wait(0.3)  # an LWT, if the broker wrongly sent one, would follow right away
    got = recorder.messages
    assert [m.payload for m in got] == [b"bye 1"]  # and never the LWT
    assert not harness.publisher.connected
