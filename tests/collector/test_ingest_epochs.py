"""Agent installations in the ingest writer (``collector/ingest/epochs.py``): a new outbox's
sessions are stored above the old installation's, a continuing one is left as it is, and acks
name the agent's own session and epoch; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from collector.ingest.batcher import IngestWriter
from collector.ingest.epochs import REINSTALLED, STRIDE
from collector.metrics import CollectorMetrics
from collector.storage.schema import agent_events, agents, register_state, state_history
from protocol.mqtt.models import StatusPayload, encode
from protocol.mqtt.topics import ack_topic, state_topic, status_topic

sys.path.insert(0, str(Path(__file__).parent))
import ingest_testkit as kit

engine = kit.engine
OLD, NEW = "a" * 32, "b" * 32


def state(session: int, seq: int, epoch: str | None, receipts: int = 3) -> tuple[str, bytes]:
    payload = kit.state_payload("agent-a", "kkt-1", session, seq, kit.register_state(receipts=receipts))
    return state_topic("agent-a", "kkt-1"), encode(payload.model_copy(update={"epoch": epoch}))


def status(session: int, value: str, epoch: str | None) -> tuple[str, bytes]:
    payload = StatusPayload(agent="agent-a", session=session, seq=0, ts=kit.T0, status=value, epoch=epoch)  # type: ignore[arg-type]
    return status_topic("agent-a"), encode(payload)


def acks(downlink: kit.FakeDownlink) -> list[dict[str, Any]]:
    return [json.loads(raw) for topic, raw in downlink.published if topic == ack_topic("agent-a")]


def stored(engine: sa.Engine) -> Any:
    with engine.connect() as conn:
        latest = conn.execute(sa.select(register_state.c.session, register_state.c.state)).one()
        online = conn.execute(sa.select(agents.c.online)).scalar_one()
        history = conn.execute(sa.select(state_history.c.session).order_by(state_history.c.id)).scalars().all()
        reported = conn.execute(sa.select(agent_events).where(agent_events.c.kind == REINSTALLED)).all()
    return latest, online, history, reported


def test_a_new_outbox_is_stored_above_the_old_one_and_reported_once(engine: sa.Engine) -> None:
    downlink, metrics = kit.FakeDownlink(), CollectorMetrics()
    writer = IngestWriter(engine, downlink, metrics=metrics, settings=kit.EVERY_STATE)
    writer.process(kit.batch(status(3, "online", OLD), state(3, 0, OLD, receipts=1), state(3, 1, OLD, receipts=2)))
    # Reinstalled: a fresh outbox numbers from session 1 again (records made before the connect).
    writer.process(kit.batch(status(2, "online", NEW), state(1, 0, NEW, receipts=5), state(2, 0, NEW, receipts=6)))
    latest, online, history, reported = stored(engine)
    assert (latest.session, latest.state["shift"]["receipts"]) == (STRIDE + 2, 6)
    assert online is True
    assert history == [3, 3, STRIDE + 1, STRIDE + 2]  # nothing taken for a duplicate of session 1 or 2
    assert len(reported) == 1 and reported[0].data["previous_session"] == 3 and reported[0].data["first_session"] == 1
    assert metrics.agent_reinstalls._value.get() == 1
    # Acks speak the agent's own numbers and name the installation they are for.
    assert {"v": 1, "session": 2, "seq": 0, "epoch": NEW} in acks(downlink)
    assert {"v": 1, "session": 3, "seq": 1, "epoch": OLD} in acks(downlink)

    # The old installation's late will (its session 3) does not mark the new one offline; the
    # new one's own goodbye does, and a restart of the writer keeps the mapping (it is stored).
    again = IngestWriter(engine, downlink, metrics=metrics, settings=kit.EVERY_STATE)
    again.process(kit.batch(status(3, "offline", OLD), state(2, 1, NEW, receipts=7)))
    latest, online, history, reported = stored(engine)
    assert online is True and latest.state["shift"]["receipts"] == 7 and len(reported) == 1
    again.process(kit.batch(status(2, "offline", NEW)))
    assert stored(engine)[1] is False


def test_an_agent_upgraded_with_its_outbox_keeps_its_numbers(engine: sa.Engine) -> None:
    downlink = kit.FakeDownlink()
    writer = IngestWriter(engine, downlink, settings=kit.EVERY_STATE)
    writer.process(kit.batch(status(4, "online", None), state(4, 0, None)))
    writer.process(kit.batch(status(5, "online", NEW), state(5, 0, NEW, receipts=9)))
    latest, online, history, reported = stored(engine)
    assert latest.session == 5 and online is True and history == [4, 5] and reported == []
    assert acks(downlink) == [{"v": 1, "session": 4, "seq": 0}, {"v": 1, "session": 5, "seq": 0, "epoch": NEW}]


def test_replayed_records_of_two_installations_are_each_stored_in_their_own_range(engine: sa.Engine) -> None:
    writer = IngestWriter(engine, kit.FakeDownlink(), settings=kit.EVERY_STATE)
    writer.process(kit.batch(state(7, 0, OLD)))
    replay = [
        kit.state_payload("agent-a", "kkt-1", 7, 1).model_copy(update={"epoch": OLD}),
        kit.state_payload("agent-a", "kkt-1", 1, 0).model_copy(update={"epoch": NEW}),
    ]
    writer.process(kit.batch(kit.hist_msg("agent-a", replay)))  # type: ignore[arg-type]
    assert stored(engine)[2] == [7, 7, STRIDE + 1]


def test_a_session_beyond_an_installation_s_range_is_dead_lettered(engine: sa.Engine) -> None:
    writer = IngestWriter(engine, kit.FakeDownlink(), settings=kit.EVERY_STATE)
    writer.process(kit.batch(state(7, 0, OLD)))
    result = writer.process(kit.batch(state(1, 0, NEW), state(STRIDE, 0, NEW)))
    assert [(r.reason, "beyond" in r.detail) for r in result.dead_letters] == [("session_out_of_range", True)]
    assert stored(engine)[2] == [7, STRIDE + 1]


def test_a_refused_message_of_a_new_installation_still_counts_for_its_ack(engine: sa.Engine) -> None:
    """A message the storage refuses is dead-lettered and acked so it cannot hold the outbox: the
    ack must name the new installation's own session, not the stored one."""
    downlink = kit.FakeDownlink()
    writer = IngestWriter(engine, downlink, settings=kit.EVERY_STATE)
    writer.process(kit.batch(state(3, 0, OLD)))
    kit.enroll_elsewhere(engine, "agent-b")
    writer.process(kit.batch(kit.state_msg("agent-b", "kkt-2", 1, 0)))  # kkt-2 belongs to the other tenant
    other = kit.state_payload("agent-a", "kkt-2", 1, 0).model_copy(update={"epoch": NEW})
    writer.process(kit.batch((state_topic("agent-a", "kkt-2"), encode(other))))
    assert {"v": 1, "session": 1, "seq": 0, "epoch": NEW} in acks(downlink)
