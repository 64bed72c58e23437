"""What the ingest writer tells ``/readyz``: failing since when and why, a batch stuck too long,
and back to ready after the next commit."""

from __future__ import annotations

from collector.ingest.health import IngestHealth


def health(stall_after: float = 60.0) -> tuple[IngestHealth, list[float]]:
    clock = [100.0]
    return IngestHealth(stall_after=stall_after, clock=lambda: clock[0]), clock


def test_a_failing_writer_is_not_ready_with_the_reason_until_it_commits_again() -> None:
    writer, clock = health()
    assert writer.check().ok and writer.check().detail == "no message written yet"
    writer.batch_started()
    writer.failed("OperationalError: database is locked")
    clock[0] += 12
    writer.failed("OperationalError: database is locked")  # still failing: the start time stays
    report = writer.check()
    assert not report.ok and report.detail == "cannot commit for 12 s: OperationalError: database is locked"
    writer.committed()
    clock[0] += 3
    assert writer.check().ok and writer.check().detail == "last commit 3 s ago"


def test_a_batch_writing_longer_than_the_stall_limit_is_not_ready() -> None:
    writer, clock = health(stall_after=30.0)
    writer.batch_started()
    clock[0] += 30
    assert writer.check().ok  # at the limit, not past it
    clock[0] += 1
    report = writer.check()
    assert not report.ok and report.detail == "one batch has been writing for 31 s"
    writer.committed()
    assert writer.check().ok
