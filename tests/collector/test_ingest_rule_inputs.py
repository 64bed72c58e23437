"""``rule_inputs_key``: equal only when no rule could tell the inputs apart at the same ``now``; the
alert engine skipping ingest-triggered evaluations on it (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa

from collector.alerts import RuleInput, Thresholds, evaluate_all
from collector.ingest.batcher import IngestWriter
from collector.ingest.engine import AlertEngine, EvaluationWorker
from collector.ingest.rule_inputs import (
    DRIFT,
    _projected,
    inputs_digest,
    rule_inputs_key,
    same_verdict,
    still_same_verdict,
    with_state,
)
from collector.ingest.writes import FreshState
from collector.storage.schema import agents as agents_table
from collector.storage.schema import register_state
from protocol.kkt.state import FnState, OfdLinkCheck, RegisterState

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: make the helper next to us importable
import ingest_testkit as kit

engine = kit.engine  # the fixture: a migrated engine on SQLite and on PostgreSQL
T0 = kit.T0


def _input(**state_changes: object) -> RuleInput:
    state = kit.register_state(unsent=3, oldest_unsent_age=timedelta(days=20)).model_copy(update=state_changes)
    return RuleInput(
        register_id="r-1", now=T0 + timedelta(minutes=1), state=state, state_received_at=T0,
        agent_online=True, agent_last_seen=T0,
    )


def test_a_new_poll_with_only_counters_and_clock_moved_has_the_same_key() -> None:
    base = _input()
    later = _input(  # the heartbeat four minutes on, looked at as long after it arrived as the first
        read_at=T0 + timedelta(minutes=4),
        register_clock=kit.REGISTER_CLOCK + timedelta(minutes=4),
        last_fd_number=999,
        shift=base.state.shift.model_copy(update={"receipts": 77}) if base.state else None,
    )
    later = replace(
        later, now=T0 + timedelta(minutes=5), state_received_at=T0 + timedelta(minutes=4),
        agent_last_seen=T0 + timedelta(minutes=4),
    )
    assert rule_inputs_key(later) == rule_inputs_key(base)
    # …and indeed the rules find the same for both.
    def found(inp: RuleInput) -> list[tuple[str, str]]:
        return [(c.rule.value, c.severity.label) for c in evaluate_all(inp, Thresholds())]

    assert found(later) == found(base) != []
    # The agent silent for those four minutes instead is another key (the sweep's case, not ingest's).
    assert rule_inputs_key(replace(later, agent_last_seen=T0)) != rule_inputs_key(base)


def test_anything_a_rule_reads_changes_the_key() -> None:
    base = _input()
    assert base.state is not None
    changed = [
        _input(ofd=base.state.ofd.model_copy(update={"unsent_count": 4})),
        _input(register_clock=kit.REGISTER_CLOCK + timedelta(minutes=3)),  # the clock drifted
        _input(fn=base.state.fn.model_copy(update={"valid_until": base.state.fn.valid_until - timedelta(days=1)})),
        _input(shift=base.state.shift.model_copy(update={"status": kit.ShiftStatus.CLOSED})),
        replace(base, agent_online=False),
        replace(base, agent_last_seen=T0 + timedelta(seconds=5)),
        replace(base, link_up=False),
    ]
    for other in changed:
        assert rule_inputs_key(other) != rule_inputs_key(base)


def test_a_poll_time_after_now_is_not_reduced() -> None:
    assert rule_inputs_key(replace(_input(), polled_at=T0 + timedelta(hours=1))) is None
    # The agent's own read_at is its clock's word only: no rule reads it when the arrival is known.
    assert rule_inputs_key(_input(read_at=T0 + timedelta(hours=1))) == rule_inputs_key(_input())


def test_arrival_time_counts_when_the_poll_time_is_unknown() -> None:
    base = _input(read_at=None)
    assert rule_inputs_key(replace(base, state_received_at=T0 - timedelta(seconds=1))) != rule_inputs_key(base)
    assert rule_inputs_key(replace(RuleInput(register_id="r-1", now=T0), now=T0 + timedelta(hours=1))) == rule_inputs_key(
        RuleInput(register_id="r-1", now=T0.astimezone(UTC))
    )


def test_times_may_drift_a_little_since_the_last_evaluation() -> None:
    base = _input()
    assert base.agent_last_seen is not None and base.state is not None and base.state.register_clock is not None
    seen_later = replace(base, agent_last_seen=base.agent_last_seen + DRIFT)
    assert same_verdict(rule_inputs_key(base), rule_inputs_key(seen_later))
    assert not same_verdict(rule_inputs_key(base), rule_inputs_key(replace(seen_later, agent_last_seen=T0 + 2 * DRIFT)))
    clock_slips = _input(register_clock=base.state.register_clock + DRIFT / 2)
    assert same_verdict(rule_inputs_key(base), rule_inputs_key(clock_slips))
    clock_drifted = _input(register_clock=base.state.register_clock + timedelta(minutes=3))
    assert not same_verdict(rule_inputs_key(base), rule_inputs_key(clock_drifted))
    assert not same_verdict(rule_inputs_key(base), rule_inputs_key(replace(base, agent_online=False)))
    assert not same_verdict(None, rule_inputs_key(base))


def test_with_state_is_the_key_of_the_inputs_rebuilt() -> None:
    base = replace(_input(), polled_at=T0)
    assert base.state is not None
    for state in (base.state.model_copy(update={"last_fd_number": 5}),
                  base.state.model_copy(update={"ofd": base.state.ofd.model_copy(update={"unsent_count": 4})}),
                  base.state.model_copy(update={"fn": base.state.fn.model_copy(update={"warning_flags": 1})})):
        assert state is not None
        later = T0 + timedelta(seconds=2)
        rebuilt = replace(base, state=state, state_received_at=later, polled_at=later, agent_last_seen=later)
        key = rule_inputs_key(base)
        assert key is not None
        assert with_state(key, state, received_at=later, polled_at=later, agent_last_seen=later, now=base.now) == (
            rule_inputs_key(rebuilt)
        )


def _reduced(state: RegisterState) -> RegisterState:
    """The state as the rules see it (rule-blind fields reset): the reference ``_projected`` keeps."""
    return state.model_copy(update={
        "read_at": None, "register_clock": None, "last_fd_number": None,
        "shift": state.shift.model_copy(update={"receipts": None}),
    })  # fmt: skip


class _OtherFn(FnState):
    """Same fields as ``FnState``, another type: a nested part of another type is a change."""


def _variants(base: RegisterState) -> list[RegisterState]:
    link = OfdLinkCheck(host="ofd.example", port=7777, resolved=True, connected=True, checked_at=T0)
    ofd_with_link = base.ofd.model_copy(update={"link_check": link})
    return [
        base,
        base.model_copy(update={"last_fd_number": 5, "read_at": T0 + timedelta(seconds=9)}),  # rule-blind
        base.model_copy(update={"shift": base.shift.model_copy(update={"receipts": 99})}),  # rule-blind
        base.model_copy(update={"shift": base.shift.model_copy(update={"number": 8})}),
        base.model_copy(update={"firmware": "C.2"}),
        base.model_copy(update={"fn": base.fn.model_copy(update={"warnings": ["a"]})}),
        base.model_copy(update={"fn": _OtherFn(**dict(base.fn))}),
        base.model_copy(update={"ofd": ofd_with_link}),
        base.model_copy(update={"ofd": ofd_with_link.model_copy(update={"link_check": link.model_copy(update={"connected": False})})}),
        base.model_copy(update={"device": base.device.model_copy(update={"fn_errors": [0x15]})}),
        base.model_copy(update={"device": base.device.model_copy(update={"fn_errors": [0x15]})}),  # equal, not identical
    ]  # fmt: skip


def test_the_projection_is_equal_exactly_when_the_reduced_states_are() -> None:
    states = _variants(kit.register_state(unsent=3, oldest_unsent_age=timedelta(days=20)))
    for a in states:
        for b in states:
            reduced_equal = type(a.fn) is type(b.fn) and _reduced(a) == _reduced(b)
            assert (_projected(a) == _projected(b)) is reduced_equal, (a, b)


def test_still_same_verdict_is_same_verdict_on_the_key_with_state() -> None:
    base = replace(_input(), polled_at=T0)
    assert base.state is not None
    key = rule_inputs_key(base)
    stateless = rule_inputs_key(RuleInput(register_id="r-1", now=T0, agent_last_seen=T0))
    states = [
        *_variants(base.state),
        base.state.model_copy(update={"register_clock": None}),
        base.state.model_copy(update={"register_clock": kit.REGISTER_CLOCK + DRIFT / 2}),
        base.state.model_copy(update={"register_clock": kit.REGISTER_CLOCK + 3 * DRIFT}),
    ]
    moscow = timezone(timedelta(hours=3))
    # Polls in UTC and in another zone; the last ones after ``now``.
    moments = [T0, T0 + DRIFT, (T0 + DRIFT).astimezone(moscow), T0 + 2 * DRIFT, T0 + timedelta(hours=1),
               (T0 + timedelta(hours=1)).astimezone(moscow)]  # fmt: skip
    for old in (key, stateless, None):
        for state in states:
            for polled in moments:
                for seen in (None, T0, T0 + 2 * DRIFT):
                    times = {"received_at": polled, "polled_at": polled, "agent_last_seen": seen, "now": base.now}
                    expected = old is not None and same_verdict(old, with_state(old, state, **times))
                    assert still_same_verdict(old, state, **times) is expected, (old, state, times)


# --- the engine skipping ingest-triggered evaluations (SQLite and PostgreSQL) ------------------


def _ingest(
    engine: sa.Engine, seq: int, *, unsent: int = 40, receipts: int = 3, writer: IngestWriter | None = None
) -> dict[str, FreshState]:
    state = kit.register_state(unsent=unsent, oldest_unsent_age=timedelta(days=20), receipts=receipts)
    writer = writer or IngestWriter(engine, kit.FakeDownlink())
    result = writer.process([kit.inbound(*kit.state_msg("agent-a", "kkt-1", 1, seq, state), at=T0)])
    return result.fresh_states


def _statements(engine: sa.Engine) -> list[str]:
    seen: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda _c, _cur, statement, *_rest: seen.append(statement))
    return seen


def test_a_fresh_state_that_changes_nothing_is_skipped_without_the_join(engine: sa.Engine) -> None:
    alerts = AlertEngine(engine)
    alerts.evaluate(["kkt-1"], now=T0, skip_unchanged=True, states=_ingest(engine, 1))
    fresh = _ingest(engine, 2, receipts=50)
    statements = _statements(engine)
    assert alerts.evaluate(["kkt-1"], now=T0 + timedelta(seconds=5), skip_unchanged=True, states=fresh).registers == 0
    assert statements and not any(" JOIN " in statement.upper() for statement in statements)
    # A real change still goes through the database and is evaluated.
    fresh = _ingest(engine, 3, unsent=0)
    assert alerts.evaluate(["kkt-1"], now=T0 + timedelta(seconds=6), skip_unchanged=True, states=fresh).registers == 1


def _evaluated_elsewhere_while_the_agent_looked_offline(engine: sa.Engine, at: datetime) -> None:
    """Another collector process evaluates the register while the agent is stored offline, then
    the agent is back online before the next state: its verdict is on inputs this process never had."""
    with engine.begin() as conn:
        conn.execute(sa.update(agents_table).values(online=False))
    AlertEngine(engine).evaluate(["kkt-1"], now=at)
    with engine.begin() as conn:
        conn.execute(sa.update(agents_table).values(online=True))


def test_the_memory_is_not_trusted_after_another_collector_or_a_status_change(engine: sa.Engine) -> None:
    alerts = AlertEngine(engine)
    alerts.evaluate(["kkt-1"], now=T0, skip_unchanged=True, states=_ingest(engine, 1))
    _evaluated_elsewhere_while_the_agent_looked_offline(engine, T0 + timedelta(seconds=1))
    fresh = _ingest(engine, 2, receipts=9)
    assert alerts.evaluate(["kkt-1"], now=T0 + timedelta(seconds=2), skip_unchanged=True, states=fresh).registers == 1
    # The agent goes offline (stored by this process's writer) while a state of it arrives.
    writer = IngestWriter(engine, kit.FakeDownlink())
    worker = EvaluationWorker(alerts)
    worker.changed({"kkt-1"}, (), _ingest(engine, 3, receipts=10, writer=writer))
    offline = writer.process([kit.inbound(*kit.status_msg("agent-a", 1, "offline"), at=T0)])
    worker.changed(offline.changed_registers, offline.status_agents, offline.fresh_states)
    report = worker.run_changed()
    assert report is not None and report.registers == 1


def test_ingest_triggers_skip_registers_whose_rule_inputs_did_not_change(engine: sa.Engine) -> None:
    alerts = AlertEngine(engine)
    _ingest(engine, 1)
    assert alerts.evaluate(["kkt-1"], now=T0, skip_unchanged=True).registers == 1
    _ingest(engine, 2, receipts=50)  # only the receipt counter moved
    assert alerts.evaluate(["kkt-1"], now=T0 + timedelta(seconds=5), skip_unchanged=True).registers == 0
    assert alerts.evaluate(["kkt-1"], now=T0 + timedelta(seconds=6)).registers == 1  # a sweep never skips
    _ingest(engine, 3, unsent=0)  # the backlog went out: must be evaluated (and the alert cleared)
    assert alerts.evaluate(["kkt-1"], now=T0 + timedelta(seconds=7), skip_unchanged=True).registers == 1


def test_a_verdict_another_collector_computed_on_other_inputs_is_not_trusted(engine: sa.Engine) -> None:
    alerts = AlertEngine(engine)
    _ingest(engine, 1)
    alerts.evaluate(["kkt-1"], now=T0, skip_unchanged=True)
    _evaluated_elsewhere_while_the_agent_looked_offline(engine, T0 + timedelta(seconds=1))
    _ingest(engine, 2, receipts=9)
    assert alerts.evaluate(["kkt-1"], now=T0 + timedelta(seconds=2), skip_unchanged=True).registers == 1
    with engine.connect() as conn:
        assert conn.execute(sa.select(register_state.c.evaluated_at)).scalar_one() == T0 + timedelta(seconds=2)


def test_a_verdict_another_collector_computed_on_the_same_inputs_is_trusted(engine: sa.Engine) -> None:
    """Under a shared subscription consecutive messages of a register go to different collectors:
    each takes the other's verdict when its ``verdict_key`` shows the same inputs — from memory with
    a fresh state, and through the join for a register this process never evaluated."""
    alerts, other = AlertEngine(engine), AlertEngine(engine)
    alerts.evaluate(["kkt-1"], now=T0, skip_unchanged=True, states=_ingest(engine, 1))
    other.evaluate(["kkt-1"], now=T0 + timedelta(seconds=1))  # another process, same db and inputs
    assert alerts.evaluate(
        ["kkt-1"], now=T0 + timedelta(seconds=2), skip_unchanged=True, states=_ingest(engine, 2, receipts=9)
    ).registers == 0
    newcomer = AlertEngine(engine)  # no memory of this register at all
    _ingest(engine, 3, receipts=10)
    assert newcomer.evaluate(["kkt-1"], now=T0 + timedelta(seconds=3), skip_unchanged=True).registers == 0
    with engine.connect() as conn:  # the verdict stayed the other collector's
        assert conn.execute(sa.select(register_state.c.evaluated_at)).scalar_one() == T0 + timedelta(seconds=1)
    # …and the newcomer adopted it: its next fresh state is checked in memory, without the join.
    fresh = _ingest(engine, 4, receipts=11)
    statements = _statements(engine)
    assert newcomer.evaluate(["kkt-1"], now=T0 + timedelta(seconds=4), skip_unchanged=True, states=fresh).registers == 0
    assert statements and not any(" JOIN " in statement.upper() for statement in statements)
    with engine.begin() as conn:  # another collector's verdict on other inputs (an unreadable key) is not trusted
        conn.execute(sa.update(register_state).values(verdict_key="0" * 32 + ";;;", evaluated_at=T0 + timedelta(seconds=3.5)))
    assert newcomer.evaluate(["kkt-1"], now=T0 + timedelta(seconds=4), skip_unchanged=True).registers == 1


def test_a_change_another_collector_evaluated_is_adopted_from_memory_without_the_join(engine: sa.Engine) -> None:
    """The backlog changes in a message that reaches the other collector, which evaluates it; this
    collector's next message of the register carries the same change. Its verdict is the other's:
    taken from memory (fresh state + what this process knew of the rest), not through the join."""
    alerts, other = AlertEngine(engine), AlertEngine(engine)
    alerts.evaluate(["kkt-1"], now=T0, skip_unchanged=True, states=_ingest(engine, 1, unsent=40))
    changed = _ingest(engine, 2, unsent=0)  # the backlog went out: dealt to the other collector
    assert other.evaluate(["kkt-1"], now=T0 + timedelta(seconds=1), skip_unchanged=True, states=changed).registers == 1
    statements = _statements(engine)
    fresh = _ingest(engine, 3, unsent=0, receipts=9)
    del statements[:]  # what the evaluation alone runs
    assert alerts.evaluate(["kkt-1"], now=T0 + timedelta(seconds=2), skip_unchanged=True, states=fresh).registers == 0
    assert statements and not any(" JOIN " in statement.upper() for statement in statements)
    with engine.connect() as conn:  # the verdict stayed the other collector's
        assert conn.execute(sa.select(register_state.c.evaluated_at)).scalar_one() == T0 + timedelta(seconds=1)
    # Adopted: the next message with nothing new is in memory too; one with another change is evaluated.
    assert alerts.evaluate(
        ["kkt-1"], now=T0 + timedelta(seconds=3), skip_unchanged=True, states=_ingest(engine, 4, unsent=0, receipts=10)
    ).registers == 0
    assert alerts.evaluate(
        ["kkt-1"], now=T0 + timedelta(seconds=4), skip_unchanged=True, states=_ingest(engine, 5, unsent=7)
    ).registers == 1


def test_the_inputs_digest_is_the_same_in_every_collector_process() -> None:
    """Collectors compare digests each computed in its own process: hash randomisation (a set's
    order, ``hash()`` of a string) must not enter it."""
    script = (
        "import sys; sys.path[:0] = sys.argv[1:]\n"
        "from test_ingest_rule_inputs import _input\n"
        "from collector.alerts import Thresholds\n"
        "from collector.ingest.rule_inputs import inputs_digest, rule_inputs_key\n"
        "print(inputs_digest(Thresholds(), rule_inputs_key(_input())))\n"
    )
    here, root = str(Path(__file__).parent), str(Path(__file__).parents[2])
    digests = {
        subprocess.run(
            [sys.executable, "-c", script, here, root], env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }
    key = rule_inputs_key(_input())
    assert key is not None
    assert digests == {inputs_digest(Thresholds(), key)}
    other = rule_inputs_key(replace(_input(), agent_online=False))
    assert other is not None and inputs_digest(Thresholds(), other) not in digests
