"""``AlertEngine``: evaluates registers chunk by chunk, each chunk one short write transaction, keeping
pending alerts and the last committed rule inputs in memory."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from collector.alerts import (
    NOTIFIED_CHANGES,
    AlertChange,
    AlertRecord,
    AlertStatus,
    Condition,
    RuleId,
    RuleInput,
    SellStatus,
    Severity,
    Thresholds,
    Verdict,
    apply_conditions,
    evaluate_all,
    fix_text,
    sell_verdict,
)
from collector.alerts.quiet import quiet_until
from collector.ingest import bulk
from collector.ingest.bulk import SUPERSEDED_SESSION
from collector.ingest.company_thresholds import CompanyThresholds
from collector.ingest.engine.recent import Evaluated, StoredInputs, stored_inputs, unchanged_in_memory
from collector.ingest.engine.subjects import (
    HeldState,
    KnownState,
    Subject,
    build_inputs,
    load_subjects,
    stored_outcomes,
)
from collector.ingest.engine.write_back import (
    change_row,
    record_from_row,
    register_evaluation,
    row_from_record,
    same_outcome,
)
from collector.ingest.rule_inputs import (
    DRIFT,
    RuleInputsKey,
    inputs_digest,
    rule_inputs_key,
    stored_verdict_holds,
    verdict_key,
)
from collector.ingest.writes import FreshState
from collector.metrics import CollectorMetrics
from collector.notify import AlertNotice
from collector.storage import register_summary
from collector.storage import repository as repo
from collector.storage.dialect import member_of
from collector.storage.engine import begin_write
from collector.storage.rows import RegisterEvaluation
from collector.storage.schema import alerts, register_state, registers

log = logging.getLogger(__name__)


CHUNK = 200  # registers per evaluation transaction (short, so the ingest writer is not held up on SQLite)
# A quiet period ends this much early: inputs the in-memory checks take as unchanged may differ from
# the evaluated ones by up to DRIFT in each time, against the evaluated or the last sweep's inputs.
QUIET_MARGIN = 2 * DRIFT

Version = tuple[str, int, int]  # a register_state row's (agent_id, session, seq)


@dataclass(frozen=True, slots=True)
class QuietPeriod:
    """Until when a register's outcome stands, and the stored inputs it was told for: while they
    are still stored, sweeps may pass over the register (``AlertEngine._not_quiet``)."""

    until: datetime  # ``alerts.quiet_until`` less ``QUIET_MARGIN``
    evaluated_at: datetime  # the stored verdict's time
    link_up: bool | None
    agent_online: bool | None
    agent_clock_offset: timedelta | None
    agent_seen: bool

    def holds_for(self, row: StoredInputs, version: Version) -> bool:
        """Whether ``row`` is what it was told for, its state version being ``version``."""
        return (
            row.version == version
            and row.evaluated_at == self.evaluated_at
            and row.link_up == self.link_up
            and row.agent_online == self.agent_online
            and row.agent_clock_offset == self.agent_clock_offset
            and row.agent_seen == self.agent_seen
        )


Notify = Callable[[AlertNotice], None]


@dataclass(frozen=True)
class EvaluationReport:
    registers: int
    changes: int
    notices: int
    written: int = 0  # verdict rows rewritten: the others' evaluation gave the stored outcome again


class AlertEngine:
    def __init__(
        self,
        engine: sa.Engine,
        thresholds: Thresholds | None = None,
        *,
        notify: Notify | None = None,
        metrics: CollectorMetrics | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._engine = engine
        self.thresholds = thresholds or Thresholds()
        self.company_thresholds = CompanyThresholds(self.thresholds)  # the defaults with each company's overrides
        self._notify = notify
        self._metrics = metrics or CollectorMetrics()
        self.clock = clock
        # register → rule → its alert held back until the rule's pending period ends; by register,
        # so that each evaluation finds its register's own without scanning every pending alert
        # (all registers have one at once when, say, an OFD goes down). No empty inner dicts.
        self._pending: dict[str, dict[RuleId, AlertRecord]] = {}
        # register → its last committed evaluation here (what it was evaluated on, see recent.py)
        self._evaluated: dict[str, Evaluated] = {}
        # register → its stored state as last parsed here from the row: a sweep reads (and
        # validates) the state document only of the rows that moved since. Each is used only while
        # the row is still its version. (Not the writer's fresh states: a sweep reads what is stored.)
        self._states: dict[str, KnownState] = {}
        # register → until when its outcome can change only with its inputs (``alerts.quiet``,
        # less ``QUIET_MARGIN``), and the state version whose inputs that was told for (or that
        # the in-memory checks found the same since).
        self._quiet: dict[str, tuple[QuietPeriod, Version]] = {}

    def registers_of_agents(self, agent_ids: Collection[str]) -> list[str]:
        if not agent_ids:
            return []
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(registers.c.register_id).where(member_of(conn, registers.c.agent_id, agent_ids)))
            return [r.register_id for r in rows]

    def all_registers(self) -> list[str]:
        with self._engine.connect() as conn:
            return list(conn.execute(sa.select(register_state.c.register_id)).scalars())

    def evaluate(
        self,
        register_ids: Iterable[str],
        now: datetime | None = None,
        *,
        skip_unchanged: bool = False,
        states: Mapping[str, FreshState] | None = None,
        skip_quiet: bool = False,
    ) -> EvaluationReport:
        """Evaluate the registers; ``skip_unchanged`` (ingest triggers) passes over a register whose
        rule inputs equal those of its last evaluation and that has no pending alert (see
        ``rule_inputs``): its verdict would be the same (sweeps do not: time moves it). An
        evaluated register whose outcome is the stored one (``write_back.same_outcome``) is not
        written back: its row keeps the stored evaluation time (``time_to_block_seconds`` too).

        ``states``: parsed states the ingest writer just stored; each is used only while the stored
        row is still that version, so the state JSON is neither read back nor parsed again.

        ``skip_quiet`` (sweeps): passes over a register still in its quiet period (``alerts.quiet``)
        whose stored row, agent and verdict are as this process last knew them. What that does not
        see (an OFD contract or thresholds edited on the web) waits for a sweep without it."""
        ids = sorted(set(register_ids))
        at = now or self.clock()
        fresh = states or {}
        if skip_unchanged:
            ids = self._needing_evaluation(ids, at, fresh)
        if skip_quiet:
            ids = self._not_quiet(ids, at)
        totals = [0, 0, 0, 0]
        for start in range(0, len(ids), CHUNK):
            keys: dict[str, Evaluated] = {}
            quiet: dict[str, tuple[QuietPeriod, Version] | None] = {}
            with begin_write(self._engine) as conn:
                counted = self._evaluate_chunk(
                    conn, ids[start : start + CHUNK], at, keys, skip_unchanged, fresh, quiet
                )
            self._evaluated.update(keys)  # only once committed: a rolled-back verdict must be redone
            for register_id, period in quiet.items():
                if period is None:
                    self._quiet.pop(register_id, None)
                else:
                    self._quiet[register_id] = period
            totals = [a + b for a, b in zip(totals, counted, strict=True)]
        return EvaluationReport(*totals)

    def update_open_alert_gauge(self) -> None:
        with self._engine.connect() as conn:
            counts: dict[str, int] = dict(
                conn.execute(
                    sa.select(alerts.c.severity, sa.func.count()).where(alerts.c.status == "active").group_by(alerts.c.severity)
                ).all()
            )
        for severity in Severity:
            self._metrics.alerts_open.labels(severity=severity.label).set(counts.get(severity.label, 0))

    def forget(self, register_ids: Iterable[str]) -> None:
        """Their agent's status or clock changed: the next evaluation must read them in full."""
        for register_id in register_ids:
            self._evaluated.pop(register_id, None)
            self._quiet.pop(register_id, None)

    def _not_quiet(self, ids: list[str], now: datetime) -> list[str]:
        """``ids`` less the registers still quiet at ``now`` whose stored row (its state version,
        verdict time and link flag) and agent (online flag, clock offset, whether it was seen) are
        those this process knows the stored outcome holds for. A later last-seen time only ends a
        quiet period later."""
        candidates: list[str] = []
        for register_id in ids:
            held = self._quiet.get(register_id)
            if held is not None and now < held[0].until and register_id not in self._pending:
                candidates.append(register_id)
        if not candidates:
            return ids
        quiet: set[str] = set()
        with self._engine.connect() as conn:
            for start in range(0, len(candidates), CHUNK):
                for row in stored_inputs(conn, candidates[start : start + CHUNK]):
                    period, version = self._quiet[row.register_id]
                    if period.holds_for(row, version):
                        quiet.add(row.register_id)
        return [register_id for register_id in ids if register_id not in quiet]

    def _needing_evaluation(self, ids: list[str], now: datetime, fresh: Mapping[str, FreshState]) -> list[str]:
        """The registers whose rule inputs changed, found on a read-only connection: an unchanged
        register then costs no write transaction (on SQLite that lock is the ingest writer's).
        Registers with a fresh state are first checked in memory (``recent``), the rest joined."""
        needed: list[str] = []
        pending = self._pending.keys()  # the registers with a pending alert
        known = {
            register_id: self._evaluated[register_id]
            for register_id in ids
            if register_id in fresh and register_id in self._evaluated and register_id not in pending
        }
        with self._engine.connect() as conn:
            skipped: dict[str, Evaluated] = {}
            for start in range(0, len(ids), CHUNK):
                chunk = {register_id: known[register_id] for register_id in ids[start : start + CHUNK] if register_id in known}
                unchanged = unchanged_in_memory(conn, chunk, fresh, now)
                for register_id, evaluated in unchanged.items():
                    if evaluated is known[register_id]:
                        held = fresh[register_id]
                        self._still_known(register_id, (held.agent_id, held.session, held.seq))
                    else:  # another collector's verdict on new inputs, adopted: the old period is not theirs
                        self._quiet.pop(register_id, None)
                skipped.update(unchanged)
            self._evaluated.update(skipped)  # verdicts of other collectors adopted (recent.py)
            rest = [register_id for register_id in ids if register_id not in skipped]
            for start in range(0, len(rest), CHUNK):
                subjects = load_subjects(conn, rest[start : start + CHUNK], fresh)
                for subject, inp, thresholds in build_inputs(conn, subjects, now, self.company_thresholds):
                    if subject.register_id in pending or not self._unchanged(subject, inp, thresholds):
                        needed.append(subject.register_id)
        return needed

    def _still_known(self, register_id: str, version: Version) -> None:
        """The inputs of this state version were found to give the stored outcome, as the last
        evaluation's did (within ``DRIFT``): its quiet period stands for this version too."""
        period = self._quiet.get(register_id)
        if period is not None:
            self._quiet[register_id] = (period[0], version)  # a new tuple: cheaper than a new record

    def _unchanged(self, subject: Subject, inp: RuleInput, thresholds: Thresholds) -> bool:
        # The stored verdict must also be ours (the evaluated_at we wrote), or computed on these
        # same inputs (its verdict_key): under a shared subscription another collector may have
        # evaluated this register since, on other inputs.
        key = rule_inputs_key(inp)
        last = self._evaluated.get(subject.register_id)
        if last is not None and last.same_verdict(thresholds, key, subject.evaluated_at, subject.verdict_key):
            if subject.state_agent_id is not None and subject.state_version is not None:
                self._still_known(subject.register_id, (subject.state_agent_id, *subject.state_version))
            else:
                self._quiet.pop(subject.register_id, None)
            return True
        if key is None or subject.evaluated_at is None:
            return False
        digest = inputs_digest(thresholds, key)
        if not stored_verdict_holds(subject.verdict_key, digest, key.times):
            return False
        # Adopted as if this process had evaluated it (the stored evaluated_at is the verdict's), so
        # the register's next messages here take the in-memory path, not this join again.
        self._quiet.pop(subject.register_id, None)  # told of our last evaluation's inputs, not these
        self._evaluated[subject.register_id] = Evaluated(
            thresholds, key, subject.evaluated_at, inp, subject.state_agent_id, digest
        )
        return True

    # --- one chunk ----------------------------------------------------------------------------

    def _evaluate_chunk(
        self,
        conn: sa.Connection,
        ids: list[str],
        now: datetime,
        keys: dict[str, Evaluated],
        skip_unchanged: bool,
        fresh: Mapping[str, FreshState],
        quiet: dict[str, tuple[QuietPeriod, Version] | None],
    ) -> tuple[int, int, int, int]:
        held = self._states
        given: dict[str, HeldState] = {
            register_id: fresh.get(register_id) or held[register_id]
            for register_id in ids
            if register_id in fresh or register_id in held
        }
        subjects = load_subjects(conn, ids, given)
        outcomes = self._stored_outcomes(conn, subjects)
        stored: dict[str, dict[RuleId, AlertRecord]] = {}
        alert_ids: dict[tuple[str, RuleId], int] = {}
        for row in repo.load_alerts(conn, register_ids=[s.register_id for s in subjects]):
            record = record_from_row(row)
            if record is not None and row.id is not None:
                stored.setdefault(row.register_id, {})[record.rule] = record
                alert_ids[(row.register_id, record.rule)] = row.id
        changes = notices = evaluated = 0
        verdicts: dict[str, RegisterEvaluation] = {}
        alerts_written: set[str] = set()  # their summary rows' problem flag may have moved
        # The registers with a pending alert. A live view: the loop changes only the entries of the
        # registers it has done (each comes once), so for each it is the set as the chunk began.
        pending_registers = self._pending.keys()
        for subject, inp, thresholds in build_inputs(conn, subjects, now, self.company_thresholds):
            # Checked again inside the transaction: the inputs may have moved since the read.
            if skip_unchanged and subject.register_id not in pending_registers and self._unchanged(subject, inp, thresholds):
                continue
            evaluated += 1
            inputs_key = rule_inputs_key(inp)
            last = self._evaluated.get(subject.register_id)
            digest = None if inputs_key is None else _digest(thresholds, inputs_key, last)
            records = dict(stored.get(subject.register_id, {}))
            for rule, pending in self._pending.get(subject.register_id, {}).items():
                if rule not in records:
                    records[rule] = pending
            conditions = evaluate_all(inp, thresholds)
            results = apply_conditions(
                records, conditions, now, register_id=subject.register_id,
                thresholds=thresholds,
            )
            worst: Severity | None = None
            for rule, (record, rule_changes) in results.items():
                self._release(subject.register_id, rule)
                if record is None or record.status is AlertStatus.PENDING:
                    if record is not None:
                        self._pending.setdefault(subject.register_id, {})[rule] = record
                    continue
                if record.status is AlertStatus.ACTIVE:
                    worst = record.severity if worst is None else max(worst, record.severity)
                if record is records.get(rule):
                    continue  # unchanged: no write
                # The summary is refreshed once below, in one sorted pass with every verdict.
                alert_id = repo.upsert_alert(conn, row_from_record(record), refresh_summary=False)
                alerts_written.add(subject.register_id)
                for change in rule_changes:
                    repo.add_alert_history(conn, change_row(alert_id, change))
                changes += len(rule_changes)
                notices += self._send_notices(subject, record, rule_changes)
            stored_key = None if inputs_key is None or digest is None else verdict_key(digest, inputs_key)
            verdict = sell_verdict(inp, thresholds, conditions)
            evaluation = register_evaluation(verdict, worst, now, stored_key)
            stored_outcome = outcomes.get(subject.register_id)
            written = stored_outcome is None or not same_outcome(stored_outcome, evaluation)
            stored_at = now if written or stored_outcome is None else stored_outcome.evaluated_at
            quiet[subject.register_id] = self._quiet_period(
                subject, inp, thresholds, conditions, verdict, results, stored_at
            )
            if written or stored_outcome is None:
                verdicts[subject.register_id] = evaluation
                keys[subject.register_id] = Evaluated(  # a None key never matches
                    thresholds, inputs_key, now, inp, subject.state_agent_id, digest, evaluation
                )
                continue
            # Not rewritten: a sweep of a quiet fleet would rewrite every row. The stored time stays
            # the verdict's, and the in-memory checks compare theirs with it. Our last evaluation,
            # if it is the stored one, stays too: its key (inputs aged as at a message) matches the
            # next message, where this one's (aged by the sweep's time) would not.
            if last is None or last.evaluated_at != stored_at:
                keys[subject.register_id] = Evaluated(
                    thresholds, inputs_key, stored_at, inp, subject.state_agent_id, digest, stored_outcome
                )
        self._hold_states(subjects, given, keys)
        bulk.set_evaluations(conn, verdicts)
        # Verdict, severity and alerts: the list's keys; an unchanged register's row is as it was.
        register_summary.refresh_registers(conn, verdicts.keys() | alerts_written)
        self._metrics.evaluations.inc(evaluated)
        return evaluated, changes, notices, len(verdicts)

    def _quiet_period(
        self,
        subject: Subject,
        inp: RuleInput,
        thresholds: Thresholds,
        conditions: list[Condition],
        verdict: Verdict,
        results: Mapping[RuleId, tuple[AlertRecord | None, list[AlertChange]]],
        stored_at: datetime,
    ) -> tuple[QuietPeriod, Version] | None:
        """Until when this evaluation's outcome stands while its inputs do: only for a register
        with nothing found, nothing pending and no threat (any finding's details move with time)."""
        if conditions or verdict.status is not SellStatus.NO_THREAT or subject.register_id in self._pending:
            return None
        if subject.state_agent_id is None or subject.state_version is None:
            return None
        for record, _ in results.values():
            if record is not None and record.status is not AlertStatus.CLEARED:
                return None
            if record is not None and record.pending_since is not None:
                return None
        until = quiet_until(inp, thresholds)
        if until is None:
            return None
        period = QuietPeriod(
            until - QUIET_MARGIN,
            stored_at,
            inp.link_up,
            inp.agent_online,
            inp.agent_clock_offset,
            inp.agent_last_seen is not None,
        )
        return period, (subject.state_agent_id, *subject.state_version)

    def _hold_states(
        self, subjects: list[Subject], given: Mapping[str, HeldState], keys: Mapping[str, Evaluated]
    ) -> None:
        """Keep the states parsed from stored rows for the next evaluation of their registers, as
        far as the in-memory evaluations keep them anyway (a state is ~6 KB: no second copy per
        register); drop the others, those the writer handed over among them."""
        held = self._states
        for subject in subjects:
            register_id, state, version = subject.register_id, subject.state, subject.state_version
            kept = keys.get(register_id) or self._evaluated.get(register_id)
            known = given.get(register_id)
            handed = known is not None and known.state is state and known is not held.get(register_id)
            if (
                kept is None
                or state is None
                or kept.inputs.state is not state
                or version is None
                or subject.state_agent_id is None
                or version[0] == SUPERSEDED_SESSION  # superseded rows are no version of their own
                or handed  # the writer's: a sweep reads what is stored
            ):
                held.pop(register_id, None)
            elif known is None or known.state is not state:
                held[register_id] = KnownState(subject.state_agent_id, version[0], version[1], state)

    def _stored_outcomes(self, conn: sa.Connection, subjects: list[Subject]) -> dict[str, RegisterEvaluation]:
        """What is stored of each register's last evaluation: known in memory when the stored one
        is this process's (its time), else read."""
        known: dict[str, RegisterEvaluation] = {}
        unknown: list[str] = []
        for subject in subjects:
            if subject.evaluated_at is None:
                continue  # never evaluated
            last = self._evaluated.get(subject.register_id)
            if last is not None and last.outcome is not None and last.evaluated_at == subject.evaluated_at:
                known[subject.register_id] = last.outcome
            else:
                unknown.append(subject.register_id)
        known.update(stored_outcomes(conn, unknown))
        return known

    def _release(self, register_id: str, rule: RuleId) -> None:
        held = self._pending.get(register_id)
        if held is not None and held.pop(rule, None) is not None and not held:
            del self._pending[register_id]

    def _send_notices(self, subject: Subject, record: AlertRecord, rule_changes: list[AlertChange]) -> int:
        if self._notify is None or not any(c.kind in NOTIFIED_CHANGES for c in rule_changes):
            return 0
        notice = AlertNotice(
            tenant_id=str(subject.tenant_id),
            store_node_id=str(subject.node_id) if subject.node_id is not None else "",
            store_name=subject.node_name or "",
            register_id=subject.register_id,
            register_serial=subject.serial or subject.register_id,
            rule=record.rule.value,
            severity=record.severity.label,
            status="resolved" if record.status is AlertStatus.CLEARED else "firing",
            message=record.message,
            blocks_at=record.blocks_at,
            fix=fix_text(record.rule, record.details),
        )
        try:
            self._notify(notice)
        except Exception:  # a notifier problem must never stop alert evaluation
            log.exception("handing alert notice for %s/%s to the notifier failed", subject.register_id, record.rule)
            return 0
        return 1


def _digest(thresholds: Thresholds, key: RuleInputsKey, last: Evaluated | None) -> str:
    """``inputs_digest``; the last evaluation's when it was of the same thresholds and exact inputs
    (a sweep's usual case: hashing their text costs more than comparing them)."""
    if last is None or last.digest is None or last.thresholds is not thresholds or last.key is None:
        return inputs_digest(thresholds, key)
    return last.digest if last.key.exact == key.exact else inputs_digest(thresholds, key)
