"""The ingest writer without MQTT: validation, dead letters, dedup, latest state, acks and rebirths,
on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from collector.ingest.batcher import IngestWriter, WriterSettings
from collector.storage import repository as repo
from collector.storage.schema import agent_events, agents, events, register_state, registers, state_history
from protocol.mqtt.models import MAX_PAYLOAD_BYTES, EventKind
from protocol.mqtt.topics import ack_topic, cmd_topic, state_topic

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: make the helper next to us importable
import ingest_testkit as kit

engine = kit.engine  # the fixture: a migrated engine on SQLite and on PostgreSQL





@pytest.fixture
def downlink() -> kit.FakeDownlink:
    return kit.FakeDownlink()


def make_writer(engine: sa.Engine, downlink: kit.FakeDownlink, **settings: object) -> IngestWriter:
    settings.setdefault("history", None)  # every state stored: these tests count what each message left
    return IngestWriter(engine, downlink, settings=WriterSettings(**settings))  # type: ignore[arg-type]


def count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def dead_reasons(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(row.reason for row in repo.list_dead_letters(conn))


# --- invalid input ---------------------------------------------------------------------------------


def test_a_state_with_bad_fields_is_dead_lettered_naming_every_bad_field(engine, downlink) -> None:
    """Ingest decodes with the msgspec mirror, which stops at the first bad field: the dead letter
    still names each one, as the pydantic models word it, and the message is kept as received."""
    writer = make_writer(engine, downlink)
    topic, good = kit.state_msg("agent-a", "kkt-1", 1, 1)
    bad = json.loads(good)
    bad["state"]["fn"]["valid_until"] = "not a date"
    bad["state"]["shift"]["number"] = "many"
    raw = json.dumps(bad).encode()
    writer.process(kit.batch((topic, raw)))

    with engine.connect() as conn:
        [letter] = repo.list_dead_letters(conn)
    assert letter.reason == "invalid_payload" and letter.raw == raw
    assert "state.fn.valid_until" in letter.detail and "state.shift.number" in letter.detail, letter.detail
    assert count(engine, state_history) == 0


def test_invalid_messages_are_dead_lettered_with_reason_and_the_rest_is_stored(engine, downlink) -> None:
    writer = make_writer(engine, downlink)
    good_topic, good = kit.state_msg("agent-a", "kkt-1", 1, 1)
    wrong_version = json.loads(good)
    wrong_version["v"] = 99
    spoofed = json.loads(good)
    spoofed["agent"] = "agent-b"
    oversized = b'{"v":1,"pad":"' + b"x" * MAX_PAYLOAD_BYTES + b'"}'
    messages = kit.batch(
        (state_topic("agent-a", "kkt-1"), b"{not json"),
        (state_topic("agent-a", "kkt-1"), json.dumps(wrong_version).encode()),
        (state_topic("agent-a", "kkt-1"), json.dumps(spoofed).encode()),
        ("other/app/topic", good),
        (state_topic("agent-a", "kkt-1"), oversized),
        ("kassa/v1/agent-a/cmd", b'{"v":1,"id":"x","cmd":"rebirth"}'),
        (good_topic, good),
    )
    result = writer.process(messages)

    assert dead_reasons(engine) == sorted(
        ["invalid_json", "unsupported_version", "agent_mismatch", "bad_topic", "payload_too_large", "bad_topic"]
    )
    with engine.connect() as conn:
        raws = {row.raw for row in repo.list_dead_letters(conn)}
    assert b"{not json" in raws  # the exact bytes are kept for inspection
    assert count(engine, state_history) == 1
    # Everything was handled (stored or dead-lettered), so everything is acked to the broker.
    assert {m.mid for m in downlink.acked} == {m.mid for m in messages}
    assert len(result.dead_letters) == 6

    # The writer keeps going: the next batch is stored normally.
    writer.process(kit.batch(kit.state_msg("agent-a", "kkt-1", 1, 2)))
    assert count(engine, state_history) == 2


def test_enforced_enrollment_dead_letters_unknown_and_revoked_agents(engine, downlink) -> None:
    writer = make_writer(engine, downlink, enforce_enrollment=True)
    writer.process(kit.batch(kit.state_msg("stranger", "kkt-9", 1, 1)))
    assert dead_reasons(engine) == ["unknown_agent"]
    assert count(engine, registers) == 0

    with engine.begin() as conn:
        tenant = repo.create_tenant(conn, "Ромашка")
        store = repo.create_node(conn, tenant, parent_id=None, kind="store", name="Тверская 1")
        repo.enroll_agent(conn, "stranger", tenant_id=tenant, node_id=store, enrolled_at=kit.T0)
    writer.process(kit.batch(kit.state_msg("stranger", "kkt-9", 1, 2)))
    with engine.connect() as conn:
        row = conn.execute(sa.select(registers.c.node_id).where(registers.c.register_id == "kkt-9")).one()
        assert row.node_id == store
        repo.revoke_agent(conn, "stranger")
        conn.commit()
    fresh = make_writer(engine, downlink, enforce_enrollment=True)  # a new process: nothing cached
    fresh.process(kit.batch(kit.state_msg("stranger", "kkt-9", 1, 3)))
    assert dead_reasons(engine) == ["agent_revoked", "unknown_agent"]


def test_unknown_agents_are_auto_registered_into_the_unassigned_node(engine, downlink) -> None:
    writer = make_writer(engine, downlink, default_tenant="Без договора", unassigned_node="Нераспределённые")
    writer.process(kit.batch(kit.state_msg("agent-a", "kkt-1", 1, 1), kit.state_msg("agent-b", "kkt-2", 1, 1)))
    with engine.connect() as conn:
        nodes = {row.node_id for row in conn.execute(sa.select(agents.c.node_id))}
    assert len(nodes) == 1 and count(engine, registers) == 2


# --- dedup and ordering ------------------------------------------------------------------------------


def test_the_same_message_delivered_twice_is_stored_once(engine, downlink) -> None:
    writer = make_writer(engine, downlink)
    message = kit.state_msg("agent-a", "kkt-1", 1, 1)
    first = writer.process(kit.batch(message, message))  # duplicate inside one batch
    second = writer.process(kit.batch(message))  # and redelivered later (broker after a crash)
    assert count(engine, state_history) == 1
    assert first.duplicates == 1 and second.duplicates == 1
    assert len(downlink.acked) == 3


def test_replayed_history_older_than_live_state_does_not_overwrite_it(engine, downlink) -> None:
    writer = make_writer(engine, downlink)
    old = kit.register_state(receipts=1)
    new = kit.register_state(receipts=9)
    writer.process(kit.batch(kit.state_msg("agent-a", "kkt-1", 2, 5, new)))
    writer.process(
        kit.batch(kit.hist_msg("agent-a", [kit.state_payload("agent-a", "kkt-1", 1, 40, old)]))
    )
    with engine.connect() as conn:
        stored = conn.execute(sa.select(register_state.c.state, register_state.c.session)).one()
    assert stored.session == 2 and stored.state["shift"]["receipts"] == 9
    assert count(engine, state_history) == 2  # the replayed record is history all the same
    # hist acks the replayed session's top seq (coalesced outbox rows leave gaps by design)
    assert (ack_topic("agent-a"), b'{"v":1,"session":1,"seq":40}') in downlink.published


def test_a_death_of_an_older_session_is_ignored(engine, downlink) -> None:
    writer = make_writer(engine, downlink)
    writer.process(kit.batch(kit.status_msg("agent-a", 3, "online")))
    writer.process(kit.batch(kit.status_msg("agent-a", 2, "offline")))  # a delayed LWT of session 2
    with engine.connect() as conn:
        agent = repo.get_agent(conn, "agent-a")
    assert agent is not None and agent.online and agent.status_session == 3
    writer.process(kit.batch(kit.status_msg("agent-a", 3, "offline")))
    with engine.connect() as conn:
        agent = repo.get_agent(conn, "agent-a")
    assert agent is not None and not agent.online


def test_birth_restores_the_full_view_and_events_set_the_link(engine, downlink) -> None:
    writer = make_writer(engine, downlink)
    writer.process(kit.batch(kit.birth_msg("agent-a", 1, 0, {"kkt-1": kit.register_state("1"), "kkt-2": None})))
    with engine.connect() as conn:
        rows = {r.register_id for r in conn.execute(sa.select(registers.c.register_id))}
        latest = conn.execute(sa.select(register_state.c.register_id, register_state.c.link_up)).all()
    assert rows == {"kkt-1"}  # kkt-2 was never read: no register for a placeholder
    assert [(r.register_id, r.link_up) for r in latest] == [("kkt-1", True)]

    writer.process(kit.batch(kit.event_msg("agent-a", "kkt-1", 1, 1, EventKind.LINK_LOST)))
    with engine.connect() as conn:
        assert conn.execute(sa.select(register_state.c.link_up)).scalar_one() is False
    assert count(engine, events) == 1


def agent_event_rows(engine: sa.Engine) -> list[tuple[str, int, int, str]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(agent_events).order_by(agent_events.c.session, agent_events.c.seq))
        return [(r.agent_id, r.session, r.seq, r.kind) for r in rows]


def test_agent_level_events_live_and_replayed_land_in_their_own_table(engine, downlink) -> None:
    writer = make_writer(engine, downlink)
    writer.process(kit.batch(kit.birth_msg("agent-a", 2, 0, {}), kit.event_msg("agent-a", None, 2, 1, EventKind.OUTBOX_GAP)))
    assert agent_event_rows(engine) == [("agent-a", 2, 1, "outbox_gap")]
    assert marks(engine, "agent-a") == {2: 1}  # committed, so the agent may forget it
    # A replayed batch mixing a register's state and an agent-level event: both kept, the ack covers both.
    replay = kit.hist_msg("agent-a", [kit.state_payload("agent-a", "kkt-1", 1, 7),
                                      kit.event_payload("agent-a", None, 1, 8, EventKind.COMMAND_ERROR)])
    writer.process(kit.batch(replay))
    writer.process(kit.batch(replay))  # replayed twice: stored once
    assert agent_event_rows(engine) == [("agent-a", 1, 8, "command_error"), ("agent-a", 2, 1, "outbox_gap")]
    assert count(engine, state_history) == 1
    assert marks(engine, "agent-a") == {1: 8, 2: 1}
    assert dead_reasons(engine) == []


def marks(engine: sa.Engine, agent: str) -> dict[int, int]:
    with engine.connect() as conn:
        return repo.get_ingest_marks(conn, agent)


def test_a_register_owned_by_another_tenant_is_refused_without_losing_the_batch(engine, downlink) -> None:
    writer = make_writer(engine, downlink)
    writer.process(kit.batch(kit.state_msg("agent-a", "kkt-1", 1, 1)))
    kit.enroll_elsewhere(engine, "agent-b")
    writer.process(kit.batch(kit.state_msg("agent-b", "kkt-1", 1, 1), kit.state_msg("agent-a", "kkt-1", 1, 2)))
    assert dead_reasons(engine) == ["register_owned_elsewhere"]
    assert count(engine, state_history) == 2


# --- acks and gaps ----------------------------------------------------------------------------------


def acks(downlink: kit.FakeDownlink, agent: str) -> list[tuple[int, int]]:
    out = []
    for topic, payload in downlink.published:
        if topic == ack_topic(agent):
            data = json.loads(payload)
            out.append((data["session"], data["seq"]))
    return out


def test_acks_are_published_after_commit_and_cover_only_the_contiguous_prefix(engine, downlink) -> None:
    clock = [100.0]
    writer = make_writer(engine, downlink, reorder_window=2.0)
    writer.tracker._clock = lambda: clock[0]

    def committed_when_acked() -> int:
        return count(engine, state_history)

    writer.process(kit.batch(kit.birth_msg("agent-a", 7, 0, {}), kit.state_msg("agent-a", "kkt-1", 7, 1)))
    assert acks(downlink, "agent-a") == [(7, 1)]
    assert committed_when_acked() == 1
    with engine.connect() as conn:
        assert repo.get_ingest_marks(conn, "agent-a") == {7: 1}

    writer.process(kit.batch(kit.state_msg("agent-a", "kkt-1", 7, 3)))  # seq 2 missing
    assert acks(downlink, "agent-a") == [(7, 1)]
    writer._ask_rebirths()
    assert not [t for t, _ in downlink.published if t == cmd_topic("agent-a")]  # inside the window

    clock[0] += 2.5
    writer._ask_rebirths()
    commands = [json.loads(p) for t, p in downlink.published if t == cmd_topic("agent-a")]
    assert [c["cmd"] for c in commands] == ["rebirth"]
    writer._ask_rebirths()
    assert len([t for t, _ in downlink.published if t == cmd_topic("agent-a")]) == 1  # once per gap

    writer.process(kit.batch(kit.state_msg("agent-a", "kkt-1", 7, 2)))  # the late one arrives
    assert acks(downlink, "agent-a")[-1] == (7, 3)


def test_a_restarted_writer_continues_from_the_durable_mark(engine, downlink) -> None:
    make_writer(engine, downlink).process(kit.batch(kit.state_msg("agent-a", "kkt-1", 4, 0)))
    restarted = make_writer(engine, downlink)
    restarted.process(kit.batch(kit.state_msg("agent-a", "kkt-1", 4, 1)))
    assert acks(downlink, "agent-a") == [(4, 0), (4, 1)]
    assert restarted.tracker.open_gaps() == {}


def selective_acks(downlink: kit.FakeDownlink, agent: str) -> list[tuple[int, list[list[int]]]]:
    acked = [json.loads(payload) for topic, payload in downlink.published if topic == ack_topic(agent)]
    assert all("seq" not in data for data in acked), "a collector sharing the stream vouched for a prefix"
    return [(data["session"], data["ranges"]) for data in acked]


def test_a_shared_subscription_acks_exactly_what_it_committed_and_never_asks_for_rebirths(engine, downlink) -> None:
    """Another collector holds seqs 0–4 and 6 (or the broker lost them): acking «up to 7» would
    let the agent delete them. Each collector acks its own seqs, live and replayed alike."""
    writer = make_writer(engine, downlink, contiguous_acks=False, reorder_window=0.001)
    writer.process(kit.batch(kit.state_msg("agent-a", "kkt-1", 1, 5), kit.state_msg("agent-a", "kkt-1", 1, 7)))
    assert selective_acks(downlink, "agent-a") == [(1, [[5, 5], [7, 7]])]
    replay = [kit.state_payload("agent-a", "kkt-1", 1, seq) for seq in (8, 9, 10, 12)]
    writer.process(kit.batch(kit.hist_msg("agent-a", replay)))
    assert selective_acks(downlink, "agent-a")[-1] == (1, [[8, 10], [12, 12]])
    writer._ask_rebirths()
    assert not [t for t, _ in downlink.published if t == cmd_topic("agent-a")]


def test_oldest_unsent_document_columns_come_from_the_state(engine, downlink) -> None:
    writer = make_writer(engine, downlink)
    state = kit.register_state(unsent=40, oldest_unsent_age=timedelta(days=20))
    writer.process(kit.batch(kit.state_msg("agent-a", "kkt-1", 1, 1, state)))
    with engine.connect() as conn:
        row = conn.execute(sa.select(register_state.c.unsent_count, register_state.c.oldest_unsent_at)).one()
    assert row.unsent_count == 40
    assert row.oldest_unsent_at == kit.REGISTER_CLOCK - timedelta(days=20)


def test_events_for_a_register_of_another_tenant_are_refused(engine, downlink) -> None:
    writer = make_writer(engine, downlink)
    writer.process(kit.batch(kit.state_msg("agent-a", "kkt-1", 1, 1)))
    kit.enroll_elsewhere(engine, "agent-b")
    writer.process(kit.batch(kit.event_msg("agent-b", "kkt-1", 1, 1, EventKind.LINK_LOST)))
    assert dead_reasons(engine) == ["register_owned_elsewhere"]
    assert count(engine, events) == 0


def test_a_bug_while_storing_one_message_dead_letters_only_that_message(engine, downlink, monkeypatch) -> None:
    import collector.ingest.batcher as batcher

    real = batcher.write_messages

    def flaky(conn, items, *rest):
        if any(item.topic.register_id == "kkt-bad" for item in items):
            raise RuntimeError("simulated bug")
        return real(conn, items, *rest)

    monkeypatch.setattr(batcher, "write_messages", flaky)
    writer = make_writer(engine, downlink)
    messages = kit.batch(kit.state_msg("agent-a", "kkt-1", 1, 0), kit.state_msg("agent-a", "kkt-bad", 1, 1))
    writer.process(messages)
    assert dead_reasons(engine) == ["internal_error"]
    assert count(engine, state_history) == 1
    assert {m.mid for m in downlink.acked} == {m.mid for m in messages}
    assert acks(downlink, "agent-a")[-1] == (1, 1)  # the dead-lettered record does not stall the mark


def test_a_hist_batch_spanning_sessions_is_acked_per_session(engine, downlink) -> None:
    writer = make_writer(engine, downlink)
    records = [kit.state_payload("agent-a", "kkt-1", 3, 7), kit.state_payload("agent-a", "kkt-1", 4, 2)]
    writer.process(kit.batch(kit.hist_msg("agent-a", records)))
    assert sorted(acks(downlink, "agent-a")) == [(3, 7), (4, 2)]
    with engine.connect() as conn:
        assert repo.get_ingest_marks(conn, "agent-a") == {3: 7, 4: 2}


def test_while_the_database_is_away_nothing_is_acked_and_the_batch_is_retried(engine, downlink, monkeypatch) -> None:
    import time

    import collector.ingest.batcher as batcher

    real = batcher.begin_write
    failures = []

    def unavailable_twice(eng):
        if len(failures) < 2:
            failures.append(len(downlink.acked))
            raise sa.exc.OperationalError("BEGIN", {}, Exception("connection refused"))
        return real(eng)

    monkeypatch.setattr(batcher, "begin_write", unavailable_twice)
    monkeypatch.setattr(batcher, "DB_RETRY_DELAY", 0.05)
    writer = make_writer(engine, downlink)
    writer.start()
    try:
        writer.submit(kit.inbound(*kit.state_msg("agent-a", "kkt-1", 1, 0)))
        deadline = time.monotonic() + 5
        while not downlink.acked and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        writer.stop()
    assert failures == [0, 0]  # no ack while the writes failed
    assert len(downlink.acked) == 1 and count(engine, state_history) == 1
