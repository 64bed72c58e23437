"""Quiet periods (issue 11): a register with nothing found and no threat ahead can change with time
only when a time-driven rule reaches its first level, so sweeps pass over it until then while its
inputs stay as they are. ``quiet_until`` must never be late (an alert would be late); the engine
must evaluate every register whose inputs may have moved. SQLite and PostgreSQL."""

from __future__ import annotations

import random
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from collector.alerts import OfdContract, RuleInput, SellStatus, Thresholds, evaluate_all, sell_verdict
from collector.alerts.quiet import quiet_until
from collector.ingest import bulk
from collector.ingest.batcher import IngestWriter
from collector.ingest.engine import AlertEngine, EvaluationWorker
from collector.ingest.engine.evaluator import QUIET_MARGIN
from collector.storage import repository as repo
from collector.storage.rows import ContractRow
from collector.storage.schema import agents, register_state
from protocol.kkt.state import FnState, OfdState, RegisterState, ShiftState, ShiftStatus, Vendor

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: make the helper next to us importable
import ingest_testkit as kit

engine = kit.engine  # the fixture: a migrated engine on SQLite and on PostgreSQL

T0 = kit.T0
UTC_CLOCK = datetime(2026, 11, 28, 9, 0)  # a register clock set to UTC, to keep the cases readable


# --- quiet_until against the rules themselves ---------------------------------------------------


def random_input(rng: random.Random, now: datetime) -> RuleInput:
    """A register near one of the first thresholds (or past none), in every combination."""
    clock = UTC_CLOCK + timedelta(seconds=rng.randint(-3600, 3600))  # the register clock's own error
    polled = now - timedelta(seconds=rng.choice([0, 5, 40, 300]))
    if rng.random() < 0.1:
        polled = now + timedelta(seconds=30)  # a poll time "in the future": ages stand still until then
    register_now = clock + (now - polled) if polled <= now else clock
    shift_age = timedelta(minutes=rng.randint(0, 20 * 60 + 30))
    unsent_age = timedelta(minutes=rng.randint(0, 5 * 60))
    fn_days = rng.randint(55, 400)
    state = RegisterState(
        vendor=Vendor.SHTRIH,
        protocol="shtrih",
        serial="0001",
        register_clock=clock,
        read_at=polled,
        shift=ShiftState(
            status=rng.choice([ShiftStatus.OPEN, ShiftStatus.CLOSED]),
            number=7,
            receipts=3,
            opened_at=register_now - shift_age,
        ),
        fn=FnState(
            serial="9999", phase=3, fiscal=True, valid_until=(register_now + timedelta(days=fn_days)).date()
        ),
        ofd=OfdState(
            unsent_count=rng.choice([0, 3]),
            first_unsent_at=register_now - unsent_age,
        ),
    )
    online = rng.choice([True, False, None])
    seen_age = timedelta(seconds=rng.randint(0, 6 * 60))
    link_up = rng.choice([True, False, None])
    contract = rng.choice(
        [
            None,
            OfdContract(activated=True, paid_until=(now + timedelta(days=rng.randint(25, 90))).date()),
            OfdContract(activated=True, paid_until=None),
        ]
    )
    return RuleInput(
        register_id="kkt-1",
        now=now,
        state=state,
        state_received_at=polled if polled <= now else now,
        polled_at=polled,
        agent_online=online,
        agent_last_seen=rng.choice([None, now - seen_age]),
        link_up=link_up,
        link_down_since=now - timedelta(seconds=rng.randint(0, 6 * 60)) if link_up is False else None,
        contract=contract,
    )


def shown(inp: RuleInput, thresholds: Thresholds) -> tuple[Any, ...]:
    """What an evaluation tells readers: the conditions found and the verdict but its last data time."""
    conditions = evaluate_all(inp, thresholds)
    verdict = sell_verdict(inp, thresholds, conditions).model_dump(mode="json")
    verdict.pop("last_data_at")
    return [(c.rule, c.severity, c.message, c.details) for c in conditions], verdict


def at(inp: RuleInput, now: datetime) -> RuleInput:
    return RuleInput(**{**inp.__dict__, "now": now})


@pytest.mark.parametrize(
    "thresholds",
    [
        Thresholds(),
        Thresholds(
            shift_warning=timedelta(hours=12),
            agent_offline_warning=timedelta(minutes=3),
            ofd_backlog_warning=timedelta(hours=1),
        ),
        # Data never goes stale: the other rules' first levels come first.
        Thresholds(agent_offline_warning=timedelta(days=400), agent_offline_major=timedelta(days=401)),
    ],
)
def test_nothing_changes_before_the_quiet_period_ends_and_something_does_at_its_end(
    thresholds: Thresholds,
) -> None:
    rng = random.Random(11)
    checked = tight = 0
    for _ in range(1500):
        inp = random_input(rng, T0)
        found, verdict = shown(inp, thresholds)
        if found or verdict["status"] != SellStatus.NO_THREAT.value:
            continue  # quiet periods are only for these
        until = quiet_until(inp, thresholds)
        assert until is not None  # every clock here is the register's
        assert until >= T0
        span = until - T0
        probes = [T0 + span * fraction for fraction in (0.25, 0.5, 0.9, 0.999)]
        probes += (
            [until - timedelta(microseconds=1), until - QUIET_MARGIN] if span < timedelta(days=3650) else []
        )
        for probe in probes:
            if probe > T0:
                assert shown(at(inp, probe), thresholds) == (found, verdict), (inp, until, probe)
        checked += 1
        if span < timedelta(days=3650) and inp.polled_at is not None and inp.polled_at <= T0:
            assert shown(at(inp, until + timedelta(seconds=1)), thresholds) != (found, verdict), (inp, until)
            tight += 1
    assert checked > 150 and tight > 100  # the generator reaches the interesting cases


def test_a_clock_that_can_jump_gives_no_quiet_period() -> None:
    """Without a register clock the register-clock rules read the company's zone, whose offset can change."""
    from zoneinfo import ZoneInfo

    state = kit.register_state().model_copy(update={"register_clock": None})
    inp = RuleInput(register_id="kkt-1", now=T0, state=state, state_received_at=T0, agent_online=True,
                    agent_last_seen=T0, tz=ZoneInfo("Europe/Berlin"))  # fmt: skip
    assert not evaluate_all(inp, Thresholds())
    assert quiet_until(inp, Thresholds()) is None


# --- the engine ---------------------------------------------------------------------------------


def quiet_fleet(engine: sa.Engine) -> None:
    """Two quiet registers (the shift opened 2 h ago: quiet until the agent could be silent 5 min)."""
    IngestWriter(engine, kit.FakeDownlink()).process([
        kit.inbound(*message, at=T0)
        for message in (
            kit.status_msg("agent-a", 1, "online"),
            kit.state_msg("agent-a", "kkt-1", 1, 1),
            kit.state_msg("agent-a", "kkt-2", 1, 2),
        )
    ])  # fmt: skip


def test_a_sweep_passes_over_quiet_registers_until_their_period_ends(engine: sa.Engine) -> None:
    quiet_fleet(engine)
    alerts = AlertEngine(engine)
    assert alerts.evaluate(["kkt-1", "kkt-2"], now=T0).registers == 2
    assert alerts.evaluate(["kkt-1", "kkt-2"], now=T0 + timedelta(minutes=2), skip_quiet=True).registers == 0
    assert alerts.evaluate(["kkt-1", "kkt-2"], now=T0 + timedelta(minutes=2)).registers == 2  # a full sweep

    # Silent for 6 minutes: the agent_offline rule's first level came, quiet or not.
    report = alerts.evaluate(["kkt-1", "kkt-2"], now=T0 + timedelta(minutes=6), skip_quiet=True)
    assert report.registers == 2
    with engine.connect() as conn:
        assert {a.rule for a in repo.load_alerts(conn)} == {"agent_offline"}


def test_a_sweep_evaluates_a_quiet_register_whose_inputs_moved(engine: sa.Engine) -> None:
    quiet_fleet(engine)
    alerts = AlertEngine(engine)
    alerts.evaluate(["kkt-1", "kkt-2"], now=T0)
    later = T0 + timedelta(minutes=1)

    # A state another collector stored (nothing handed to this engine).
    IngestWriter(engine, kit.FakeDownlink()).process([
        kit.inbound(*kit.state_msg("agent-a", "kkt-1", 1, 3, kit.register_state(unsent=2, oldest_unsent_age=timedelta(hours=5))), at=later)
    ])  # fmt: skip
    assert alerts.evaluate(["kkt-1", "kkt-2"], now=later, skip_quiet=True).registers == 1
    with engine.connect() as conn:
        assert {a.rule for a in repo.load_alerts(conn)} == {"ofd_backlog"}

    # The link flag.
    with engine.begin() as conn:
        bulk.set_links(conn, {"kkt-2": False})
    assert alerts.evaluate(["kkt-2"], now=later, skip_quiet=True).registers == 1
    with engine.begin() as conn:
        bulk.set_links(conn, {"kkt-2": True})
    assert alerts.evaluate(["kkt-2"], now=later, skip_quiet=True).registers == 1
    assert alerts.evaluate(["kkt-2"], now=later, skip_quiet=True).registers == 0

    # The agent's status or clock, stored by another collector.
    with engine.begin() as conn:
        conn.execute(sa.update(agents).where(agents.c.agent_id == "agent-a").values(clock_offset=1.5))
    assert alerts.evaluate(["kkt-2"], now=later, skip_quiet=True).registers == 1
    with engine.begin() as conn:
        conn.execute(sa.update(agents).where(agents.c.agent_id == "agent-a").values(online=False))
    assert alerts.evaluate(["kkt-2"], now=later, skip_quiet=True).registers == 1
    assert alerts.evaluate(["kkt-2"], now=later, skip_quiet=True).registers == 0

    # The agent's last-seen time known at last (a later one only ends a quiet period later).
    with engine.begin() as conn:
        conn.execute(sa.update(agents).where(agents.c.agent_id == "agent-a").values(last_seen=None))
    assert alerts.evaluate(["kkt-2"], now=later, skip_quiet=True).registers == 1
    with engine.begin() as conn:
        conn.execute(sa.update(agents).where(agents.c.agent_id == "agent-a").values(last_seen=T0))
    assert alerts.evaluate(["kkt-2"], now=later, skip_quiet=True).registers == 1
    with engine.begin() as conn:
        conn.execute(sa.update(agents).where(agents.c.agent_id == "agent-a").values(last_seen=later))
    assert alerts.evaluate(["kkt-2"], now=later, skip_quiet=True).registers == 0

    # A verdict another collector wrote.
    with engine.begin() as conn:
        conn.execute(
            sa.update(register_state)
            .where(register_state.c.register_id == "kkt-2")
            .values(evaluated_at=later + timedelta(seconds=1))
        )
    assert alerts.evaluate(["kkt-2"], now=later, skip_quiet=True).registers == 1


def test_a_change_adopted_from_another_collector_ends_the_quiet_period(engine: sa.Engine) -> None:
    """The backlog appears in a message dealt to another collector, which evaluates it; this one
    adopts that verdict from memory with its next message: its sweeps must not pass over the register."""
    quiet_fleet(engine)
    alerts, other = AlertEngine(engine), AlertEngine(engine)
    alerts.evaluate(["kkt-1"], now=T0)
    backlog = {"unsent": 2, "oldest_unsent_age": timedelta(hours=5)}
    later = T0 + timedelta(seconds=20)
    changed = IngestWriter(engine, kit.FakeDownlink()).process(
        [kit.inbound(*kit.state_msg("agent-a", "kkt-1", 1, 3, kit.register_state(**backlog)), at=later)]
    )
    assert other.evaluate(["kkt-1"], now=later, skip_unchanged=True, states=changed.fresh_states).registers == 1
    again = IngestWriter(engine, kit.FakeDownlink()).process(
        [kit.inbound(*kit.state_msg("agent-a", "kkt-1", 1, 4, kit.register_state(receipts=9, **backlog)), at=later)]
    )
    assert alerts.evaluate(["kkt-1"], now=later, skip_unchanged=True, states=again.fresh_states).registers == 0  # adopted
    assert alerts.evaluate(["kkt-1"], now=later + timedelta(seconds=10), skip_quiet=True).registers == 1
    with engine.connect() as conn:
        assert {a.rule for a in repo.load_alerts(conn)} == {"ofd_backlog"}


def test_messages_found_unchanged_in_memory_keep_the_register_quiet(engine: sa.Engine) -> None:
    quiet_fleet(engine)
    alerts = AlertEngine(engine)
    alerts.evaluate(["kkt-1"], now=T0)
    later = T0 + timedelta(minutes=2)
    fresh = kit.nothing_new_later(engine, later)
    assert alerts.evaluate(["kkt-1"], now=later, skip_unchanged=True, states=fresh).registers == 0
    assert alerts.evaluate(["kkt-1"], now=later + timedelta(seconds=30), skip_quiet=True).registers == 0


def test_registers_with_findings_or_pending_alerts_are_never_quiet(engine: sa.Engine) -> None:
    IngestWriter(engine, kit.FakeDownlink()).process([
        kit.inbound(*message, at=T0)
        for message in (
            kit.status_msg("agent-a", 1, "online"),
            kit.state_msg("agent-a", "kkt-1", 1, 1, kit.register_state(unsent=2, oldest_unsent_age=timedelta(hours=5))),
            kit.state_msg("agent-a", "kkt-2", 1, 2, kit.register_state().model_copy(update={"device": kit.register_state().device.model_copy(update={"paper_present": False})})),
        )
    ])  # fmt: skip
    alerts = AlertEngine(engine, Thresholds(pending={"paper_out": timedelta(minutes=10)}))
    alerts.evaluate(["kkt-1", "kkt-2"], now=T0)
    assert alerts._pending  # paper_out waits out its pending period
    assert alerts.evaluate(["kkt-1", "kkt-2"], now=T0 + timedelta(minutes=1), skip_quiet=True).registers == 2


class RecordingEngine:
    def __init__(self) -> None:
        self.calls: list[bool] = []

    def all_registers(self) -> list[str]:
        return ["kkt-1"]

    def evaluate(self, ids: list[str], *, skip_quiet: bool = False) -> None:
        self.calls.append(skip_quiet)

    def update_open_alert_gauge(self) -> None:
        pass


def test_every_nth_sweep_evaluates_every_register() -> None:
    recording = RecordingEngine()
    worker = EvaluationWorker(recording, period=3600, full_every=3)  # type: ignore[arg-type]
    for _ in range(7):
        worker.sweep()
    assert recording.calls == [False, True, True, False, True, True, False]


def test_a_contract_edited_on_the_web_applies_at_the_next_full_sweep(engine: sa.Engine) -> None:
    quiet_fleet(engine)
    clock = [T0]
    worker = EvaluationWorker(AlertEngine(engine, clock=lambda: clock[0]), period=3600, full_every=2)
    worker.sweep()  # full
    with engine.begin() as conn:
        repo.upsert_contract(
            conn,
            ContractRow("kkt-1", activated=False, paid_until=date(2026, 12, 31), tariff=None, updated_at=T0),
        )
    clock[0] = T0 + timedelta(minutes=1)
    worker.sweep()  # quiet ones passed over
    with engine.connect() as conn:
        assert not repo.load_alerts(conn)
    worker.sweep()  # full
    with engine.connect() as conn:
        assert {(a.register_id, a.rule) for a in repo.load_alerts(conn)} == {("kkt-1", "ofd_contract")}
