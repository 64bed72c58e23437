"""A sweep rewrites only the registers whose outcome changed: at 50 000 registers rewriting every
verdict and summary row each sweep left gigabytes of dead row versions an hour (issue 11).
SQLite and PostgreSQL."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from collector.ingest.batcher import IngestWriter
from collector.ingest.bulk import SUPERSEDED_SESSION
from collector.ingest.engine import AlertEngine
from collector.ingest.engine.write_back import same_outcome
from collector.storage.rows import RegisterEvaluation
from collector.storage.schema import register_state, register_summary

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: make the helper next to us importable
import ingest_testkit as kit

engine = kit.engine  # the fixture: a migrated engine on SQLite and on PostgreSQL

T0 = kit.T0
QUIET = ("kkt-1", "kkt-2")  # nothing threatens them: their verdict stays the same while the agent reports


def ingest(engine: sa.Engine, *messages: tuple[str, bytes], at: datetime = T0) -> None:
    IngestWriter(engine, kit.FakeDownlink()).process(
        [kit.inbound(topic, payload, at=at) for topic, payload in messages]
    )


def fleet(engine: sa.Engine) -> None:
    ingest(
        engine,
        kit.status_msg("agent-a", 1, "online"),
        kit.state_msg("agent-a", "kkt-1", 1, 1),
        kit.state_msg("agent-a", "kkt-2", 1, 2),
        kit.state_msg(
            "agent-a", "kkt-3", 1, 3, kit.register_state(unsent=5, oldest_unsent_age=timedelta(days=3))
        ),
    )


@contextmanager
def statements(engine: sa.Engine, wanted: Callable[[str], bool]) -> Iterator[list[str]]:
    """The statements (normalised: one space, lower case) that ``wanted`` picks, as they run."""
    seen: list[str] = []

    def record(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        text = " ".join(statement.split()).lower()
        if wanted(text):
            seen.append(text)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def row_writes(engine: sa.Engine) -> AbstractContextManager[list[str]]:
    """The statements that write a register_state or register_summary row."""
    return statements(
        engine, lambda text: text.startswith("update register_state") or text.startswith("insert into register_summary")
    )


def stored(engine: sa.Engine) -> dict[str, tuple[Any, ...]]:
    """Each register's evaluation time and, on PostgreSQL, the row versions (xmin) of its state and summary rows."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            query = sa.text(
                "SELECT s.register_id, s.evaluated_at, s.xmin::text, m.xmin::text FROM register_state s"
                " JOIN register_summary m ON m.register_id = s.register_id"
            )
        else:
            query = sa.select(register_state.c.register_id, register_state.c.evaluated_at).join(
                register_summary, register_summary.c.register_id == register_state.c.register_id
            )
        return {row[0]: tuple(row[1:]) for row in conn.execute(query)}


def test_a_sweep_rewrites_no_row_of_an_unchanged_register(engine: sa.Engine) -> None:
    fleet(engine)
    alerts = AlertEngine(engine)
    alerts.evaluate(["kkt-1", "kkt-2", "kkt-3"], now=T0)
    before = stored(engine)

    with row_writes(engine) as writes:
        report = alerts.evaluate(["kkt-1", "kkt-2"], now=T0 + timedelta(minutes=1))

    assert writes == []
    assert stored(engine) == before  # evaluated_at as it was; on PostgreSQL the same row versions
    assert (report.registers, report.written) == (2, 0)


def test_a_sweep_still_writes_the_registers_whose_outcome_moved(engine: sa.Engine) -> None:
    fleet(engine)
    alerts = AlertEngine(engine)
    alerts.evaluate(["kkt-1", "kkt-2", "kkt-3"], now=T0)
    before = stored(engine)
    ingest(
        engine,
        kit.state_msg(
            "agent-a", "kkt-2", 1, 4, kit.register_state(unsent=5, oldest_unsent_age=timedelta(days=3))
        ),
    )

    later = T0 + timedelta(minutes=1)
    report = alerts.evaluate(["kkt-1", "kkt-2", "kkt-3"], now=later)

    # kkt-2 got a backlog; kkt-3's verdict carries the backlog's age, which a minute moved.
    assert report.written == 2
    after = stored(engine)
    assert after["kkt-1"] == before["kkt-1"]
    assert after["kkt-2"][0] == after["kkt-3"][0] == later
    with engine.connect() as conn:
        summary = dict(
            conn.execute(sa.select(register_summary.c.register_id, register_summary.c.sell_status)).all()
        )
    assert summary == {"kkt-1": "no_threat", "kkt-2": "will_stop", "kkt-3": "will_stop"}


def test_an_unwritten_sweep_keeps_the_fast_paths_of_later_messages(engine: sa.Engine) -> None:
    """The in-memory and shared-verdict checks compare the stored evaluation time with their own:
    an evaluation that wrote nothing must keep the stored one, or every next message would take
    the full evaluation again."""
    fleet(engine)
    alerts = AlertEngine(engine)
    alerts.evaluate(["kkt-1"], now=T0)
    alerts.evaluate(["kkt-1"], now=T0 + timedelta(minutes=1))  # the sweep: nothing written
    assert alerts._evaluated["kkt-1"].evaluated_at == stored(engine)["kkt-1"][0] == T0

    later = T0 + timedelta(minutes=2)
    # Two minutes on, the same state but for its poll times (the shift opened when it did).
    state = kit.register_state().model_copy(
        update={"register_clock": kit.REGISTER_CLOCK + timedelta(minutes=2), "read_at": later}
    )
    message = kit.state_msg("agent-a", "kkt-1", 1, 5, state, ts=later)
    writer = IngestWriter(engine, kit.FakeDownlink())
    result = writer.process([kit.inbound(*message, at=later)])
    report = alerts.evaluate(
        result.changed_registers, now=later, skip_unchanged=True, states=result.fresh_states
    )
    assert report.registers == 0  # known unchanged in memory: no evaluation, no write

    # Another collector process (nothing in memory) adopts the stored verdict through its key.
    other = AlertEngine(engine)
    assert other.evaluate(["kkt-1"], now=later, skip_unchanged=True).registers == 0


def test_a_sweep_does_not_rewrite_a_register_for_messages_that_changed_nothing(engine: sa.Engine) -> None:
    """Messages the in-memory check skipped left the stored verdict's last data time behind; it is
    shown only for an unknown verdict, so the sweep after them writes nothing either."""
    fleet(engine)
    alerts = AlertEngine(engine)
    alerts.evaluate(["kkt-1"], now=T0)
    later = T0 + timedelta(minutes=2)
    fresh = kit.nothing_new_later(engine, later)
    assert alerts.evaluate(["kkt-1"], now=later, skip_unchanged=True, states=fresh).registers == 0
    before = stored(engine)

    with row_writes(engine) as writes:
        report = alerts.evaluate(["kkt-1"], now=later + timedelta(minutes=1))

    assert writes == []
    assert stored(engine) == before
    assert (report.registers, report.written) == (1, 0)

    # Silent past the offline threshold: unknown, shown with the last data time, which is then written.
    silent = later + timedelta(minutes=10)
    assert alerts.evaluate(["kkt-1"], now=silent).written == 1
    with engine.connect() as conn:
        verdict = conn.execute(
            sa.select(register_state.c.verdict).where(register_state.c.register_id == "kkt-1")
        ).scalar_one()
    assert (verdict["status"], verdict["last_data_at"]) == (
        "unknown",
        later.isoformat().replace("+00:00", "Z"),
    )


def documents_read(engine: sa.Engine) -> AbstractContextManager[list[str]]:
    """The statements that read a stored state document or verdict."""
    return statements(
        engine,
        lambda text: text.startswith("select")
        and ("register_state.state," in text or "register_state.verdict," in text),
    )


def test_a_sweep_reads_the_state_and_verdict_documents_only_of_rows_that_moved(engine: sa.Engine) -> None:
    fleet(engine)
    alerts = AlertEngine(engine)
    alerts.evaluate(["kkt-1", "kkt-2"], now=T0)

    with documents_read(engine) as reads:
        report = alerts.evaluate(["kkt-1", "kkt-2"], now=T0 + timedelta(minutes=1))
    assert reads == []  # both known from the last evaluation here
    assert report.registers == 2

    # Stored by a writer that hands this engine nothing (another collector): read again, and evaluated on it.
    ingest(
        engine,
        kit.state_msg(
            "agent-a", "kkt-2", 1, 4, kit.register_state(unsent=5, oldest_unsent_age=timedelta(days=3))
        ),
    )
    with documents_read(engine) as reads:
        report = alerts.evaluate(["kkt-1", "kkt-2"], now=T0 + timedelta(minutes=2))
    assert len(reads) == 1 and "register_state.state," in reads[0]
    assert report.written == 1
    with engine.connect() as conn:
        status = conn.execute(
            sa.select(register_state.c.sell_status).where(register_state.c.register_id == "kkt-2")
        ).scalar_one()
    assert status == "will_stop"

    # Another process's verdict: read to be compared with, then known.
    other = AlertEngine(engine)
    with documents_read(engine) as reads:
        assert other.evaluate(["kkt-1"], now=T0 + timedelta(minutes=3)).written == 0
    assert any("register_state.verdict," in text for text in reads)


def store_as_superseded(engine: sa.Engine, register_id: str, state: object) -> None:
    """The row as ``bulk.supersede_sessions`` leaves it: (session 0, seq 0), whatever its document."""
    with engine.begin() as conn:
        conn.execute(
            sa.update(register_state)
            .where(register_state.c.register_id == register_id)
            .values(session=SUPERSEDED_SESSION, seq=0, state=state.model_dump(mode="json"))  # type: ignore[attr-defined]
        )


def test_a_superseded_row_is_read_again_at_every_sweep(engine: sa.Engine) -> None:
    """Superseded rows of one agent all share one version, so it names no one document."""
    fleet(engine)
    alerts = AlertEngine(engine)
    store_as_superseded(engine, "kkt-1", kit.register_state(unsent=5, oldest_unsent_age=timedelta(days=3)))
    alerts.evaluate(["kkt-1"], now=T0)
    store_as_superseded(engine, "kkt-1", kit.register_state())

    alerts.evaluate(["kkt-1"], now=T0 + timedelta(minutes=1))

    with engine.connect() as conn:
        status = conn.execute(
            sa.select(register_state.c.sell_status).where(register_state.c.register_id == "kkt-1")
        ).scalar_one()
    assert status == "no_threat"


def verdict_row(key: str | None, **changes: Any) -> RegisterEvaluation:
    values: dict[str, Any] = {
        "worst_severity": "warning",
        "time_to_block_seconds": 3600,
        "blocks_at": T0 + timedelta(hours=1),
        "evaluated_at": T0,
        "sell_status": "will_stop",
        "sell_rank": 2,
        "verdict": {"status": "will_stop", "details": {"age_seconds": 10.5}},
        "verdict_key": key,
    }
    return RegisterEvaluation(**{**values, **changes})


def test_the_outcome_compares_what_readers_use_and_not_the_evaluation_time() -> None:
    stored_row = verdict_row("digest;1.0;;d3.0")
    # A later evaluation: another time, time-to-block and input ages, the same verdict.
    assert same_outcome(
        stored_row,
        verdict_row("digest;61.0;;d3.0", evaluated_at=T0 + timedelta(minutes=1), time_to_block_seconds=3540),
    )
    assert same_outcome(verdict_row(None), verdict_row(None))
    assert not same_outcome(None, stored_row)
    assert not same_outcome(stored_row, verdict_row("other;1.0;;d3.0"))  # other inputs or thresholds
    assert not same_outcome(stored_row, verdict_row(None))
    assert not same_outcome(stored_row, verdict_row("digest;1.0;;d3.0", worst_severity="major"))
    assert not same_outcome(stored_row, verdict_row("digest;1.0;;d3.0", blocks_at=T0))
    assert not same_outcome(
        stored_row, verdict_row("digest;1.0;;d3.0", sell_status="cannot_sell", sell_rank=0)
    )
    assert not same_outcome(
        stored_row, verdict_row("digest;1.0;;d3.0", verdict={"status": "will_stop", "details": {}})
    )
    # The last data time counts only where it is shown: in an unknown verdict.
    seen = {"status": "no_threat", "last_data_at": "2026-11-28T09:00:00Z"}
    newer = {**seen, "last_data_at": "2026-11-28T09:02:00Z"}
    assert same_outcome(verdict_row(None, verdict=seen), verdict_row(None, verdict=newer))
    unknown = {**seen, "status": "unknown"}
    assert not same_outcome(
        verdict_row(None, verdict=unknown), verdict_row(None, verdict={**newer, "status": "unknown"})
    )
