"""Shared helpers of the ingest tests (loaded by path: pytest runs with --import-mode=importlib).

Databases: SQLite temp files and a fresh PostgreSQL database per test (dropped afterwards). A
PostgreSQL server that is not reachable skips those cases, except under ``CI=true``.
"""

from __future__ import annotations

import itertools
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from collector.ingest.batcher import IngestWriter, WriterSettings
from collector.ingest.consumer import InboundMessage
from collector.ingest.writes import FreshState
from protocol.kkt.state import FnState, OfdState, RegisterState, ShiftState, ShiftStatus, Vendor
from protocol.mqtt import wire
from protocol.mqtt.models import (
    BirthPayload,
    DeviceInfo,
    EventKind,
    EventPayload,
    HistEventRecord,
    HistStateRecord,
    StatePayload,
    StatusPayload,
    encode,
    encode_hist_batch,
)
from protocol.mqtt.topics import birth_topic, event_topic, hist_topic, state_topic, status_topic

sys.path.insert(0, str(Path(__file__).parents[1]))  # importlib mode: tests/dbkit.py
import dbkit

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
# For tests of what is stored per message (dedup, replays, epochs), not of which states the history
# policy keeps (tests/collector/test_history_policy.py): every state becomes a history row.
EVERY_STATE = WriterSettings(history=None)
REGISTER_CLOCK = datetime(2026, 11, 28, 12, 0)  # naive register local time at T0
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@contextmanager
def database_url(backend: str, tmp_dir: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_dir}/ingest-{uuid.uuid4().hex[:8]}.db"
    else:
        with dbkit.fresh_pg_database("kassa_ingest") as url:
            yield url


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A migrated engine on each backend (import this fixture into a test module to use it)."""
    from collector.storage import create_engine_from_url, migrate

    with database_url(request.param, tmp_path) as url:
        eng = create_engine_from_url(url)
        migrate(eng)
        try:
            yield eng
        finally:
            eng.dispose()


def enroll_elsewhere(engine: Any, agent_id: str) -> None:
    """Enroll ``agent_id`` in a second tenant (for cross-tenant refusals)."""
    from collector.storage import repository as repo

    with engine.begin() as conn:
        other = repo.create_tenant(conn, "Лютик")
        store = repo.create_node(conn, other, parent_id=None, kind="store", name="Центр")
        repo.enroll_agent(conn, agent_id, tenant_id=other, node_id=store, enrolled_at=T0)


def register_state(
    serial: str = "0001",
    *,
    clock: datetime = REGISTER_CLOCK,
    unsent: int = 0,
    oldest_unsent_age: timedelta | None = None,
    read_at: datetime = T0,
    receipts: int = 3,
) -> RegisterState:
    first_unsent = clock - oldest_unsent_age if oldest_unsent_age is not None and unsent else None
    return RegisterState(
        vendor=Vendor.SHTRIH,
        protocol="shtrih",
        serial=serial,
        rnm=f"000{serial}",
        register_clock=clock,
        read_at=read_at,
        shift=ShiftState(status=ShiftStatus.OPEN, number=7, receipts=receipts, opened_at=clock - timedelta(hours=2)),
        fn=FnState(serial=f"9999{serial}", phase=3, fiscal=True, valid_until=(clock + timedelta(days=300)).date()),
        ofd=OfdState(unsent_count=unsent, first_unsent_at=first_unsent),
    )


def state_payload(
    agent: str, register: str, session: int, seq: int, state: RegisterState | None = None, *, ts: datetime = T0
) -> StatePayload:
    return StatePayload(
        agent=agent, session=session, seq=seq, ts=ts, register=register, reason="change",
        state=state or register_state(),
    )


def as_ingested(state: RegisterState) -> wire.RegisterState:
    """A state as ingest decodes it: the contract's msgspec mirror."""
    return wire.decode_as(wire.RegisterState, state.model_dump_json().encode())


def state_msg(agent: str, register: str, session: int, seq: int, state: RegisterState | None = None, **kw: Any) -> tuple[str, bytes]:
    return state_topic(agent, register), encode(state_payload(agent, register, session, seq, state, **kw))


def status_msg(agent: str, session: int, status: str) -> tuple[str, bytes]:
    payload = StatusPayload(agent=agent, session=session, seq=0, ts=T0, status=status)  # type: ignore[arg-type]
    return status_topic(agent), encode(payload)


def birth_msg(agent: str, session: int, seq: int, devices: dict[str, RegisterState | None]) -> tuple[str, bytes]:
    payload = BirthPayload(
        agent=agent, session=session, seq=seq, ts=T0, agent_version="test",
        devices=[
            DeviceInfo(register_id=rid, protocol="shtrih", url="sim://", link_up=state is not None, state=state)
            for rid, state in devices.items()
        ],
    )
    return birth_topic(agent), encode(payload)


def event_payload(agent: str, register: str | None, session: int, seq: int, kind: EventKind) -> EventPayload:
    return EventPayload(agent=agent, session=session, seq=seq, ts=T0, register=register, kind=kind, message="t")


def event_msg(agent: str, register: str | None, session: int, seq: int, kind: EventKind) -> tuple[str, bytes]:
    return event_topic(agent, register), encode(event_payload(agent, register, session, seq, kind))


def hist_msg(agent: str, records: list[StatePayload | EventPayload]) -> tuple[str, bytes]:
    items = [
        ("state" if isinstance(p, StatePayload) else "event", encode(p)) for p in records
    ]
    raw = encode_hist_batch(agent, T0, items)  # type: ignore[arg-type]
    assert HistStateRecord and HistEventRecord  # the records round-trip through these models
    return hist_topic(agent), raw


_mids = itertools.count(1)


def inbound(topic: str, payload: bytes, *, at: datetime | None = None, generation: int = 1) -> InboundMessage:
    return InboundMessage(
        topic=topic, payload=payload, mid=next(_mids), qos=1, received_at=at or datetime.now(UTC), generation=generation
    )


def nothing_new_later(engine: sa.Engine, later: datetime, seq: int = 5) -> dict[str, FreshState]:
    """Commits a state of agent-a's kkt-1 polled at ``later`` (T0 + two minutes: the register clock moved
    on with it) that changes nothing a rule reads; returns the fresh states the writer hands over."""
    state = register_state().model_copy(update={"register_clock": REGISTER_CLOCK + (later - T0), "read_at": later})
    result = IngestWriter(engine, FakeDownlink()).process(
        [inbound(*state_msg("agent-a", "kkt-1", 1, seq, state, ts=later), at=later)]
    )
    return result.fresh_states


def batch(*messages: tuple[str, bytes]) -> list[InboundMessage]:
    return [inbound(topic, payload) for topic, payload in messages]


@contextmanager
def running_services(broker: Any, *, web: bool = False) -> Iterator[Callable[..., Any]]:
    """A factory of started ``CollectorService``s on ``broker`` (``make(db_url, **config)``); all
    are stopped on exit. Client ids are ``collector-<n>`` unless given; ``web`` serves the app."""
    from collector.config import CollectorConfig
    from collector.service import CollectorService

    made: list[Any] = []

    def make(db_url: str, **settings: Any) -> Any:
        settings.setdefault("client_id", f"collector-{len(made)}")
        if "company" not in settings and "enforce_enrollment" not in settings:
            from companykit import single_company

            settings["company"] = single_company(db_url)  # agents here report without enrollment
        config = CollectorConfig(broker_url=broker.url, db_url=db_url, evaluator_period=0.5, **settings)
        service = CollectorService(config, serve_web=web)
        service.start()
        made.append(service)
        return service

    try:
        yield make
    finally:
        for service in made:
            service.stop()


@dataclass
class FakeDownlink:
    """Records what the writer acks and publishes, in order (the MQTT consumer's role)."""

    acked: list[InboundMessage] = field(default_factory=list)
    published: list[tuple[str, bytes]] = field(default_factory=list)

    def ack(self, messages: Sequence[InboundMessage]) -> int:
        self.acked.extend(messages)
        return len(messages)

    def publish_acks(self, acks: Sequence[tuple[str, bytes]]) -> int:
        self.published.extend(acks)
        return len(acks)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> bool:
        self.published.append((topic, payload))
        return True


class FastPublisher:
    """Publishes many QoS 1 messages without waiting for each PUBACK (a load generator, not an agent)."""

    def __init__(self, host: str, port: int, client_id: str) -> None:
        import threading

        import paho.mqtt.client as mqtt

        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        connected = threading.Event()
        self.client.on_connect = lambda *args: connected.set()
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        if not connected.wait(10):
            raise RuntimeError("publisher could not connect")
        self.pending: list[Any] = []

    def publish(self, topic: str, payload: bytes) -> None:
        self.pending.append(self.client.publish(topic, payload, qos=1))

    def wait(self, timeout: float = 30.0) -> None:
        for info in self.pending:
            info.wait_for_publish(timeout)
        self.pending.clear()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
