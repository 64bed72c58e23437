"""No loss through broker outages and agent crashes: the test plays the collector.

The collector double subscribes to the uplink, keeps what it received (its "database"),
publishes its retained online status and acks the contiguous high-water mark of each session,
exactly as the contract says: ``ack {session, seq}`` = everything ≤ seq is committed. Like the
real collector, live records are acked as the contiguous prefix and replayed ones up to the
batch's highest seq.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.config import load_config
from agent.runtime import AgentRuntime
from protocol.mqtt.models import (
    BirthPayload,
    CollectorStatusPayload,
    EventPayload,
    HistBatch,
    StatePayload,
    decode,
    encode,
)
from protocol.mqtt.topics import COLLECTOR_STATUS_TOPIC, UPLINK_FILTERS, ack_topic


class CollectorDouble:
    def __init__(self, broker: Any) -> None:
        self.lock = threading.Lock()
        self.received: dict[tuple[int, int], list[Any]] = {}  # (session, seq) -> every copy
        self.live_order: dict[int, list[int]] = {}  # session -> seqs in arrival order (live topics)
        self.hist_order: list[tuple[int, int]] = []
        self.acked: dict[int, int] = {}
        self.connected = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="collector-double", clean_session=False)
        will = CollectorStatusPayload(status="offline", ts=_now())
        self.client.will_set(COLLECTOR_STATUS_TOPIC, encode(will), qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect_async(broker.host, broker.port, keepalive=5)
        self.client.loop_start()
        assert self.connected.wait(10)
        # The test broker autosaves every second; a kill -9 before that would forget this
        # persistent session (and with it a birth queued for us, which nothing re-sends).
        threading.Event().wait(1.2)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        for topic in UPLINK_FILTERS:
            client.subscribe(topic, qos=1)
        online = CollectorStatusPayload(status="online", ts=_now())
        client.publish(COLLECTOR_STATUS_TOPIC, encode(online), qos=1, retain=True)
        self.connected.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        if not msg.payload:
            return
        payload = decode(msg.topic, bytes(msg.payload))
        records: list[Any]
        with self.lock:
            if isinstance(payload, HistBatch):
                records = [record.payload for record in payload.records]
            elif isinstance(payload, StatePayload | EventPayload | BirthPayload):
                records = [payload]
            else:
                return
            replayed = isinstance(payload, HistBatch)
            for record in records:
                self._store(record, live=not replayed)
            if replayed:
                acks = self._replayed_high_water(records)
            else:
                acks = self._high_water({r.session for r in records})
        for session, seq in acks:
            body = json.dumps({"v": 1, "session": session, "seq": seq}).encode()
            client.publish(ack_topic(payload.agent), body, qos=1)

    def _store(self, payload: Any, *, live: bool) -> None:
        key = (payload.session, payload.seq)
        self.received.setdefault(key, []).append(payload)
        if live:
            self.live_order.setdefault(payload.session, []).append(payload.seq)
        else:
            self.hist_order.append(key)

    def _high_water(self, sessions: set[int]) -> list[tuple[int, int]]:
        """Contiguous committed prefix per session. Re-sent even when unchanged: a record that
        arrives again means the agent missed the previous ack (it was offline)."""
        acks = []
        for session in sessions:
            seq = self.acked.get(session, -1)
            while (session, seq + 1) in self.received:
                seq += 1
            if seq >= 0:
                self.acked[session] = seq
                acks.append((session, seq))
        return acks

    def _replayed_high_water(self, records: list[Any]) -> list[tuple[int, int]]:
        """Replay sends every unacked record of a session oldest first, so the batch's top seq
        covers the session up to there (as the real collector's "max" mode), even across seqs
        it never saw, such as a birth lost with a crashed broker."""
        tops: dict[int, int] = {}
        for record in records:
            tops[record.session] = max(tops.get(record.session, -1), record.seq)
        for session, top in tops.items():
            self.acked[session] = max(self.acked.get(session, -1), top)
        return [(session, self.acked[session]) for session in tops]

    def events(self) -> dict[tuple[int, int], list[EventPayload]]:
        with self.lock:
            return {k: v for k, v in self.received.items() if isinstance(v[0], EventPayload)}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str | Callable[[], str]) -> None:
    done = threading.Event()
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        done.wait(0.05)
    raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")


def assert_no_loss(collector: CollectorDouble, created: list[tuple[int, int, str]]) -> None:
    events = collector.events()
    missing = [c for c in created if (c[0], c[1]) not in events]
    assert not missing, f"events lost: {missing}"
    for session, seq, kind in created:
        copies = events[(session, seq)]
        assert copies[0].kind == kind
        # duplicates (replay after an unacked publish) are the same record, so dedup is exact
        assert all(c.model_dump() == copies[0].model_dump() for c in copies)
    for session, seqs in collector.live_order.items():
        first_seen = list(dict.fromkeys(seqs))
        assert first_seen == sorted(first_seen), f"session {session} delivered out of order: {first_seen}"
    replayed = list(dict.fromkeys(collector.hist_order))
    # each replay pass goes oldest first; passes restart after a reconnect
    assert replayed == sorted(replayed) or len(set(replayed)) == len(replayed)


def test_broker_outage_loses_no_event(
    mqtt_broker: Any, tmp_path: Path, model_register: Any
) -> None:
    collector = CollectorDouble(mqtt_broker)
    config = load_config(None, env={}, overrides={
        "agent_id": "agent-nl",
        "broker": {"url": mqtt_broker.url, "keepalive": 2, "reconnect_min": 0.05, "reconnect_max": 0.3},
        "outbox": {"path": str(tmp_path / "outbox.sqlite"), "commit_interval": 0.05},
        "devices": [{"protocol": "shtrih", "url": "sim://shtrih", "poll_interval": 0.05, "register_id": "kkt-1"}],
    })
    runtime = AgentRuntime(config, opener=lambda device: model_register)
    created: list[tuple[int, int, str]] = []
    emit = runtime.emit_event

    def recording_emit(*args: Any, **kwargs: Any) -> tuple[int, int]:
        session, seq = emit(*args, **kwargs)
        created.append((session, seq, str(args[1])))
        return session, seq

    runtime.emit_event = recording_emit  # type: ignore[method-assign]
    runtime.start()
    try:
        def toggle(rounds: int) -> None:
            for _ in range(rounds):
                model_register.change(lambda m: m.close_shift() if m.shift_open else m.open_shift())
                threading.Event().wait(0.12)

        wait_until(lambda: runtime.publisher.connected, 10, "agent connected")
        toggle(4)
        mqtt_broker.kill()  # outage: the register keeps changing
        toggle(6)
        mqtt_broker.start()
        toggle(4)
        mqtt_broker.stop()  # a second, graceful outage
        toggle(3)
        mqtt_broker.start()
        wait_until(lambda: runtime.publisher.connected, 10, "agent reconnected")
        toggle(3)
        assert len(created) >= 15
        wait_until(lambda: all((s, q) in collector.events() for s, q, _ in created), 15, "every event delivered")
        sessions = {s for s, _, _ in created}
        assert len(sessions) >= 3  # one per connection (plus the first)
        assert_no_loss(collector, created)
        # acks empty the outbox: nothing is kept forever once the collector has it
        wait_until(
            lambda: runtime.outbox.depth() == 0,
            10,
            lambda: f"outbox drained by acks; left {[(r.session, r.seq) for r in runtime.outbox.backlog(50)]}, "
            f"acked {collector.acked}, live session {runtime.publisher.session}",
        )
    finally:
        runtime.stop(timeout=2)
        collector.close()


def test_agent_killed_and_restarted_loses_no_event(
    mqtt_broker: Any, agent_process: Callable[..., Any]
) -> None:
    collector = CollectorDouble(mqtt_broker)
    agent = agent_process("agent-crash", poll=0.1)
    try:
        agent.start()
        wait_until(lambda: len(agent.created_events()) >= 8, 15, "events before the crash")
        agent.kill()
        before = agent.created_events()
        agent.start()  # same outbox: unacked rows of the dead process are replayed on hist
        wait_until(lambda: len(agent.created_events()) >= len(before) + 5, 15, "events after the restart")
        created = agent.created_events()
        wait_until(lambda: all((s, q) in collector.events() for s, q, _ in created), 15, "every event delivered")
        assert_no_loss(collector, created)
        assert len({s for s, _, _ in created}) >= 2
    finally:
        agent.kill()
        collector.close()
