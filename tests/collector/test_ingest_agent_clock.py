"""Records on the collector's clock whatever the agent's says, and the agent's measured clock error
(the ingest writer without MQTT, SQLite and PostgreSQL)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from collector.ingest.agent_clock import WINDOW
from collector.ingest.batcher import IngestWriter
from collector.storage.schema import agents, register_state, state_history
from protocol.mqtt.models import encode, encode_hist_batch
from protocol.mqtt.topics import hist_topic

sys.path.insert(0, str(Path(__file__).parent))
import ingest_testkit as kit

engine = kit.engine
BEHIND = timedelta(days=200)


def test_a_replayed_record_keeps_its_time_in_the_outbox_and_a_live_one_its_arrival(engine: sa.Engine) -> None:
    writer = IngestWriter(engine, kit.FakeDownlink(), settings=kit.EVERY_STATE)
    arrival = datetime.now(UTC).replace(microsecond=0)
    agent_now = arrival - BEHIND  # the agent's computer is 200 days behind
    replayed = kit.state_payload("agent-a", "kkt-1", 1, 0, ts=agent_now - timedelta(hours=3))
    live = kit.state_msg("agent-a", "kkt-1", 2, 0, ts=agent_now)
    hist = encode_hist_batch("agent-a", agent_now, [("state", encode(replayed))])  # sent "now", agent time
    writer.process([kit.inbound(hist_topic("agent-a"), hist, at=arrival), kit.inbound(*live, at=arrival)])
    with engine.connect() as conn:
        stored = dict(conn.execute(sa.select(state_history.c.session, state_history.c.ts)).all())
        latest = conn.execute(sa.select(register_state.c.agent_ts)).scalar_one()
        offset = conn.execute(sa.select(agents.c.clock_offset)).scalar_one()
    assert stored == {1: arrival - timedelta(hours=3), 2: arrival}
    assert latest == arrival
    assert offset == -BEHIND.total_seconds()


def test_the_clock_error_is_rewritten_only_when_it_moves(engine: sa.Engine) -> None:
    writer = IngestWriter(engine, kit.FakeDownlink(), settings=kit.EVERY_STATE)
    arrival = datetime.now(UTC)

    def send(seq: int, error: timedelta) -> set[str]:
        message = kit.state_msg("agent-a", "kkt-1", 1, seq, ts=arrival + error)
        return writer.process([kit.inbound(*message, at=arrival)]).status_agents

    assert send(0, timedelta(minutes=-10)) == {"agent-a"}  # its registers are re-evaluated
    assert send(1, timedelta(minutes=-10, seconds=1)) == set()  # network jitter: nothing rewritten
    assert send(2, timedelta(minutes=-7)) == {"agent-a"}
    with engine.connect() as conn:
        assert conn.execute(sa.select(agents.c.clock_offset)).scalar_one() == -420.0


def test_a_growing_queue_is_not_a_clock_going_back_but_a_clock_set_back_is_stored_after_the_window(
    engine: sa.Engine,
) -> None:
    """A collector working through a queue reads every clock as behind by the queue's age; only a
    lower reading that lasts ``WINDOW`` (no reading came back up) is stored."""
    writer = IngestWriter(engine, kit.FakeDownlink(), settings=kit.EVERY_STATE)
    start = datetime.now(UTC).replace(microsecond=0)

    def send(seq: int, after: timedelta, error: timedelta) -> set[str]:
        arrival = start + after
        message = kit.state_msg("agent-a", "kkt-1", 1, seq, ts=arrival + error)
        return writer.process([kit.inbound(*message, at=arrival)]).status_agents

    def stored() -> float:
        with engine.connect() as conn:
            return float(conn.execute(sa.select(agents.c.clock_offset)).scalar_one())

    send(0, timedelta(0), timedelta(0))  # a clock right on time
    assert stored() == 0.0
    for seq in range(1, 30):  # the queue grows by 3 s a second for 29 s, then drains
        assert send(seq, timedelta(seconds=seq), timedelta(seconds=-3 * seq)) == set()
    assert send(30, timedelta(seconds=31), timedelta(0)) == set()
    assert stored() == 0.0
    # The agent's clock is set back ten minutes: every reading says so for a whole window.
    behind = timedelta(minutes=-10)
    assert send(31, timedelta(seconds=40), behind) == set()
    assert send(32, timedelta(seconds=40) + WINDOW / 2, behind) == set()
    assert send(33, timedelta(seconds=40) + WINDOW, behind - timedelta(seconds=30)) == {"agent-a"}
    assert stored() == behind.total_seconds()  # the largest reading of the window


def test_another_collector_process_starts_from_the_stored_error(engine: sa.Engine) -> None:
    arrival = datetime.now(UTC)
    error = timedelta(minutes=-10)
    first, second = (IngestWriter(engine, kit.FakeDownlink(), settings=kit.EVERY_STATE) for _ in range(2))
    message = kit.state_msg("agent-a", "kkt-1", 1, 0, ts=arrival + error)
    assert first.process([kit.inbound(*message, at=arrival)]).status_agents == {"agent-a"}
    message = kit.state_msg("agent-a", "kkt-1", 1, 1, ts=arrival + error + timedelta(seconds=1))
    assert second.process([kit.inbound(*message, at=arrival)]).status_agents == set()  # no rewrite, no re-evaluation
