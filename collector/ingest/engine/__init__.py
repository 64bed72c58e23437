"""Alert engine wiring: stored state → ``RuleInput`` → rules → lifecycle → stored alerts, history,
time to block and worst severity, and notices for the notification dispatcher.

Two triggers, one code path (:meth:`AlertEngine.evaluate`):

* after each committed ingest batch, for the registers whose state/link changed and every register
  of an agent whose online status changed (:class:`EvaluationWorker` coalesces them, so the ingest
  writer never waits for rules);
* a **periodic sweep** of every register (default 15 s), because time-driven rules must fire with
  no message arriving: a shift crossing 24 h, a backlog crossing 30 days, an agent gone silent
  without an LWT.

Pending alerts (a condition inside its rule's flapping guard) were never raised and the storage
has no status for them, so they live in memory; a restart merely restarts their pending period.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError

from collector.alerts import (
    NOTIFIED_CHANGES,
    AlertChange,
    AlertRecord,
    AlertStatus,
    OfdContract,
    RuleId,
    RuleInput,
    Severity,
    Thresholds,
    Verdict,
    apply_conditions,
    evaluate_all,
    fix_text,
    sell_verdict,
)
from collector.ingest import bulk
from collector.ingest.company_thresholds import CompanyThresholds
from collector.ingest.rule_inputs import rule_inputs_key
from collector.ingest.writes import FreshState
from collector.metrics import CollectorMetrics
from collector.notify import AlertNotice
from collector.storage import repository as repo
from collector.storage.engine import begin_write
from collector.storage.rows import AlertChangeRow, AlertRow, RegisterEvaluation
from collector.storage.schema import agents, alerts, events, nodes, register_state, registers
from protocol.kkt.state import RegisterState

log = logging.getLogger(__name__)

CHUNK = 200  # registers per evaluation transaction (short, so the ingest writer is not held up on SQLite)
# Lifecycle fields AlertRow has no column for; kept in the alert's details.
_LIFECYCLE_KEYS = ("occurrence", "blocks_at")

Notify = Callable[[AlertNotice], None]


@dataclass(frozen=True)
class EvaluationReport:
    registers: int
    changes: int
    notices: int


@dataclass(frozen=True)
class _Subject:
    register_id: str
    tenant_id: int
    node_id: int | None
    node_name: str | None
    serial: str | None
    state: RegisterState | None
    received_at: datetime | None
    polled_at: datetime | None  # when the state was read, on the collector's clock
    link_up: bool | None
    agent_online: bool | None
    agent_last_seen: datetime | None
    agent_clock_offset: float | None = None
    evaluated_at: datetime | None = None


def _record_from_row(row: AlertRow) -> AlertRecord | None:
    try:
        rule = RuleId(row.rule)
    except ValueError:
        return None
    details = dict(row.details)
    occurrence = int(details.pop("occurrence", 1) or 1)
    blocks_raw = details.pop("blocks_at", None)
    return AlertRecord(
        register_id=row.register_id,
        rule=rule,
        occurrence=occurrence,
        severity=Severity.parse(row.severity),
        status=AlertStatus(row.status),
        acknowledged=row.acknowledged,
        acked_by=row.acked_by,
        acked_at=row.acked_at,
        assignee=row.assignee,
        started_at=row.started_at,
        updated_at=row.updated_at,
        cleared_at=row.cleared_at,
        silenced_until=row.silenced_until,
        message=row.message,
        details=details,
        blocks_at=datetime.fromisoformat(blocks_raw) if isinstance(blocks_raw, str) else None,
        history=[],
    )


def _row_from_record(record: AlertRecord) -> AlertRow:
    return AlertRow(
        register_id=record.register_id,
        rule=record.rule.value,
        severity=record.severity.label,
        status=record.status.value,
        started_at=record.started_at,
        updated_at=record.updated_at,
        acknowledged=record.acknowledged,
        acked_by=record.acked_by,
        acked_at=record.acked_at,
        assignee=record.assignee,
        cleared_at=record.cleared_at,
        silenced_until=record.silenced_until,
        message=record.message,
        details={
            **record.details,
            "occurrence": record.occurrence,
            "blocks_at": record.blocks_at.isoformat() if record.blocks_at else None,
        },
    )


def register_evaluation(verdict: Verdict, worst: Severity | None, now: datetime) -> RegisterEvaluation:
    """What lists sort and show: the verdict, and its stop (or since when it cannot sell) as ``blocks_at``."""
    floor = verdict.least_severity
    if floor is not None and (worst is None or worst < floor):
        worst = floor
    return RegisterEvaluation(
        worst_severity=None if worst is None else worst.label,
        time_to_block_seconds=None if verdict.at is None else int((verdict.at - now).total_seconds()),
        blocks_at=verdict.at,
        evaluated_at=now,
        sell_status=verdict.status.value,
        sell_rank=verdict.rank,
        verdict=verdict.model_dump(mode="json"),
    )


def _change_row(alert_id: int, change: AlertChange) -> AlertChangeRow:
    return AlertChangeRow(
        alert_id=alert_id,
        at=change.at,
        action=change.kind.value,
        actor=change.actor,
        details={"from": change.from_value, "to": change.to_value, "text": change.text},
    )


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
        self._pending: dict[tuple[str, RuleId], AlertRecord] = {}
        # register → (thresholds, rule-input key, evaluated_at) of its last committed evaluation here
        self._evaluated: dict[str, tuple[Thresholds, Any, datetime]] = {}

    def registers_of_agents(self, agent_ids: Collection[str]) -> list[str]:
        if not agent_ids:
            return []
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(registers.c.register_id).where(registers.c.agent_id.in_(list(agent_ids))))
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
    ) -> EvaluationReport:
        """Evaluate the registers; ``skip_unchanged`` (ingest triggers) passes over a register whose
        rule inputs equal those of its last evaluation and that has no pending alert (see
        ``rule_inputs``): its verdict would be the same. Sweeps never skip.

        ``states``: parsed states the ingest writer just stored; each is used only while the stored
        row is still that version, so the state JSON is neither read back nor parsed again."""
        ids = sorted(set(register_ids))
        at = now or self.clock()
        fresh = states or {}
        if skip_unchanged:
            ids = self._needing_evaluation(ids, at, fresh)
        totals = [0, 0, 0]
        for start in range(0, len(ids), CHUNK):
            keys: dict[str, tuple[Thresholds, Any, datetime]] = {}
            with begin_write(self._engine) as conn:
                counted = self._evaluate_chunk(conn, ids[start : start + CHUNK], at, keys, skip_unchanged, fresh)
            self._evaluated.update(keys)  # only once committed: a rolled-back verdict must be redone
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

    def _needing_evaluation(self, ids: list[str], now: datetime, fresh: Mapping[str, FreshState]) -> list[str]:
        """The registers whose rule inputs changed, found on a read-only connection: an unchanged
        register then costs no write transaction (on SQLite that lock is the ingest writer's)."""
        needed: list[str] = []
        with self._engine.connect() as conn:
            for start in range(0, len(ids), CHUNK):
                pending = {register_id for register_id, _ in self._pending}
                for subject, inp, thresholds in self._inputs(conn, self._load_subjects(conn, ids[start : start + CHUNK], fresh), now):
                    if subject.register_id in pending or not self._unchanged(subject, inp, thresholds):
                        needed.append(subject.register_id)
        return needed

    def _unchanged(self, subject: _Subject, inp: RuleInput, thresholds: Thresholds) -> bool:
        # The stored verdict must also be ours (the evaluated_at we wrote): under a shared
        # subscription another collector may have evaluated this register since.
        key = rule_inputs_key(inp)
        return key is not None and self._evaluated.get(subject.register_id) == (thresholds, key, subject.evaluated_at)

    def _inputs(
        self, conn: sa.Connection, subjects: list[_Subject], now: datetime
    ) -> list[tuple[_Subject, RuleInput, Thresholds]]:
        contracts = repo.load_contracts(conn, [s.register_id for s in subjects])
        companies = self.company_thresholds.for_tenants(conn, {s.tenant_id for s in subjects})
        down_since = self._link_down_since(conn, [s.register_id for s in subjects if s.link_up is False])
        inputs = []
        for subject in subjects:
            contract = contracts.get(subject.register_id)
            inp = RuleInput(
                register_id=subject.register_id,
                now=now,
                state=subject.state,
                state_received_at=subject.received_at,
                polled_at=subject.polled_at,
                agent_online=subject.agent_online,
                agent_last_seen=subject.agent_last_seen,
                link_up=subject.link_up,
                link_down_since=down_since.get(subject.register_id),
                contract=None if contract is None else OfdContract(contract.activated, contract.paid_until),
                agent_clock_offset=None if subject.agent_clock_offset is None else timedelta(seconds=subject.agent_clock_offset),
            )
            inputs.append((subject, inp, companies[subject.tenant_id]))
        return inputs

    # --- one chunk ----------------------------------------------------------------------------

    def _evaluate_chunk(
        self,
        conn: sa.Connection,
        ids: list[str],
        now: datetime,
        keys: dict[str, tuple[Thresholds, Any, datetime]],
        skip_unchanged: bool,
        fresh: Mapping[str, FreshState],
    ) -> tuple[int, int, int]:
        subjects = self._load_subjects(conn, ids, fresh)
        stored: dict[str, dict[RuleId, AlertRecord]] = {}
        alert_ids: dict[tuple[str, RuleId], int] = {}
        for row in repo.load_alerts(conn, register_ids=[s.register_id for s in subjects]):
            record = _record_from_row(row)
            if record is not None and row.id is not None:
                stored.setdefault(row.register_id, {})[record.rule] = record
                alert_ids[(row.register_id, record.rule)] = row.id
        changes = notices = 0
        verdicts: dict[str, RegisterEvaluation] = {}
        pending_registers = {register_id for register_id, _ in self._pending}
        for subject, inp, thresholds in self._inputs(conn, subjects, now):
            # Checked again inside the transaction: the inputs may have moved since the read.
            if skip_unchanged and subject.register_id not in pending_registers and self._unchanged(subject, inp, thresholds):
                continue
            keys[subject.register_id] = (thresholds, rule_inputs_key(inp), now)  # None never matches
            records = dict(stored.get(subject.register_id, {}))
            for (register_id, rule), pending in self._pending.items():
                if register_id == subject.register_id and rule not in records:
                    records[rule] = pending
            conditions = evaluate_all(inp, thresholds)
            results = apply_conditions(
                records, conditions, now, register_id=subject.register_id,
                thresholds=thresholds,
            )
            worst: Severity | None = None
            for rule, (record, rule_changes) in results.items():
                key = (subject.register_id, rule)
                if record is None or record.status is AlertStatus.PENDING:
                    self._pending.pop(key, None)
                    if record is not None:
                        self._pending[key] = record
                    continue
                self._pending.pop(key, None)
                if record.status is AlertStatus.ACTIVE:
                    worst = record.severity if worst is None else max(worst, record.severity)
                if record is records.get(rule):
                    continue  # unchanged: no write
                alert_id = repo.upsert_alert(conn, _row_from_record(record))
                for change in rule_changes:
                    repo.add_alert_history(conn, _change_row(alert_id, change))
                changes += len(rule_changes)
                notices += self._send_notices(subject, record, rule_changes)
            verdicts[subject.register_id] = register_evaluation(sell_verdict(inp, thresholds, conditions), worst, now)
        bulk.set_evaluations(conn, verdicts)
        self._metrics.evaluations.inc(len(verdicts))
        return len(verdicts), changes, notices

    def _send_notices(self, subject: _Subject, record: AlertRecord, rule_changes: list[AlertChange]) -> int:
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

    def _load_subjects(
        self, conn: sa.Connection, ids: list[str], fresh: Mapping[str, FreshState] | None = None
    ) -> list[_Subject]:
        """The registers' subjects; a state in ``fresh`` replaces the stored JSON while the stored
        row is still its version (else a later write won since: the row is read in full)."""
        fresh = fresh or {}
        handed = [register_id for register_id in ids if register_id in fresh]
        full = [register_id for register_id in ids if register_id not in fresh]
        subjects: list[_Subject] = []
        if handed:
            for row in conn.execute(_subject_query(with_state=False).where(register_state.c.register_id.in_(handed))):
                given = fresh[row.register_id]
                if (row.agent_id, row.session, row.seq) == (given.agent_id, given.session, given.seq):
                    subjects.append(_subject(row, given.state))
                else:
                    full.append(row.register_id)
        if full:
            for row in conn.execute(_subject_query(with_state=True).where(register_state.c.register_id.in_(full))):
                subjects.append(_subject(row, _parse_state(row.register_id, row.state)))
        subjects.sort(key=lambda subject: subject.register_id)
        return subjects

    def _link_down_since(self, conn: sa.Connection, ids: list[str]) -> dict[str, datetime]:
        if not ids:
            return {}
        rows = conn.execute(
            sa.select(events.c.register_id, sa.func.max(events.c.ts))
            .where(events.c.register_id.in_(ids), events.c.kind == "link_lost")
            .group_by(events.c.register_id)
        )
        return {register_id: _as_utc(ts) for register_id, ts in rows if ts is not None}


def _subject_query(*, with_state: bool) -> sa.Select[Any]:
    """What a subject needs, joined from the register's tables; without the state document when
    the caller already holds it parsed (its version columns then tell whether it is still current)."""
    document = [register_state.c.state] if with_state else []
    return (
        sa.select(
            register_state.c.register_id,
            *document,
            register_state.c.agent_id,
            register_state.c.session,
            register_state.c.seq,
            register_state.c.received_at,
            register_state.c.agent_ts,
            register_state.c.link_up,
            register_state.c.evaluated_at,
            registers.c.tenant_id,
            registers.c.node_id,
            registers.c.serial,
            nodes.c.name.label("node_name"),
            agents.c.online,
            agents.c.last_seen,
            agents.c.clock_offset,
        )
        .join(registers, registers.c.register_id == register_state.c.register_id)
        .outerjoin(nodes, nodes.c.id == registers.c.node_id)
        .outerjoin(agents, agents.c.agent_id == registers.c.agent_id)
    )


def _subject(row: sa.Row[Any], state: RegisterState | None) -> _Subject:
    return _Subject(
        register_id=row.register_id,
        tenant_id=row.tenant_id,
        node_id=row.node_id,
        node_name=row.node_name,
        serial=row.serial,
        state=state,
        received_at=row.received_at,
        polled_at=row.agent_ts,
        link_up=row.link_up,
        agent_online=row.online,
        agent_last_seen=row.last_seen,
        agent_clock_offset=row.clock_offset,
        evaluated_at=row.evaluated_at,
    )


def _as_utc(value: Any) -> datetime:
    # max() over a UtcDateTime column comes back untyped on SQLite (a string or naive datetime).
    parsed: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _parse_state(register_id: str, raw: Any) -> RegisterState | None:
    try:
        return RegisterState.model_validate(raw)
    except ValidationError as exc:
        log.error("stored state of %s does not parse; evaluating without it: %s", register_id, exc)
        return None


class EvaluationWorker:
    """One thread: evaluates registers changed by ingest as they come, and sweeps all periodically."""

    def __init__(
        self, engine: AlertEngine, *, period: float = 15.0, also_sweep: Sequence[Callable[[], object]] = ()
    ) -> None:
        self.engine = engine
        self.period = period
        self.also_sweep = tuple(also_sweep)  # other periodic rules (company alerts), after the registers
        self._lock = threading.Lock()
        self._changed: set[str] = set()
        self._agents: set[str] = set()
        self._states: dict[str, FreshState] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sweeps = 0

    def changed(
        self,
        register_ids: Collection[str],
        agent_ids: Collection[str] = (),
        states: Mapping[str, FreshState] | None = None,
    ) -> None:
        """Called by the ingest writer after a commit (cheap: just records the ids and states)."""
        with self._lock:
            self._changed.update(register_ids)
            self._agents.update(agent_ids)
            if states:
                self._states.update(states)  # the writer reports in commit order: later versions win
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="alert-evaluator", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        next_sweep = time.monotonic() + self.period
        while not self._stop.is_set():
            self._wake.wait(max(0.0, next_sweep - time.monotonic()))
            self._wake.clear()
            try:
                self.run_changed()
                if time.monotonic() >= next_sweep:
                    self.sweep()
                    next_sweep = time.monotonic() + self.period
            except Exception:  # the loop must survive a failed evaluation (database away, a bad row)
                log.exception("alert evaluation failed; retrying on the next trigger")
                time.sleep(min(self.period, 1.0))
        self.run_changed()

    def sweep(self) -> None:
        """Re-evaluate every register, chunk by chunk, serving ingest-triggered evaluations between
        chunks so a long sweep over a big fleet never delays a fresh alert by more than one chunk."""
        ids = self.engine.all_registers()
        for start in range(0, len(ids), CHUNK):
            if self._stop.is_set():
                return
            self.engine.evaluate(ids[start : start + CHUNK])
            self.run_changed()
        for extra in self.also_sweep:
            try:
                extra()
            except Exception:  # its own failure must not stop the register sweep from counting
                log.exception("periodic sweep %r failed", extra)
        self.engine.update_open_alert_gauge()
        self.sweeps += 1

    def run_changed(self) -> EvaluationReport | None:
        with self._lock:
            changed, self._changed = self._changed, set()
            agent_ids, self._agents = self._agents, set()
            states, self._states = self._states, {}
        if agent_ids:
            changed.update(self.engine.registers_of_agents(agent_ids))
        if not changed:
            return None
        try:
            return self.engine.evaluate(changed, skip_unchanged=True, states=states)
        except Exception:
            with self._lock:  # evaluate them again next time rather than lose the trigger
                self._changed.update(changed)
                for register_id, state in states.items():
                    self._states.setdefault(register_id, state)  # never over a version reported since
            raise

