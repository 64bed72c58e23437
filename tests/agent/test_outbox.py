"""Outbox: group commit, sessions, delivery bookkeeping, replay, bounds with counted drops, kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.outbox import GapInfo, Outbox, OutboxError

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def outbox(tmp_path: Path, clock: Clock) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "outbox.db", commit_interval=0.01, clock=clock)
    yield box
    box.close()


def put(box: Outbox, session: int, seq: int, *, kind: str = "state", register: str | None = "r1",
        at: datetime = T0, size: int = 10, durable: bool = False) -> None:
    payload = f"{kind}:{session}:{seq}:".encode().ljust(size, b".")
    box.append(kind, register, session, seq, f"kassa/v1/a1/{kind}/{register}", payload, at, durable=durable)  # type: ignore[arg-type]


def keys(box: Outbox, **kwargs: object) -> list[tuple[int, int]]:
    return [(r.session, r.seq) for r in box.backlog(1000, **kwargs)]  # type: ignore[arg-type]


def test_records_come_back_oldest_first_with_every_field(outbox: Outbox) -> None:
    put(outbox, 2, 1, kind="event", register=None, at=T0 + timedelta(seconds=5))
    put(outbox, 1, 7)
    put(outbox, 2, 0)
    rows = outbox.backlog(10)
    assert [(r.session, r.seq) for r in rows] == [(1, 7), (2, 0), (2, 1)]
    event = rows[2]
    assert (event.kind, event.register_id, event.topic) == ("event", None, "kassa/v1/a1/event/None")
    assert event.payload.startswith(b"event:2:1:") and event.created_at == T0 + timedelta(seconds=5)
    assert not event.published
    assert outbox.depth() == 3 and outbox.oldest() == rows[0]
    assert outbox.backlog(2) == rows[:2]
    assert keys(outbox, after=(1, 7)) == [(2, 0), (2, 1)]


def test_group_commit_makes_appends_visible_without_flush(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", commit_interval=0.01)
    put(box, 1, 0)
    put(box, 1, 1, durable=True)  # returns only once committed, together with the first
    reader = Outbox(tmp_path / "o.db")  # a second connection sees only committed data
    try:
        assert reader.depth() == 2
    finally:
        reader.close()
        box.close()


def test_durable_and_flushed_records_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path, commit_interval=10.0) as box:  # the interval never elapses in this test
        put(box, 1, 0)
        box.flush()
        put(box, 1, 1)  # committed by close()
    with Outbox(path) as box:
        assert keys(box) == [(1, 0), (1, 1)]


def test_sessions_increase_across_restarts_and_seq_restarts_per_session(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path) as box:
        assert box.current_session == 0
        assert box.next_seq() == 0  # no session yet: one is started
        assert box.current_session == 1
        assert box.allocate() == (1, 1)
        assert box.next_session() == 2
        assert box.allocate() == (2, 0)
    with Outbox(path) as box:
        assert box.allocate() == (3, 0)  # a restart is a new session, never a reused seq
        assert box.next_session() == 4
        assert box.stats().session == 4


def test_ack_deletes_up_to_the_mark_of_that_session_only(outbox: Outbox) -> None:
    for seq in range(5):
        put(outbox, 1, seq)
        put(outbox, 2, seq)
    outbox.ack(1, 2)
    assert keys(outbox) == [(1, 3), (1, 4)] + [(2, s) for s in range(5)]
    outbox.ack(2, 10)
    assert keys(outbox) == [(1, 3), (1, 4)]


def test_selective_acks_delete_exactly_their_ranges_and_the_rest_is_unacked_after_the_grace(
    outbox: Outbox, clock: Clock
) -> None:
    live = outbox.next_session()
    for seq in range(8):
        put(outbox, live, seq, at=T0)
    outbox.mark_published_many((live, seq) for seq in range(7))  # seq 7 not published yet
    clock.now = T0 + timedelta(seconds=31)
    assert outbox.unacked(live, timedelta(seconds=30), 10) == []  # prefix acks: the collector asks for rebirths
    outbox.ack_ranges(live, [(0, 1), (4, 5)])
    assert keys(outbox) == [(live, 2), (live, 3), (live, 6), (live, 7)]
    assert [r.seq for r in outbox.unacked(live, timedelta(seconds=30), 10)] == [2, 3, 6]
    assert outbox.unacked(live, timedelta(seconds=40), 10) == []  # within the grace
    outbox.ack_ranges(live, [(3, 3)])
    assert [r.seq for r in outbox.unacked(live, timedelta(seconds=30), 2)] == [2, 6]


def test_collector_mode_keeps_published_until_ack_and_replays_once_per_connection(outbox: Outbox, clock: Clock) -> None:
    outbox.next_session()  # session 1: the first connection
    for seq in range(3):
        put(outbox, 1, seq)
    outbox.mark_published(1, 0)
    clock.now = T0 + timedelta(minutes=1)  # past the live grace
    assert keys(outbox, exclude_session=1) == [(1, 1), (1, 2)]  # never published ones count
    assert outbox.stats().awaiting_ack == 1
    live = outbox.next_session()  # reconnect: session 2
    rows = outbox.backlog(10, exclude_session=live)
    assert [(r.session, r.seq) for r in rows] == [(1, 0), (1, 1), (1, 2)]
    outbox.mark_published_many((r.session, r.seq) for r in rows)  # hist batch PUBACKed
    assert keys(outbox, exclude_session=live) == []  # not re-sent on this connection
    assert outbox.depth() == 3  # but kept until the collector acks
    outbox.next_session()
    assert len(keys(outbox, exclude_session=3)) == 3  # next connection: unacked ones go again
    outbox.ack(1, 2)
    assert outbox.depth() == 0


def test_live_session_records_wait_out_the_grace_before_replay(outbox: Outbox, clock: Clock) -> None:
    live = outbox.next_session()
    put(outbox, live, 0, at=T0)
    put(outbox, live, 1, at=T0 + timedelta(seconds=8))
    clock.now = T0 + timedelta(seconds=12)
    assert keys(outbox, exclude_session=live) == [(live, 0)]  # seq 1 may still be in flight live


def test_puback_mode_deletes_on_publish_even_before_the_commit(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", ack_mode="puback", commit_interval=10.0) as box:
        box.next_session()
        put(box, 1, 0)
        put(box, 1, 1)
        box.mark_published(1, 0)  # PUBACK raced ahead of the group commit
        assert keys(box) == [(1, 1)]


def test_switching_to_puback_treats_published_records_as_delivered(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path) as box:
        box.next_session()
        put(box, 1, 0)
        put(box, 1, 1)
        box.mark_published(1, 0)
        assert box.depth() == 2
        box.set_ack_mode("puback")
        assert box.ack_mode == "puback" and keys(box) == [(1, 1)]
        box.set_ack_mode("collector")
        put(box, 1, 2)
        box.mark_published(1, 2)
        assert keys(box) == [(1, 1), (1, 2)]
    with Outbox(path, ack_mode="puback") as box:  # a restart in puback mode does the same
        assert keys(box) == [(1, 1)]


def test_duplicate_session_seq_is_stored_once(outbox: Outbox) -> None:
    put(outbox, 1, 0, size=10)
    put(outbox, 1, 0, size=20)
    rows = outbox.backlog(10)
    assert len(rows) == 1 and len(rows[0].payload) == 10


def test_bad_arguments_are_refused_up_front(outbox: Outbox) -> None:
    with pytest.raises(ValueError):
        put(outbox, 1, 0, kind="birth")
    with pytest.raises(ValueError):
        put(outbox, 0, 0)
    with pytest.raises(ValueError):
        put(outbox, 1, 0, at=datetime(2026, 1, 1))  # naive
    with pytest.raises(ValueError):
        outbox.set_ack_mode("never")  # type: ignore[arg-type]
    assert outbox.depth() == 0


def test_over_max_bytes_states_coalesce_first(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", max_bytes=1000, commit_interval=10.0) as box:
        for seq in range(6):
            put(box, 1, seq, register="r1", size=100, at=T0 + timedelta(seconds=seq))
        for seq in range(6, 9):
            put(box, 1, seq, register="r2", size=100, at=T0 + timedelta(seconds=seq))
        put(box, 1, 9, kind="event", size=100, at=T0 + timedelta(seconds=9))
        put(box, 1, 10, kind="event", size=100, at=T0 + timedelta(seconds=10))  # 1100 bytes
        box.flush()
        assert keys(box) == [(1, 5), (1, 8), (1, 9), (1, 10)]
        stats = box.stats()
        assert (stats.states, stats.events, stats.bytes) == (2, 2, 400)
        assert (stats.dropped_states_total, stats.dropped_events_total) == (7, 0)
        assert stats.pending_gap == GapInfo(7, 0, T0, T0 + timedelta(seconds=7))


def test_over_max_bytes_oldest_events_go_after_coalescing(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", max_bytes=450, commit_interval=10.0) as box:
        put(box, 1, 0, register="r1", size=100)
        put(box, 1, 1, register="r1", size=100)
        for seq in range(2, 6):
            put(box, 1, seq, kind="event", size=100, at=T0 + timedelta(seconds=seq))
        box.flush()
        # 600 bytes → state (1,0) coalesced (500) → oldest event (1,2) dropped (400).
        assert keys(box) == [(1, 1), (1, 3), (1, 4), (1, 5)]
        gap = box.take_gap()
        assert gap == GapInfo(1, 1, T0, T0 + timedelta(seconds=2))
        assert gap is not None and gap.total == 2


def test_latest_states_go_last_when_alone_too_big(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", max_bytes=250, commit_interval=10.0) as box:
        for seq, register in enumerate(["r1", "r2", "r3"]):
            put(box, 1, seq, register=register, size=100)
        box.flush()
        assert keys(box) == [(1, 1), (1, 2)]
        assert box.stats().dropped_states_total == 1


def test_max_age_drops_old_events_and_superseded_states_but_keeps_last_state(tmp_path: Path, clock: Clock) -> None:
    with Outbox(tmp_path / "o.db", max_age=timedelta(days=1), clock=clock) as box:
        old = T0 - timedelta(days=3)
        put(box, 1, 0, register="r1", at=old)
        put(box, 1, 1, register="r1", at=old + timedelta(hours=1))
        put(box, 1, 2, register="r2", at=old)
        put(box, 1, 3, kind="event", at=old)
        put(box, 1, 4, kind="event", at=T0)
        box.flush()
        assert keys(box) == [(1, 1), (1, 2), (1, 4)]
        assert box.take_gap() == GapInfo(1, 1, old, old)


def test_gap_is_claimed_once_and_cleared_by_the_durable_gap_event(clock: Clock, tmp_path: Path) -> None:
    small = Outbox(tmp_path / "small.db", max_bytes=150, clock=clock, commit_interval=0.01)
    try:
        put(small, 1, 0, kind="event", size=100)
        put(small, 1, 1, kind="event", size=100)
        small.flush()
        gap = small.take_gap()
        assert gap == GapInfo(0, 1, T0, T0)
        assert small.take_gap() is None  # claimed: a second reporter does not double it
        put(small, 1, 2, kind="event", size=100, at=T0 + timedelta(seconds=1))  # drops (1,1) meanwhile
        small.flush()
        small.append("event", None, 1, 3, "t", b"gap", T0, resolves_gap=gap)  # waits for its commit
        later = small.take_gap()
        # The drop after the claim is still pending, and so reported by the next gap event.
        assert later is not None and (later.dropped_states, later.dropped_events) == (0, 1)
        small.append("event", None, 1, 4, "t", b"gap", T0, resolves_gap=later)
        assert small.take_gap() is None
        assert small.stats().dropped_events_total == 2
    finally:
        small.close()


def test_an_unresolved_claim_is_handed_out_again_after_the_timeout(tmp_path: Path, clock: Clock) -> None:
    with Outbox(tmp_path / "o.db", max_bytes=150, clock=clock, gap_claim_timeout=timedelta(seconds=60)) as box:
        put(box, 1, 0, kind="event", size=100)
        put(box, 1, 1, kind="event", size=100)
        first = box.take_gap()
        assert first is not None and box.take_gap() is None
        clock.now = T0 + timedelta(seconds=61)
        assert box.take_gap() == first
        box.release_gap()
        assert box.take_gap() == first


def test_gap_counters_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path, max_bytes=150) as box:
        put(box, 1, 0, kind="event", size=100)
        put(box, 1, 1, kind="event", size=100)
    with Outbox(path, max_bytes=150) as box:
        assert box.take_gap() == GapInfo(0, 1, T0, T0)


def test_a_failed_commit_is_reported_as_a_gap_not_lost_silently(outbox: Outbox) -> None:
    put(outbox, 1, 0)
    with pytest.raises(OutboxError):
        put(outbox, 1, 1, register=["not", "storable"], durable=True)  # type: ignore[arg-type]
    # The whole failed batch is counted, the outbox keeps working.
    put(outbox, 1, 2, durable=True)
    assert keys(outbox) == [(1, 2)]
    gap = outbox.take_gap()
    assert gap is not None and gap.dropped_states == 2
    assert outbox.stats().dropped_states_total == 2


def test_a_failed_commit_does_not_count_a_record_whose_puback_came_in_the_same_batch(outbox: Outbox) -> None:
    outbox.next_session()
    put(outbox, 1, 0)
    outbox.mark_published(1, 0)  # published live: the broker has it
    with pytest.raises(OutboxError):
        put(outbox, 1, 1, register=["not", "storable"], durable=True)  # type: ignore[arg-type]
    gap = outbox.take_gap()
    assert gap is not None and gap.dropped_states == 1  # only (1, 1) was never published
    assert outbox.stats().dropped_states_total == 1


def test_concurrent_writers_with_durable_appends(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", commit_interval=0.005)
    box.next_session()
    taken: list[tuple[int, int]] = []
    lock = threading.Lock()

    def writer(register: str) -> None:
        for n in range(60):
            session, seq = box.allocate()
            put(box, session, seq, register=register, kind="event" if n % 10 == 0 else "state", durable=n % 10 == 0)
            with lock:
                taken.append((session, seq))

    threads = [threading.Thread(target=writer, args=(f"r{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    box.mark_published(1, 0)  # bookkeeping from the "MQTT thread" at the same time
    for thread in threads:
        thread.join()
    try:
        assert sorted(taken) == [(1, s) for s in range(240)]
        assert keys(box) == sorted(taken)
    finally:
        box.close()
    with pytest.raises(OutboxError):
        put(box, 1, 999)


WRITER = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime
    from agent.outbox import Outbox

    box = Outbox(sys.argv[1], commit_interval=0.005)
    session = box.next_session()
    print("session", session, flush=True)
    seq = 0
    while True:
        box.append("state", "r1", session, seq, "t", b"s" * 200, datetime.now(UTC))
        seq += 1
        box.append("event", "r1", session, seq, "t", b"e" * 200, datetime.now(UTC), durable=True)
        print("durable", session, seq, flush=True)
        seq += 1
    """
)


def run_writer_and_kill(path: Path, durable_lines: int) -> tuple[int, list[tuple[int, int]]]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
    assert proc.stdout is not None
    session, durable = 0, []
    try:
        for line in proc.stdout:
            word, *numbers = line.split()
            if word == "session":
                session = int(numbers[0])
            else:
                durable.append((int(numbers[0]), int(numbers[1])))
                if len(durable) >= durable_lines:
                    break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    return session, durable


def test_kill_9_loses_no_durable_record_and_never_rewinds_the_session(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    seen_sessions = []
    for _ in range(2):
        session, durable = run_writer_and_kill(path, durable_lines=40)
        seen_sessions.append(session)
        with Outbox(path) as box:
            stored = {(r.session, r.seq) for r in box.backlog(1_000_000)}
            assert set(durable) <= stored, sorted(set(durable) - stored)[:5]
            assert box.next_session() > session
    assert seen_sessions[1] > seen_sessions[0]


def test_a_file_that_is_not_an_outbox_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    path.write_bytes(b"this is not a database, just text " * 200)
    with pytest.raises(OutboxError, match="cannot open outbox"):
        Outbox(path)


def test_a_gap_event_survives_a_full_outbox_and_an_unsent_one_folds_into_the_next(
    tmp_path: Path, clock: Clock
) -> None:
    with Outbox(tmp_path / "o.db", max_bytes=250, clock=clock, commit_interval=0.01) as box:
        for seq in range(3):
            put(box, 1, seq, kind="event", size=100, at=T0 + timedelta(seconds=seq))
        gap = box.take_gap()
        assert gap == GapInfo(0, 1, T0, T0)  # (1,0) dropped
        box.append("event", None, 1, 3, "gap", b"g" * 100, T0 + timedelta(seconds=3), resolves_gap=gap)
        # Storing the gap event pushed (1,1) out; two more push out (1,2) and (1,4), never the gap event.
        for seq in (4, 5):
            put(box, 1, seq, kind="event", size=100, at=T0 + timedelta(seconds=seq))
            box.flush()
        assert keys(box) == [(1, 3), (1, 5)]
        clock.now = T0 + timedelta(minutes=5)  # the gap event was never published: fold it into the next
        assert box.take_gap() == GapInfo(0, 4, T0, T0 + timedelta(seconds=4))
        assert keys(box) == [(1, 5)]
        assert box.stats().dropped_events_total == 4  # the folded gap event is not a lost record


def test_published_records_dropped_by_the_bounds_are_not_a_gap(tmp_path: Path, clock: Clock) -> None:
    with Outbox(tmp_path / "o.db", max_bytes=250, clock=clock, commit_interval=0.01) as box:
        box.next_session()
        put(box, 1, 0, kind="event", size=100)
        box.mark_published(1, 0)  # went out, awaiting the collector's ack
        put(box, 1, 1, kind="event", size=100, at=T0 + timedelta(seconds=1))
        put(box, 1, 2, kind="event", size=100, at=T0 + timedelta(seconds=2))
        box.flush()
        assert keys(box) == [(1, 1), (1, 2)]
        assert box.take_gap() is None
        assert box.stats().dropped_events_total == 0
