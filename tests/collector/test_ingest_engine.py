"""Alert engine wiring: stored state → rules → lifecycle → stored alerts, time to block and notices;
the periodic evaluator firing time-driven rules with no message arriving. SQLite and PostgreSQL."""

from __future__ import annotations

import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from collector.alerts import Thresholds
from collector.ingest.batcher import IngestWriter
from collector.ingest.engine import AlertEngine, EvaluationWorker
from collector.notify import AlertNotice
from collector.storage import repository as repo
from collector.storage.schema import register_state
from protocol.kkt.state import DeviceState

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: make the helper next to us importable
import ingest_testkit as kit

engine = kit.engine  # the fixture: a migrated engine on SQLite and on PostgreSQL

T0 = kit.T0




def ingest(engine: sa.Engine, *messages: tuple[str, bytes], at: datetime = T0) -> None:
    writer = IngestWriter(engine, kit.FakeDownlink())
    writer.process([kit.inbound(topic, payload, at=at) for topic, payload in messages])


def alerts_by_rule(engine: sa.Engine) -> dict[str, tuple[str, str]]:
    with engine.connect() as conn:
        return {a.rule: (a.severity, a.status) for a in repo.load_alerts(conn)}


def evaluation(engine: sa.Engine) -> sa.Row:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(register_state.c.worst_severity, register_state.c.time_to_block_seconds, register_state.c.blocks_at)
        ).one()


def backlog_state(age: timedelta) -> object:
    return kit.register_state(unsent=40, oldest_unsent_age=age)


def test_ofd_backlog_raises_a_critical_alert_with_time_to_block_and_escalates(engine: sa.Engine) -> None:
    notices: list[AlertNotice] = []
    ingest(engine, kit.status_msg("agent-a", 1, "online"), kit.state_msg("agent-a", "kkt-1", 1, 1, backlog_state(timedelta(days=20))))
    alerts = AlertEngine(engine, Thresholds(), notify=notices.append)

    report = alerts.evaluate(["kkt-1"], now=T0)
    assert report.registers == 1
    assert alerts_by_rule(engine) == {"ofd_backlog": ("critical", "active")}
    row = evaluation(engine)
    assert row.worst_severity == "critical"
    assert row.time_to_block_seconds == int(timedelta(days=10).total_seconds())
    assert row.blocks_at == T0 + timedelta(days=10)
    assert [(n.rule, n.severity, n.status) for n in notices] == [("ofd_backlog", "critical", "firing")]
    assert notices[0].blocks_at == T0 + timedelta(days=10)
    assert notices[0].fix is not None and notices[0].fix.startswith("Проверьте интернет в магазине")

    alerts.evaluate(["kkt-1"], now=T0)  # nothing changed: no new history, no notice
    assert len(notices) == 1

    # Ten days later, no message arrived: the register clock advanced with real time → blocked.
    alerts.evaluate(["kkt-1"], now=T0 + timedelta(days=10, minutes=1))
    assert alerts_by_rule(engine)["ofd_backlog"] == ("blocked", "active")
    assert evaluation(engine).time_to_block_seconds == -60  # projected from the last data, though it is stale now
    # The agent has been silent for ten days as well: that is its own alert.
    assert alerts_by_rule(engine)["agent_offline"] == ("major", "active")
    assert [n.severity for n in notices if n.rule == "ofd_backlog"] == ["critical", "blocked"]
    with engine.connect() as conn:
        alert = repo.load_alert(conn, "kkt-1", "ofd_backlog")
        assert alert is not None and alert.id is not None
        assert [c.action for c in repo.load_alert_history(conn, alert.id)] == ["raised", "escalated"]


def test_the_engine_stores_the_verdict_and_severity_agrees_with_it(engine: sa.Engine) -> None:
    failing = kit.register_state().model_copy(update={"device": DeviceState(fn_errors=[0x03])})  # "ошибка ФН"
    ingest(engine, kit.status_msg("agent-a", 1, "online"), kit.state_msg("agent-a", "kkt-1", 1, 1, failing))
    AlertEngine(engine, Thresholds()).evaluate(["kkt-1"], now=T0)
    with engine.connect() as conn:
        row = conn.execute(sa.select(register_state)).one()
    assert (row.sell_status, row.sell_rank, row.verdict["cause"]) == ("cannot_sell", 0, "fn_refusal")
    assert row.worst_severity == "blocked"  # no rule raises an alert for it, yet it cannot sell


def test_an_alert_clears_when_the_condition_goes_away(engine: sa.Engine) -> None:
    notices: list[AlertNotice] = []
    alerts = AlertEngine(engine, notify=notices.append)
    ingest(engine, kit.status_msg("agent-a", 1, "online"), kit.state_msg("agent-a", "kkt-1", 1, 1, backlog_state(timedelta(days=3))))
    alerts.evaluate(["kkt-1"], now=T0)
    assert alerts_by_rule(engine) == {"ofd_backlog": ("major", "active")}
    ingest(engine, kit.state_msg("agent-a", "kkt-1", 1, 2, kit.register_state()))
    alerts.evaluate(["kkt-1"], now=T0)
    assert alerts_by_rule(engine) == {"ofd_backlog": ("major", "cleared")}
    assert [n.status for n in notices] == ["firing", "resolved"]
    assert evaluation(engine).worst_severity is None


def test_the_periodic_evaluator_flags_a_silent_agent_without_any_message(engine: sa.Engine) -> None:
    ingest(engine, kit.status_msg("agent-a", 1, "online"), kit.state_msg("agent-a", "kkt-1", 1, 1))
    clock = [T0 + timedelta(minutes=1)]
    alerts = AlertEngine(engine, clock=lambda: clock[0])
    worker = EvaluationWorker(alerts, period=0.05)
    worker.start()
    try:
        time.sleep(0.2)
        assert alerts_by_rule(engine) == {}
        clock[0] = T0 + timedelta(minutes=6)  # silent for 6 minutes, no LWT
        deadline = time.monotonic() + 5
        while alerts_by_rule(engine).get("agent_offline") != ("warning", "active") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert alerts_by_rule(engine)["agent_offline"] == ("warning", "active")
        clock[0] = T0 + timedelta(minutes=31)
        deadline = time.monotonic() + 5
        while alerts_by_rule(engine)["agent_offline"][0] != "major" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert alerts_by_rule(engine)["agent_offline"] == ("major", "active")
    finally:
        worker.stop()
    assert worker.sweeps >= 2


def test_changed_registers_and_agents_are_evaluated_without_waiting_for_the_sweep(engine: sa.Engine) -> None:
    ingest(engine, kit.status_msg("agent-a", 1, "online"), kit.state_msg("agent-a", "kkt-1", 1, 1, backlog_state(timedelta(days=21))))
    alerts = AlertEngine(engine, clock=lambda: T0)
    worker = EvaluationWorker(alerts, period=3600)
    worker.start()
    try:
        worker.changed([], ["agent-a"])  # an agent's status changed: all its registers
        deadline = time.monotonic() + 5
        while not alerts_by_rule(engine) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        worker.stop()
    assert alerts_by_rule(engine) == {"ofd_backlog": ("critical", "active")}


def test_a_failing_notifier_does_not_stop_evaluation(engine: sa.Engine) -> None:
    def broken(notice: AlertNotice) -> None:
        raise RuntimeError("smtp down")

    ingest(engine, kit.status_msg("agent-a", 1, "online"), kit.state_msg("agent-a", "kkt-1", 1, 1, backlog_state(timedelta(days=21))))
    report = AlertEngine(engine, notify=broken).evaluate(["kkt-1"], now=T0)
    assert report.changes == 1 and report.notices == 0
    assert alerts_by_rule(engine) == {"ofd_backlog": ("critical", "active")}


def test_pending_alerts_of_several_registers_are_each_held_and_raised(engine: sa.Engine) -> None:
    # Pending alerts are kept per register: each register's own are applied, the others untouched.
    ingest(
        engine, kit.status_msg("agent-a", 1, "online"),
        kit.state_msg("agent-a", "kkt-1", 1, 1, backlog_state(timedelta(days=21))),
        kit.state_msg("agent-a", "kkt-2", 1, 2, backlog_state(timedelta(days=21))),
        kit.state_msg("agent-a", "kkt-3", 1, 3, kit.register_state("0003")),
    )  # fmt: skip
    alerts = AlertEngine(engine, Thresholds(pending={"ofd_backlog": timedelta(minutes=5)}))  # type: ignore[dict-item]
    assert alerts.evaluate(["kkt-1", "kkt-2", "kkt-3"], now=T0).registers == 3
    assert alerts_by_rule(engine) == {}
    # An ingest trigger never skips a register with a pending alert; kkt-3 has none and nothing moved
    # (seconds later: the agent's silence is part of the inputs).
    assert alerts.evaluate(["kkt-1", "kkt-2", "kkt-3"], now=T0 + timedelta(seconds=2), skip_unchanged=True).registers == 2
    ingest(engine, kit.state_msg("agent-a", "kkt-2", 1, 4, kit.register_state("0002")))  # kkt-2's backlog went out
    alerts.evaluate(["kkt-2"], now=T0 + timedelta(seconds=3))
    assert alerts.evaluate(["kkt-1", "kkt-2"], now=T0 + timedelta(seconds=5), skip_unchanged=True).registers == 1
    alerts.evaluate(["kkt-1", "kkt-2", "kkt-3"], now=T0 + timedelta(minutes=5))
    with engine.connect() as conn:
        raised = {(a.register_id, a.status) for a in repo.load_alerts(conn) if a.rule == "ofd_backlog"}
    assert raised == {("kkt-1", "active")}  # (the agent, silent since T0, is offline by now too)


def test_pending_periods_hold_an_alert_back_in_memory(engine: sa.Engine) -> None:
    ingest(engine, kit.status_msg("agent-a", 1, "online"), kit.state_msg("agent-a", "kkt-1", 1, 1, backlog_state(timedelta(days=21))))
    alerts = AlertEngine(engine, Thresholds(pending={"ofd_backlog": timedelta(minutes=5)}))  # type: ignore[dict-item]
    alerts.evaluate(["kkt-1"], now=T0)
    assert alerts_by_rule(engine) == {}
    alerts.evaluate(["kkt-1"], now=T0 + timedelta(minutes=4))
    assert alerts_by_rule(engine) == {}
    alerts.evaluate(["kkt-1"], now=T0 + timedelta(minutes=5))
    assert alerts_by_rule(engine)["ofd_backlog"] == ("critical", "active")
