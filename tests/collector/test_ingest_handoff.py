"""The writer hands the parsed states it stored to the alert evaluator, which uses them instead of
reading the state JSON back — but only while the stored row is still that version. And the state
document, serialized once per message, lands equal in the history and the latest row. SQLite and
PostgreSQL."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from collector.ingest.batcher import IngestWriter
from collector.ingest.consumer import InboundMessage
from collector.ingest.engine import AlertEngine, EvaluationWorker
from collector.ingest.history_policy import history_document
from collector.ingest.writes import FreshState
from collector.storage import repository as repo
from collector.storage.rows import HistoryRow, JsonText, json_text
from collector.storage.schema import register_state, state_history
from collector.web.shared.present import history_point
from protocol.kkt.state import RegisterState

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: make the helper next to us importable
import ingest_testkit as kit

engine = kit.engine  # the fixture: a migrated engine on SQLite and on PostgreSQL

T0 = kit.T0


@dataclass
class Changes:
    """Records what the writer reports after each commit (the evaluator's side of on_changed)."""

    calls: list[tuple[set[str], set[str], dict[str, FreshState]]] = field(default_factory=list)

    def __call__(self, register_ids: Collection[str], agent_ids: Collection[str], states: Mapping[str, FreshState], /) -> None:
        self.calls.append((set(register_ids), set(agent_ids), dict(states)))

    def last_states(self) -> dict[str, FreshState]:
        return self.calls[-1][2]


def at_t0(*messages: tuple[str, bytes]) -> list[InboundMessage]:
    """Messages received at T0, the rules' clock here (else the agent looks silent for months)."""
    return [kit.inbound(topic, payload, at=T0) for topic, payload in messages]


def backlog(days: int) -> RegisterState:
    return kit.register_state(unsent=40, oldest_unsent_age=timedelta(days=days))


def alerts_by_rule(engine: sa.Engine) -> dict[str, tuple[str, str]]:
    with engine.connect() as conn:
        return {a.rule: (a.severity, a.status) for a in repo.load_alerts(conn)}


def overwrite_stored_document(engine: sa.Engine, register_id: str, state: RegisterState) -> None:
    """Change only the stored JSON, keeping the row's version: tells which copy an evaluation read."""
    with engine.begin() as conn:
        conn.execute(
            sa.update(register_state)
            .where(register_state.c.register_id == register_id)
            .values(state=state.model_dump(mode="json"))
        )


def test_only_states_that_won_the_newer_only_upsert_are_handed_over(engine: sa.Engine) -> None:
    changes = Changes()
    writer = IngestWriter(engine, kit.FakeDownlink(), on_changed=changes)
    first, second = kit.register_state(receipts=1), kit.register_state(receipts=2)
    # Two states of one register in one batch: the newer one is what the row holds and what is handed.
    writer.process(at_t0(
        kit.state_msg("agent-a", "kkt-1", 2, 6, second), kit.state_msg("agent-a", "kkt-1", 2, 5, first),
    ))  # fmt: skip
    handed = changes.last_states()
    assert set(handed) == {"kkt-1"}
    assert (handed["kkt-1"].agent_id, handed["kkt-1"].session, handed["kkt-1"].seq) == ("agent-a", 2, 6)
    assert handed["kkt-1"].state == kit.as_ingested(second)

    # A replayed older state is history only: the row keeps seq 6, so it must not be handed over;
    # a live state of another register in the same batch is.
    other = kit.register_state(serial="0002")
    writer.process(at_t0(
        kit.hist_msg("agent-a", [kit.state_payload("agent-a", "kkt-1", 1, 40, first)]),
        kit.state_msg("agent-a", "kkt-2", 2, 7, other),
    ))  # fmt: skip
    assert set(changes.last_states()) == {"kkt-2"}
    assert changes.last_states()["kkt-2"].state == kit.as_ingested(other)
    with engine.connect() as conn:
        assert conn.execute(sa.select(register_state.c.seq).where(register_state.c.register_id == "kkt-1")).scalar_one() == 6


def test_a_birth_hands_over_the_state_of_every_device_it_restores(engine: sa.Engine) -> None:
    changes = Changes()
    writer = IngestWriter(engine, kit.FakeDownlink(), on_changed=changes)
    state = kit.register_state()
    writer.process(at_t0(kit.birth_msg("agent-a", 1, 0, {"kkt-1": state, "kkt-unread": None})))
    handed = changes.last_states()
    assert set(handed) == {"kkt-1"}  # a device not read yet has no state and no register
    assert handed["kkt-1"].state == kit.as_ingested(state) and handed["kkt-1"].seq == 0


def test_the_evaluator_uses_the_handed_state_instead_of_the_stored_json(engine: sa.Engine) -> None:
    changes = Changes()
    writer = IngestWriter(engine, kit.FakeDownlink(), on_changed=changes)
    writer.process(at_t0(kit.status_msg("agent-a", 1, "online"), kit.state_msg("agent-a", "kkt-1", 1, 1, backlog(21))))
    handed = changes.last_states()
    # Same version, different JSON: only an evaluation that did not read the JSON sees the backlog.
    overwrite_stored_document(engine, "kkt-1", kit.register_state())
    alerts = AlertEngine(engine, clock=lambda: T0)

    report = alerts.evaluate(["kkt-1"], skip_unchanged=True, states=handed)
    assert report.registers == 1
    assert alerts_by_rule(engine) == {"ofd_backlog": ("critical", "active")}
    # A sweep (no states) reads the stored row, as before.
    alerts.evaluate(["kkt-1"])
    assert alerts_by_rule(engine) == {"ofd_backlog": ("critical", "cleared")}


def test_a_handed_state_is_not_used_once_the_stored_row_moved_on(engine: sa.Engine) -> None:
    changes = Changes()
    writer = IngestWriter(engine, kit.FakeDownlink(), on_changed=changes)
    writer.process(at_t0(kit.status_msg("agent-a", 1, "online"), kit.state_msg("agent-a", "kkt-1", 1, 1, backlog(21))))
    stale = changes.last_states()
    # A later batch (or another collector under a shared subscription) stored a newer, healthy state.
    writer.process(at_t0(kit.state_msg("agent-a", "kkt-1", 1, 2, kit.register_state())))
    alerts = AlertEngine(engine, clock=lambda: T0)

    report = alerts.evaluate(["kkt-1"], skip_unchanged=True, states=stale)
    assert report.registers == 1
    assert alerts_by_rule(engine) == {}, "the stale backlog state must not raise an alert"
    with engine.connect() as conn:
        assert conn.execute(sa.select(register_state.c.evaluated_at)).scalar_one() == T0


def test_the_worker_passes_the_states_of_a_trigger_to_the_evaluation(engine: sa.Engine) -> None:
    changes = Changes()
    writer = IngestWriter(engine, kit.FakeDownlink(), on_changed=changes)
    writer.process(at_t0(kit.status_msg("agent-a", 1, "online"), kit.state_msg("agent-a", "kkt-1", 1, 1, backlog(21))))
    register_ids, agent_ids, states = changes.calls[-1]
    overwrite_stored_document(engine, "kkt-1", kit.register_state())
    worker = EvaluationWorker(AlertEngine(engine, clock=lambda: T0), period=3600)
    worker.start()
    try:
        worker.changed(register_ids, agent_ids, states)
        deadline = time.monotonic() + 5
        while not alerts_by_rule(engine) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        worker.stop()
    assert alerts_by_rule(engine) == {"ofd_backlog": ("critical", "active")}


def test_the_latest_row_stores_the_whole_state_and_history_the_slim_document_its_readers_need(engine: sa.Engine) -> None:
    state = kit.register_state(serial="ЗН-0001", unsent=2, oldest_unsent_age=timedelta(hours=5))
    IngestWriter(engine, kit.FakeDownlink()).process(at_t0(kit.state_msg("agent-a", "kkt-1", 1, 1, state)))
    with engine.connect() as conn:
        history, reason = conn.execute(sa.select(state_history.c.state, state_history.c.reason)).one()
        latest = conn.execute(sa.select(register_state.c.state)).scalar_one()
    assert latest == state.model_dump(mode="json")
    assert RegisterState.model_validate(latest) == state
    assert reason == "first"
    assert history == json.loads(history_document(state)) and len(json.dumps(history)) < len(json.dumps(latest))
    def point(document: dict[str, object]) -> object:  # what the history API and the chart show
        return history_point(HistoryRow("agent-a", 1, 1, "kkt-1", kit.T0, kit.T0, document))

    assert point(history) == point(latest)


def test_a_serialized_document_reads_as_the_mapping_it_encodes() -> None:
    state = kit.register_state(serial="ЗН-0002")
    document = JsonText(state.model_dump_json())
    assert json_text(document) is document.text  # bound as is, never encoded again
    assert dict(document) == state.model_dump(mode="json")
    assert document["serial"] == "ЗН-0002" and len(document) == len(state.model_dump(mode="json"))
    assert json.loads(json_text({"a": 1})) == {"a": 1}  # a plain mapping is still encoded
