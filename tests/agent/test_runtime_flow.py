"""The runtime against a private Mosquitto: documented messages, commands, link loss, outbox."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.config import AgentConfig, load_config
from agent.runtime import AgentRuntime
from protocol.mqtt.models import (
    BirthPayload,
    CollectorStatusPayload,
    EventPayload,
    StatePayload,
    StatusPayload,
    decode,
    encode,
)
from protocol.mqtt.topics import COLLECTOR_STATUS_TOPIC

AGENT = "agent-rt"


def make_config(broker: Any, tmp_path: Path, **extra: Any) -> AgentConfig:
    raw: dict[str, Any] = {
        "agent_id": AGENT,
        "heartbeat": 60,
        "ack_mode": "puback",
        "health_file": str(tmp_path / "health.json"),
        "broker": {"url": broker.url, "keepalive": 5, "reconnect_min": 0.05, "reconnect_max": 0.3},
        "outbox": {"path": str(tmp_path / "outbox.sqlite"), "commit_interval": 0.05},
        "devices": [{"protocol": "shtrih", "url": "sim://shtrih", "poll_interval": 0.1, "register_id": "kkt-1"}],
    }
    for key, value in extra.items():
        if isinstance(value, dict):
            raw[key] = {**raw.get(key, {}), **value}
        else:
            raw[key] = value
    return load_config(None, env={}, overrides=raw)


@pytest.fixture
def start_runtime(mqtt_broker: Any, tmp_path: Path) -> Iterator[Callable[..., AgentRuntime]]:
    started: list[AgentRuntime] = []

    def start(register: Any, **extra: Any) -> AgentRuntime:
        runtime = AgentRuntime(make_config(mqtt_broker, tmp_path, **extra), opener=lambda device: register)
        runtime.start()
        started.append(runtime)
        return runtime

    yield start
    for runtime in started:
        if not runtime.stopping.is_set():
            runtime.stop(timeout=2)


def parsed(messages: list[Any], kind: str) -> list[Any]:
    return [decode(m.topic, m.payload) for m in messages if m.topic.split("/")[3] == kind and m.payload]


def events(messages: list[Any], kind: str | None = None) -> list[EventPayload]:
    found = [e for e in parsed(messages, "event") if isinstance(e, EventPayload)]
    return [e for e in found if kind is None or e.kind == kind]


def test_status_birth_state_and_events_are_published(
    start_runtime: Callable[..., AgentRuntime], mqtt_recorder: Any, model_register: Any, tmp_path: Path
) -> None:
    recorder = mqtt_recorder([f"kassa/v1/{AGENT}/#"])
    runtime = start_runtime(model_register, heartbeat=0.5)

    messages = recorder.wait_for(lambda m: len(parsed(m, "state")) >= 1)
    status = [m for m in messages if m.topic.endswith("/status")]
    assert status
    online = decode(status[0].topic, status[0].payload)
    assert isinstance(online, StatusPayload) and online.status == "online"
    birth = parsed(messages, "birth")[0]
    assert isinstance(birth, BirthPayload) and birth.session == online.session
    assert [d.register_id for d in birth.devices] == ["kkt-1"]
    state = parsed(messages, "state")[0]
    assert isinstance(state, StatePayload) and state.reason == "change" and state.register == "kkt-1"
    assert state.state.read_at is not None and state.state.read_at.tzinfo is not None
    # Order on the wire: status, then birth, then live state; seqs ascend from birth.
    kinds = [m.topic.split("/")[3] for m in messages]
    assert kinds.index("status") < kinds.index("birth") < kinds.index("state")
    assert birth.seq < state.seq

    model_register.change(lambda m: m.open_shift())
    messages = recorder.wait_for(lambda m: events(m, "shift_opened"))
    opened = events(messages, "shift_opened")[0]
    assert opened.register == "kkt-1" and opened.session == online.session
    # heartbeat: unchanged state is re-published
    recorder.wait_for(lambda m: any(s.reason == "heartbeat" for s in parsed(m, "state")), timeout=5)

    # A late subscriber sees the retained online status of the current session.
    late = mqtt_recorder([f"kassa/v1/{AGENT}/status"], client_id="late")
    retained = late.wait_for(lambda m: len(m) >= 1)[0]
    assert retained.retain and decode(retained.topic, retained.payload).session == online.session  # type: ignore[union-attr]

    health = read_health(tmp_path)
    assert health["broker_connected"] is True and health["devices"][0]["link_up"] is True
    runtime.stop(timeout=2)
    stopped = recorder.wait_for(lambda m: any(b'"offline"' in x.payload for x in m))
    farewell = decode(stopped[-1].topic, stopped[-1].payload)
    assert isinstance(farewell, StatusPayload) and farewell.reason == "shutdown"
    assert farewell.session == online.session


def test_a_register_first_read_after_the_birth_is_announced_by_a_rebirth(
    start_runtime: Callable[..., AgentRuntime], mqtt_recorder: Any, model_register: Any
) -> None:
    """Without a configured register id the first birth only has a placeholder; the collector must
    learn the real id (derived from the factory serial) before the first state arrives under it."""
    recorder = mqtt_recorder([f"kassa/v1/{AGENT}/#"])
    devices = [{"protocol": "shtrih", "url": "sim://shtrih", "poll_interval": 0.1}]
    start_runtime(model_register, devices=devices)
    messages = recorder.wait_for(lambda m: len(parsed(m, "state")) >= 1)
    state = parsed(messages, "state")[0]
    births = [b for b in parsed(messages, "birth") if b.seq < state.seq]
    assert births, "no birth before the first state"
    assert [d.register_id for d in births[-1].devices] == [state.register]
    assert births[-1].devices[0].state is not None and births[-1].devices[0].link_up


def test_commands_unknown_malformed_rebirth_and_poll_now(
    start_runtime: Callable[..., AgentRuntime], mqtt_recorder: Any, model_register: Any
) -> None:
    recorder = mqtt_recorder([f"kassa/v1/{AGENT}/#"])
    start_runtime(model_register, devices=[{"protocol": "shtrih", "url": "sim://x", "poll_interval": 30}])
    recorder.wait_for(lambda m: len(parsed(m, "state")) >= 1)
    cmd = f"kassa/v1/{AGENT}/cmd"
    recorder.publish(cmd, b'{"v":1,"id":"c1","cmd":"self-destruct","args":{}}')
    recorder.publish(cmd, b"{not json")
    messages = recorder.wait_for(lambda m: len(events(m, "command_error")) >= 2)
    unknown, malformed = events(messages, "command_error")[:2]
    assert unknown.register is None and unknown.data["cmd"] == "self-destruct"
    assert malformed.data["reason"] == "invalid_json"
    recorder.publish(cmd, b'{"v":1,"id":"c2","cmd":"rebirth","args":{}}')
    recorder.wait_for(lambda m: len(parsed(m, "birth")) >= 2)
    # poll-now: a 30 s poll interval, yet a fresh state arrives at once
    recorder.publish(cmd, b'{"v":1,"id":"c3","cmd":"poll-now","args":{}}')
    messages = recorder.wait_for(lambda m: any(s.reason == "poll-now" for s in parsed(m, "state")), timeout=3)
    assert model_register.polls >= 2


def test_unplug_and_replug_give_link_events_and_the_worker_survives(
    start_runtime: Callable[..., AgentRuntime], mqtt_recorder: Any, model_register: Any, tmp_path: Path
) -> None:
    recorder = mqtt_recorder([f"kassa/v1/{AGENT}/#"])
    runtime = start_runtime(model_register)
    recorder.wait_for(lambda m: len(parsed(m, "state")) >= 1)
    model_register.unplug()
    messages = recorder.wait_for(lambda m: events(m, "link_lost"))
    lost = events(messages, "link_lost")[0]
    assert "LinkClosed" in lost.data["error"]
    # the health file is rewritten after the failed poll that raised the event
    recorder.wait_for(lambda m: read_health(tmp_path)["devices"][0]["link_up"] is False)
    assert "LinkClosed" in read_health(tmp_path)["devices"][0]["error"]
    polls = model_register.polls
    recorder.wait_for(lambda m: model_register.polls > polls + 2)
    assert len(events(recorder.messages, "link_lost")) == 1  # one event per outage, not per failed poll
    model_register.replug()
    messages = recorder.wait_for(lambda m: events(m, "link_regained"))
    assert events(messages, "link_regained")[0].data["down_seconds"] >= 0
    assert all(w.thread.is_alive() for w in runtime.workers)


def test_collector_acks_empty_the_outbox_and_replay_waits_for_the_collector(
    mqtt_broker: Any, start_runtime: Callable[..., AgentRuntime], mqtt_recorder: Any, model_register: Any
) -> None:
    recorder = mqtt_recorder([f"kassa/v1/{AGENT}/#"], persistent=True)
    runtime = start_runtime(model_register, ack_mode="collector")
    messages = recorder.wait_for(lambda m: len(parsed(m, "state")) >= 1)
    model_register.change(lambda m: m.open_shift())
    # The events and then the state of the open shift: the ack below must cover all of them.
    messages = recorder.wait_for(
        lambda m: events(m, "shift_opened") and any(s.state.shift.status == "open" for s in parsed(m, "state"))
    )
    assert runtime.outbox.depth() >= 2  # nothing acked yet
    session = events(messages)[0].session
    # The shift-open document also starts an OFD backlog, so more records may follow: ack them all.
    recorder.publish(f"kassa/v1/{AGENT}/ack", json.dumps({"v": 1, "session": session, "seq": 10**9}).encode())
    recorder.wait_for(lambda m: runtime.outbox.depth() == 0)

    # Broker outage: the shift closes meanwhile. After reconnect the backlog waits for the
    # collector (ack mode "collector", its status never seen), then goes out on hist.
    mqtt_broker.stop()
    recorder.wait_for(lambda m: not runtime.publisher.connected)
    model_register.change(lambda m: m.close_shift())
    recorder.wait_for(lambda m: runtime.outbox.depth() >= 2)
    mqtt_broker.start()
    recorder.wait_for(lambda m: len(parsed(m, "birth")) >= 2)
    threading_wait(0.5)
    assert not parsed(recorder.messages, "hist") and runtime.replayed == 0  # paused: collector unseen
    status = CollectorStatusPayload(status="online", ts=runtime.now())
    recorder.publish(COLLECTOR_STATUS_TOPIC, encode(status), retain=True)
    messages = recorder.wait_for(lambda m: parsed(m, "hist"))
    records = [r.payload for batch in parsed(messages, "hist") for r in batch.records]
    assert any(isinstance(r, EventPayload) and r.kind == "shift_closed" for r in records)
    assert all(r.session == session for r in records)  # replay keeps the original envelope


def test_a_record_no_collector_acked_is_sent_again_once(
    mqtt_broker: Any, start_runtime: Callable[..., AgentRuntime], mqtt_recorder: Any, model_register: Any
) -> None:
    """Collectors sharing the stream ack selectively; a record none acked (a broker node that died
    lost it) goes out again on hist after ``unacked_grace``, and is deleted once a collector acks it."""
    recorder = mqtt_recorder([f"kassa/v1/{AGENT}/#"], persistent=True)
    runtime = start_runtime(model_register, ack_mode="collector", replay={"unacked_grace": 0.5})
    recorder.publish(COLLECTOR_STATUS_TOPIC, encode(CollectorStatusPayload(status="online", ts=runtime.now())), retain=True)
    model_register.change(lambda m: m.open_shift())
    messages = recorder.wait_for(lambda m: len(events(m)) >= 1 and len(parsed(m, "state")) >= 1)
    recorder.wait_for(lambda m: runtime.outbox.stats().awaiting_ack >= 3)
    live = [(p.session, p.seq) for p in [*parsed(messages, "birth"), *parsed(messages, "state"), *events(messages)]]
    session = live[0][0]
    seqs = sorted(seq for _, seq in live)
    lost, top = seqs[1], seqs[-1] + 10**6  # ack everything above the lost one, and far beyond
    ack = {"v": 1, "session": session, "ranges": [[seqs[0], lost - 1], [lost + 1, top]]}
    recorder.publish(f"kassa/v1/{AGENT}/ack", json.dumps(ack).encode())
    messages = recorder.wait_for(lambda m: parsed(m, "hist"), timeout=10)
    resent = [(r.payload.session, r.payload.seq) for batch in parsed(messages, "hist") for r in batch.records]
    assert resent == [(session, lost)]
    recorder.wait_for(lambda m: runtime.unacked_resent == 1)  # counted after the PUBACK
    threading_wait(1.5)  # once per connection: no second copy
    assert len(parsed(recorder.messages, "hist")) == 1
    recorder.publish(f"kassa/v1/{AGENT}/ack", json.dumps({"v": 1, "session": session, "ranges": [[lost, lost]]}).encode())
    recorder.wait_for(lambda m: runtime.outbox.depth() == 0)


def test_a_replayed_record_no_collector_acked_is_sent_again_once(
    mqtt_broker: Any, start_runtime: Callable[..., AgentRuntime], mqtt_recorder: Any, model_register: Any
) -> None:
    """An older session's records replayed on ``hist`` can be lost too (a stream electing a new
    leader after a node died took the batch and kept nothing): once collectors ack selectively, a
    replayed record none acked goes out again after ``unacked_grace`` on the same connection."""
    recorder = mqtt_recorder([f"kassa/v1/{AGENT}/#"], persistent=True)
    runtime = start_runtime(model_register, ack_mode="collector", replay={"unacked_grace": 0.5})
    model_register.change(lambda m: m.open_shift())
    messages = recorder.wait_for(lambda m: events(m, "shift_opened") and runtime.outbox.stats().awaiting_ack >= 3)
    old_session = events(messages)[0].session
    mqtt_broker.stop()  # a new connection, so the first session's records become backlog
    recorder.wait_for(lambda m: not runtime.publisher.connected)
    mqtt_broker.start()
    recorder.wait_for(lambda m: runtime.publisher.connected and runtime.publisher.session != old_session)
    recorder.publish(COLLECTOR_STATUS_TOPIC, encode(CollectorStatusPayload(status="online", ts=runtime.now())), retain=True)
    messages = recorder.wait_for(lambda m: parsed(m, "hist"), timeout=10)
    replayed = sorted(r.payload.seq for batch in parsed(messages, "hist") for r in batch.records)
    assert len(replayed) >= 3 and {r.payload.session for b in parsed(messages, "hist") for r in b.records} == {old_session}
    recorder.wait_for(lambda m: runtime.replayed == len(replayed))
    lost = replayed[1]
    ack = {"v": 1, "session": old_session, "ranges": [[replayed[0], lost - 1], [lost + 1, replayed[-1]]]}
    recorder.publish(f"kassa/v1/{AGENT}/ack", json.dumps(ack).encode())
    messages = recorder.wait_for(lambda m: len(parsed(m, "hist")) >= 2, timeout=10)
    again = [(r.payload.session, r.payload.seq) for batch in parsed(messages, "hist")[1:] for r in batch.records]
    assert again == [(old_session, lost)]
    recorder.wait_for(lambda m: runtime.unacked_resent == 1)
    threading_wait(1.5)  # once per connection: no third copy
    assert len(parsed(recorder.messages, "hist")) == 2
    recorder.publish(f"kassa/v1/{AGENT}/ack", json.dumps({"v": 1, "session": old_session, "ranges": [[lost, lost]]}).encode())
    recorder.wait_for(lambda m: not any(row.session == old_session for row in runtime.outbox.backlog(100)))


def test_full_outbox_counts_drops_and_reports_a_gap(
    mqtt_broker: Any, start_runtime: Callable[..., AgentRuntime], mqtt_recorder: Any, model_register: Any
) -> None:
    recorder = mqtt_recorder([f"kassa/v1/{AGENT}/#"], persistent=True)
    runtime = start_runtime(model_register, outbox={"max_bytes": 4096})
    recorder.wait_for(lambda m: len(parsed(m, "state")) >= 1)
    mqtt_broker.stop()
    recorder.wait_for(lambda m: not runtime.publisher.connected)
    for _ in range(12):  # each toggle is two events of ~600 bytes: far past 4 KiB
        model_register.change(lambda m: (m.open_shift(), m.close_shift()))
        threading_wait(0.15)
    mqtt_broker.start()
    messages = recorder.wait_for(lambda m: events(m, "outbox_gap") or any(
        isinstance(r.payload, EventPayload) and r.payload.kind == "outbox_gap"
        for b in parsed(m, "hist") for r in b.records), timeout=10)
    gaps = events(messages, "outbox_gap") + [
        r.payload for b in parsed(messages, "hist") for r in b.records
        if isinstance(r.payload, EventPayload) and r.payload.kind == "outbox_gap"
    ]
    assert gaps[0].register is None
    assert sum(int(v) for v in gaps[0].data.values() if isinstance(v, int)) > 0


def read_health(tmp_path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((tmp_path / "health.json").read_text())
    return data


def threading_wait(seconds: float) -> None:
    import threading

    threading.Event().wait(seconds)


def test_clock_noise_is_not_a_change(
    start_runtime: Callable[..., AgentRuntime], mqtt_recorder: Any, model_register: Any
) -> None:
    """The register clock and read_at move on every poll; only real changes publish a state."""
    recorder = mqtt_recorder([f"kassa/v1/{AGENT}/state/+"])
    start_runtime(model_register)  # 0.1 s polls, 60 s heartbeat
    recorder.wait_for(lambda m: len(m) >= 1)
    polls = model_register.polls
    recorder.wait_for(lambda m: model_register.polls >= polls + 12, timeout=5)  # across a clock second
    states = [s for s in parsed(recorder.messages, "state") if isinstance(s, StatePayload)]
    assert [s.reason for s in states] == ["change"]
    model_register.change(lambda m: m.open_shift())  # a real change: new FD, shift open
    recorder.wait_for(lambda m: len(m) >= 2)
    changed = parsed(recorder.messages, "state")[1]
    assert changed.reason == "change" and changed.state.last_fd_number == model_register.model.last_fd_number


def test_backlog_replay_is_rate_limited_and_oldest_first(
    mqtt_broker: Any, start_runtime: Callable[..., AgentRuntime], mqtt_recorder: Any, model_register: Any
) -> None:
    recorder = mqtt_recorder([f"kassa/v1/{AGENT}/hist"], persistent=True)
    runtime = start_runtime(model_register, replay={"rate": 40, "batch": 5})
    mqtt_broker.stop()
    recorder.wait_for(lambda m: not runtime.publisher.connected)
    for _ in range(10):  # a shift event and a state per toggle, while offline
        model_register.change(lambda m: m.close_shift() if m.shift_open else m.open_shift())
        threading_wait(0.12)
    backlog = runtime.outbox.depth()
    assert backlog >= 20
    mqtt_broker.start()
    messages = recorder.wait_for(
        lambda m: sum(len(b.records) for b in parsed(m, "hist")) >= backlog, timeout=10
    )
    batches = parsed(messages, "hist")
    keys = [(r.payload.session, r.payload.seq) for b in batches for r in b.records]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert max(len(b.records) for b in batches) <= 5
    # 40 records/s: the batches after the first are made over at least (n-5)/40 s (agent clock,
    # since the persistent recorder may get them in one burst after its own reconnect)
    spread = (batches[-1].ts - batches[0].ts).total_seconds()
    assert spread >= (len(keys) - 5) / 40 * 0.8


@pytest.mark.parametrize(
    ("derived", "expected"),
    [("shtrih-0012345678901234", "shtrih-0012345678901234"), ("atol-00 12/34+#", "atol-00_12_34__"), ("", "register-unknown")],
)
def test_derived_register_ids_are_topic_safe(derived: str, expected: str) -> None:
    from agent.runtime import topic_safe_id

    assert topic_safe_id(derived) == expected


def test_a_full_outbox_reports_gaps_at_a_bounded_rate_and_every_drop_exactly_once(
    mqtt_broker: Any, start_runtime: Callable[..., AgentRuntime], mqtt_recorder: Any, model_register: Any
) -> None:
    interval = 1.5
    recorder = mqtt_recorder([f"kassa/v1/{AGENT}/#"], persistent=True)
    runtime = start_runtime(model_register, outbox={"max_bytes": 4096, "gap_report_interval": interval})
    recorder.wait_for(lambda m: len(parsed(m, "state")) >= 1)
    mqtt_broker.stop()
    recorder.wait_for(lambda m: not runtime.publisher.connected)
    started = time.monotonic()
    for _ in range(30):  # ~4.5 s of an outbox that overflows on every toggle
        model_register.change(lambda m: (m.open_shift(), m.close_shift()))
        threading_wait(0.15)
    mqtt_broker.start()

    def gap_reports(messages: list[Any]) -> list[EventPayload]:
        replayed = [
            r.payload for b in parsed(messages, "hist") for r in b.records
            if isinstance(r.payload, EventPayload) and r.payload.kind == "outbox_gap"
        ]
        return events(messages, "outbox_gap") + replayed

    def all_reported(messages: list[Any]) -> bool:
        stats = runtime.outbox.stats()
        reported = sum(g.data["dropped_states"] + g.data["dropped_events"] for g in gap_reports(messages))
        total = stats.dropped_states_total + stats.dropped_events_total
        return stats.pending_gap is None and total > 0 and reported == total

    messages = recorder.wait_for(all_reported, timeout=30)  # every drop reported, none twice
    elapsed = time.monotonic() - started
    # Gap reports are written at most once per interval, and unsent ones fold into the next.
    assert 1 <= len(gap_reports(messages)) <= 1 + elapsed / interval


def test_a_register_on_the_wrong_protocol_is_re_announced_with_the_link_error(
    mqtt_broker: Any, mqtt_recorder: Any, tmp_path: Path
) -> None:
    recorder = mqtt_recorder([f"kassa/v1/{AGENT}/birth"])
    wrong = {"protocol": "atol", "url": "sim://shtrih", "poll_interval": 30, "register_id": "kkt-1"}
    runtime = AgentRuntime(make_config(mqtt_broker, tmp_path, devices=[wrong]))  # the real driver opener
    runtime.start()
    try:
        messages = recorder.wait_for(
            lambda m: any(b.devices[0].error for b in parsed(m, "birth") if isinstance(b, BirthPayload)), timeout=40
        )
    finally:
        runtime.stop(timeout=2)
    births = [b for b in parsed(messages, "birth") if isinstance(b, BirthPayload)]
    assert births[0].devices[0].error is None  # announced at connect, before the first poll
    error = births[-1].devices[0].error
    assert error is not None and "NoAnswer" in error and "ATOL" in error
    assert births[-1].devices[0].link_up is False


def all_published(runtime: AgentRuntime) -> bool:
    stats = runtime.outbox.stats()
    return stats.awaiting_ack == stats.depth


def test_records_published_live_and_then_pushed_out_of_a_full_outbox_are_not_a_gap(
    start_runtime: Callable[..., AgentRuntime], mqtt_recorder: Any, model_register: Any
) -> None:
    recorder = mqtt_recorder([f"kassa/v1/{AGENT}/#"])
    # Collector ack mode with no collector: every published record stays, awaiting an ack.
    runtime = start_runtime(model_register, ack_mode="collector", outbox={"max_bytes": 4096, "gap_report_interval": 0.5})
    recorder.wait_for(lambda m: len(parsed(m, "state")) >= 1)
    for toggled in range(1, 9):  # each toggle is two events and a state of ~600 bytes: far past 4 KiB
        model_register.change(lambda m: (m.open_shift(), m.close_shift()))
        # Seen live first (the poll may come after a bare all-published check), then nothing left unsent.
        recorder.wait_for(lambda m, n=toggled: len(events(m, "shift_closed")) >= n, timeout=30)
        recorder.wait_for(lambda m: all_published(runtime))
        threading_wait(0.2)
    stats = runtime.outbox.stats()
    assert stats.bytes <= 4096 + 1024  # the bounds did push published records out
    assert len(events(recorder.messages, "shift_closed")) == 8  # all went out live
    assert (stats.dropped_states_total, stats.dropped_events_total, stats.pending_gap) == (0, 0, None)
    threading_wait(1.0)  # a gap report, were there one, is due by now
    assert events(recorder.messages, "outbox_gap") == []
