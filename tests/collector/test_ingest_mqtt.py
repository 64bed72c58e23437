"""The collector service against a real Mosquitto: acks after commit, retained status, rebirth on a gap,
dead letters through the live loop, and kill -9 mid-stream without loss or duplicates."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from collector.config import CollectorConfig
from collector.service import CollectorService
from collector.storage import create_engine_from_url
from collector.storage import repository as repo
from collector.storage.schema import state_history
from protocol.mqtt.topics import COLLECTOR_STATUS_TOPIC

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: make the helper next to us importable
import ingest_testkit as kit

sys.path.insert(0, str(Path(__file__).parents[1]))  # tests/companykit.py
from companykit import single_company

pytestmark = pytest.mark.mosquitto


@pytest.fixture(params=kit.BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with kit.database_url(request.param, tmp_path) as url:
        yield url


def count_history(url: str) -> int:
    engine = create_engine_from_url(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(state_history)).scalar_one())
    finally:
        engine.dispose()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def service_factory(mqtt_broker: Any) -> Iterator[Callable[..., CollectorService]]:
    with kit.running_services(mqtt_broker) as make:
        # Every state stored: these tests count history rows against the messages sent.
        yield lambda db_url, **settings: make(db_url, history_sample_minutes=0, **settings)


def test_acks_follow_the_commit_and_status_is_retained(db_url: str, service_factory: Any, mqtt_recorder: Any) -> None:
    recorder = mqtt_recorder(["kassa/v1/+/ack", COLLECTOR_STATUS_TOPIC])
    service = service_factory(db_url)
    recorder.wait_for(lambda ms: any(m.topic == COLLECTOR_STATUS_TOPIC and b'"online"' in m.payload for m in ms))

    seen_at_ack: list[int] = []
    original = service.consumer.publish_acks

    def publish_and_check(acks: Any) -> int:
        assert all(topic.endswith("/ack") for topic, _ in acks)
        seen_at_ack.append(count_history(db_url))  # what the database holds when the acks go out
        return original(acks)

    service.consumer.publish_acks = publish_and_check  # type: ignore[method-assign]
    for seq in range(3):
        recorder.publish(*kit.state_msg("agent-a", "kkt-1", 5, seq))
    messages = recorder.wait_for(lambda ms: any(json.loads(m.payload).get("seq") == 2 for m in ms if m.topic.endswith("/ack")))
    acks = [json.loads(m.payload) for m in messages if m.topic == "kassa/v1/agent-a/ack"]
    assert acks[-1] == {"v": 1, "session": 5, "seq": 2}
    assert seen_at_ack and seen_at_ack[-1] == 3 and all(n >= 1 for n in seen_at_ack)

    service.stop()
    late = mqtt_recorder([COLLECTOR_STATUS_TOPIC], client_id="late-reader")
    retained = late.wait_for(lambda ms: bool(ms))
    assert b'"offline"' in retained[-1].payload and retained[-1].retain


def test_a_batch_of_acks_written_as_raw_packets_arrives_intact(db_url: str, service_factory: Any, mqtt_recorder: Any) -> None:
    """``queue_publishes`` builds the PUBLISH bytes itself: every remaining-length size (1, 2 and 3
    bytes), a non-ASCII topic and an empty payload reach a subscriber unchanged, in order."""
    recorder = mqtt_recorder(["kassa/v1/+/ack"])
    service = service_factory(db_url)
    wait_until(lambda: service.consumer.subscribed.is_set(), what="the collector's subscription")
    sent = [
        ("kassa/v1/agent-1/ack", b'{"v":1,"session":1,"seq":0}'),
        ("kassa/v1/agent-2/ack", b"x" * 200),  # 2-byte remaining length
        ("kassa/v1/агент-3/ack", b"y" * 20_000),  # 3-byte remaining length, UTF-8 topic
        ("kassa/v1/agent-4/ack", b""),
    ]
    assert service.consumer.publish_acks(sent) == 4
    messages = recorder.wait_for(lambda ms: len(ms) >= 4)
    assert [(m.topic, m.payload, m.qos) for m in messages] == [(topic, payload, 0) for topic, payload in sent]


def test_a_seq_gap_makes_the_collector_ask_for_a_rebirth(db_url: str, service_factory: Any, mqtt_recorder: Any) -> None:
    recorder = mqtt_recorder(["kassa/v1/+/cmd"])
    service_factory(db_url, reorder_window=0.3)
    recorder.publish(*kit.state_msg("agent-g", "kkt-1", 2, 0))
    recorder.publish(*kit.state_msg("agent-g", "kkt-1", 2, 2))  # seq 1 never arrives
    messages = recorder.wait_for(lambda ms: bool(ms), timeout=5)
    command = json.loads(messages[0].payload)
    assert messages[0].topic == "kassa/v1/agent-g/cmd" and command["cmd"] == "rebirth"


def test_garbage_on_the_wire_is_dead_lettered_and_the_loop_keeps_going(
    db_url: str, service_factory: Any, mqtt_recorder: Any
) -> None:
    recorder = mqtt_recorder([])
    service_factory(db_url)
    recorder.publish("kassa/v1/agent-x/state/kkt-1", b"\xff\xfe not json")
    recorder.publish("kassa/v1/agent-x/bogus", b"{}")  # no uplink filter matches: never delivered
    recorder.publish(*kit.state_msg("agent-x", "kkt-1", 1, 0))
    wait_until(lambda: count_history(db_url) == 1, what="the valid state")
    engine = create_engine_from_url(db_url)
    try:
        with engine.connect() as conn:
            assert [d.reason for d in repo.list_dead_letters(conn)] == ["invalid_json"]
    finally:
        engine.dispose()


# --- kill -9 mid-stream -------------------------------------------------------------------------


def start_collector(broker: Any, db_url: str, workdir: Path) -> subprocess.Popen[bytes]:
    log = (workdir / "collector.log").open("ab")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KASSA_COLLECTOR_")}
    env["KASSA_COLLECTOR_HISTORY_SAMPLE_MINUTES"] = "0"  # every state stored: the test counts them
    process = subprocess.Popen(
        [
            sys.executable, "-m", "collector", "run", "--broker", broker.url, "--db", db_url, "--no-web",
            "--client-id", "collector-crashy", "--batch-rows", "50", "--log-level", "WARNING",
            "--company", single_company(db_url),
        ],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    log.close()
    return process


@pytest.mark.slow
def test_kill_9_mid_stream_loses_nothing_and_duplicates_nothing(
    db_url: str, mqtt_broker: Any, mqtt_recorder: Any, tmp_path: Path
) -> None:
    status = mqtt_recorder([COLLECTOR_STATUS_TOPIC])
    collector = start_collector(mqtt_broker, db_url, tmp_path)
    try:
        status.wait_for(lambda ms: any(b'"online"' in m.payload for m in ms), timeout=20)
        publisher = kit.FastPublisher(mqtt_broker.host, mqtt_broker.port, "load")
        expected = set()
        total = 3000
        for n in range(total):
            agent, seq = f"agent-{n % 5}", n // 5
            expected.add((agent, 1, seq))
            publisher.publish(*kit.state_msg(agent, f"kkt-{n % 5}", 1, seq, kit.register_state(receipts=seq)))
            if n == total // 3:
                wait_until(lambda: count_history(db_url) > 0, timeout=20, what="the first commits")
                collector.send_signal(signal.SIGKILL)  # mid-stream: some committed, some in flight
                collector.wait(10)
        publisher.wait()
        publisher.close()
        assert 0 < count_history(db_url) < total
        collector = start_collector(mqtt_broker, db_url, tmp_path)
        wait_until(lambda: count_history(db_url) >= total, timeout=60, what="every message committed")
        time.sleep(0.5)  # anything still redelivered must be deduplicated, not added
        engine = create_engine_from_url(db_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.select(state_history.c.agent_id, state_history.c.session, state_history.c.seq)).all()
        finally:
            engine.dispose()
        assert len(rows) == total
        assert {tuple(r) for r in rows} == expected
    finally:
        collector.kill()
        collector.wait(10)


class RecordingDispatcher:
    """Stands in for ``NotificationDispatcher``: same ``submit``/``run`` surface, keeps the notices."""

    def __init__(self) -> None:
        self.notices: list[Any] = []
        self.loop_thread: str | None = None
        self.stopped = False

    def submit(self, notice: Any, now: Any) -> None:
        import threading

        self.loop_thread = threading.current_thread().name
        self.notices.append((notice, now))

    async def run(self, stop: Any) -> None:
        await stop.wait()
        self.stopped = True


def test_changed_alerts_reach_the_notification_dispatcher(db_url: str, mqtt_recorder: Any, mqtt_broker: Any) -> None:
    from datetime import timedelta

    dispatcher = RecordingDispatcher()
    config = CollectorConfig(
        broker_url=mqtt_broker.url, db_url=db_url, client_id="collector-notify", company=single_company(db_url)
    )
    service = CollectorService(config, serve_web=False, dispatcher=dispatcher)  # type: ignore[arg-type]
    service.start()
    try:
        recorder = mqtt_recorder([])
        now = kit.T0.__class__.now(kit.T0.tzinfo)
        state = kit.register_state(unsent=5, oldest_unsent_age=timedelta(days=21), read_at=now)
        recorder.publish(*kit.state_msg("agent-n", "kkt-1", 1, 0, state))
        wait_until(lambda: bool(dispatcher.notices), what="a notice")
    finally:
        service.stop()
    notice = dispatcher.notices[0][0]
    assert (notice.register_id, notice.rule, notice.severity, notice.status) == ("kkt-1", "ofd_backlog", "critical", "firing")
    assert dispatcher.loop_thread == "notifier" and dispatcher.stopped
