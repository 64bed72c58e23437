"""Sequence bookkeeping: contiguous ack marks, gaps and the reorder window, new sessions, rollback."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from collector.ingest.sequence import NOTHING, SequenceTracker


def tracker(window: float = 2.0) -> tuple[SequenceTracker, list[float]]:
    clock = [0.0]
    return SequenceTracker(window, clock=lambda: clock[0]), clock


def test_the_mark_is_the_contiguous_prefix_and_waits_for_a_missing_seq() -> None:
    seq, _ = tracker()
    assert seq.commit_live("a", 1, [0, 1]) == 1
    assert seq.commit_live("a", 1, [3, 4]) is None
    assert seq.open_gaps() == {"a": (1, 2)}
    assert seq.commit_live("a", 1, [2]) == 4
    assert seq.open_gaps() == {}


def test_a_gap_asks_for_one_rebirth_after_the_reorder_window() -> None:
    seq, clock = tracker(window=2.0)
    seq.commit_live("a", 1, [0, 2])
    assert seq.due_rebirths() == []
    clock[0] = 1.9
    assert seq.due_rebirths() == []
    clock[0] = 2.0
    assert seq.due_rebirths() == ["a"]
    clock[0] = 10.0
    assert seq.due_rebirths() == []  # once per gap
    seq.commit_live("a", 1, [1])
    seq.commit_live("a", 1, [4])
    clock[0] = 12.0
    assert seq.due_rebirths() == ["a"]  # a new gap is a new question


def test_a_new_session_starts_over_and_late_messages_of_the_old_one_change_nothing() -> None:
    seq, _ = tracker()
    seq.commit_live("a", 1, [0, 1, 2])
    assert seq.commit_live("a", 2, [0]) == 0
    assert seq.commit_live("a", 1, [3]) is None
    assert seq.knows("a", 1) and seq.knows("a", 2) and not seq.knows("a", 3)


def test_seeding_from_the_durable_mark_and_replayed_batches() -> None:
    seq, _ = tracker()
    seq.seed("a", 5, 41)
    assert seq.commit_live("a", 5, [42]) == 42
    seq.commit_live("a", 5, [50])
    seq.commit_replayed("a", 5, 60)  # replay covers the gap (coalesced rows are never sent)
    assert seq.open_gaps() == {}
    assert seq.commit_live("a", 5, [61]) == 61


def test_rebirth_checks_look_only_at_agents_with_a_gap() -> None:
    """Checked after every batch: at 50 000 agents, walking all of them cost milliseconds."""
    seq, clock = tracker(window=2.0)
    for n in range(10_000):
        seq.commit_live(f"agent-{n}", 1, [0, 1])
    seq.commit_live("agent-7", 1, [3])  # a gap at 2
    clock[0] = 2.0
    assert seq.due_rebirths() == ["agent-7"]
    assert seq._watch == set()  # asked: nothing left to look at until a new gap
    seq.commit_live("agent-7", 1, [2])
    seq.commit_live("agent-7", 1, [5])
    assert seq._watch == {"agent-7"}


def test_a_gap_restored_by_a_rollback_is_still_asked_about() -> None:
    seq, clock = tracker(window=2.0)
    seq.commit_live("a", 1, [0, 2])  # a gap at 1
    assert seq.due_rebirths() == []
    seq.begin()
    seq.commit_live("a", 1, [1])  # closes it, but the transaction fails
    assert seq.due_rebirths() == []
    seq.rollback()
    clock[0] = 2.0
    assert seq.due_rebirths() == ["a"]


def test_rollback_forgets_what_the_failed_transaction_committed() -> None:
    seq, _ = tracker()
    seq.commit_live("a", 1, [0])
    seq.begin()
    seq.commit_live("a", 1, [1, 2])
    seq.commit_live("b", 1, [0])
    seq.rollback()
    assert seq.commit_live("a", 1, [1]) == 1  # advanced again: it was not remembered
    assert not seq.knows("b", 1)


def test_shared_subscriptions_ack_the_highest_seq() -> None:
    seq = SequenceTracker(0.0, contiguous=False)
    assert seq.commit_live("a", 1, [7, 3]) == 7
    assert seq.due_rebirths() == []


@given(st.permutations(list(range(30))), st.integers(min_value=1, max_value=30))
def test_any_arrival_order_ends_at_the_last_seq(order: list[int], chunk: int) -> None:
    seq, _ = tracker()
    marks = [NOTHING]
    for start in range(0, len(order), chunk):
        mark = seq.commit_live("a", 1, order[start : start + chunk])
        if mark is not None:
            assert mark > marks[-1]  # never goes back
            marks.append(mark)
    assert marks[-1] == 29 and seq.open_gaps() == {}


def test_a_lower_live_session_asks_for_a_rebirth_at_once_and_its_birth_resumes_the_real_session() -> None:
    seq, _ = tracker(window=2.0)
    seq.seed("a", 3, 1)
    assert seq.commit_live("a", 3, [2]) == 2
    seq.commit_live("a", 503, [0])  # a forged higher session
    assert seq.commit_live("a", 3, [3, 4]) is None  # the real agent, contradicting it
    assert seq.due_rebirths() == ["a"]  # no reorder window to wait for
    assert seq.due_rebirths() == []

    seq.supersede("a", 3)  # the answer: a birth of session 3
    assert not seq.knows("a", 3)  # the durable mark must be read again
    seq.seed("a", 3, 2)
    assert seq.commit_live("a", 3, [5]) == 5  # 3 and 4, committed meanwhile, count
    assert seq.open_gaps() == {}


def test_a_birth_of_the_tracked_or_a_higher_session_supersedes_nothing() -> None:
    seq, _ = tracker()
    seq.commit_live("a", 4, [0, 1])
    seq.supersede("a", 4)
    seq.supersede("a", 9)
    assert seq.knows("a", 4) and seq.commit_live("a", 4, [2]) == 2
