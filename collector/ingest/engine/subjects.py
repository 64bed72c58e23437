"""What an evaluation reads of each register: its subject (state, link, agent and place, joined from
storage, or the state the ingest writer just parsed) and the ``RuleInput`` built from it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import msgspec
import sqlalchemy as sa

from collector.alerts import OfdContract, RuleInput, Thresholds
from collector.ingest.company_thresholds import CompanyThresholds
from collector.storage import repository as repo
from collector.storage.dialect import member_of
from collector.storage.rows import RegisterEvaluation
from collector.storage.schema import agents, events, nodes, register_state, registers
from protocol.mqtt.wire import RegisterState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Subject:
    """One register as an evaluation sees it."""

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
    verdict_key: str | None = None  # what the stored verdict was computed on (rule_inputs.verdict_key)
    state_agent_id: str | None = None  # the agent whose message the state row holds
    state_version: tuple[int, int] | None = None  # the state row's (session, seq)


class HeldState(Protocol):
    """A parsed state and the version of the row it is (``FreshState``, ``KnownState``)."""

    @property
    def agent_id(self) -> str: ...
    @property
    def session(self) -> int: ...
    @property
    def seq(self) -> int: ...
    @property
    def state(self) -> RegisterState: ...


@dataclass(frozen=True, slots=True)
class KnownState:
    """A state this process parsed from a stored row (agent, session, seq)."""

    agent_id: str
    session: int
    seq: int
    state: RegisterState


def build_inputs(
    conn: sa.Connection, subjects: list[Subject], now: datetime, company_thresholds: CompanyThresholds
) -> list[tuple[Subject, RuleInput, Thresholds]]:
    """Each subject's ``RuleInput`` with its company's thresholds; contracts and link-down times read in bulk."""
    contracts = repo.load_contracts(conn, [s.register_id for s in subjects])
    companies = company_thresholds.for_tenants(conn, {s.tenant_id for s in subjects})
    down_since = link_down_since(conn, [s.register_id for s in subjects if s.link_up is False])
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
            contract=None if contract is None else OfdContract(contract.activated, contract.paid_until, contract.ofd_operator),
            agent_clock_offset=None if subject.agent_clock_offset is None else timedelta(seconds=subject.agent_clock_offset),
        )
        inputs.append((subject, inp, companies[subject.tenant_id]))
    return inputs


def load_subjects(
    conn: sa.Connection, ids: list[str], fresh: Mapping[str, HeldState] | None = None
) -> list[Subject]:
    """The registers' subjects; a state in ``fresh`` replaces the stored JSON while the stored
    row is still its version (else a later write won since: the row is read in full)."""
    fresh = fresh or {}
    handed = [register_id for register_id in ids if register_id in fresh]
    full = [register_id for register_id in ids if register_id not in fresh]
    subjects: list[Subject] = []
    if handed:
        query = _subject_query(with_state=False)
        for row in conn.execute(query.where(member_of(conn, register_state.c.register_id, handed))):
            given = fresh[row.register_id]
            if (row.agent_id, row.session, row.seq) == (given.agent_id, given.session, given.seq):
                subjects.append(_subject(row, given.state))
            else:
                full.append(row.register_id)
    if full:
        query = _subject_query(with_state=True)
        for row in conn.execute(query.where(member_of(conn, register_state.c.register_id, full))):
            subjects.append(_subject(row, _parse_state(row.register_id, row.state)))
    subjects.sort(key=lambda subject: subject.register_id)
    return subjects


def link_down_since(conn: sa.Connection, ids: list[str]) -> dict[str, datetime]:
    if not ids:
        return {}
    rows = conn.execute(
        sa.select(events.c.register_id, sa.func.max(events.c.ts))
        .where(member_of(conn, events.c.register_id, ids), events.c.kind == "link_lost")
        .group_by(events.c.register_id)
    )
    return {register_id: _as_utc(ts) for register_id, ts in rows if ts is not None}


def stored_outcomes(conn: sa.Connection, ids: list[str]) -> dict[str, RegisterEvaluation]:
    """The stored verdict columns of those of these registers that were evaluated, which an
    evaluation compares its own with so as not to rewrite an unchanged verdict."""
    if not ids:
        return {}
    rows = conn.execute(
        sa.select(
            register_state.c.register_id,
            register_state.c.worst_severity,
            register_state.c.time_to_block_seconds,
            register_state.c.blocks_at,
            register_state.c.evaluated_at,
            register_state.c.sell_status,
            register_state.c.sell_rank,
            register_state.c.verdict,
            register_state.c.verdict_key,
        ).where(
            member_of(conn, register_state.c.register_id, ids), register_state.c.evaluated_at.is_not(None)
        )
    )
    return {
        row.register_id: RegisterEvaluation(
            worst_severity=row.worst_severity,
            time_to_block_seconds=row.time_to_block_seconds,
            blocks_at=row.blocks_at,
            evaluated_at=row.evaluated_at,
            sell_status=row.sell_status,
            sell_rank=row.sell_rank,
            verdict=row.verdict,
            verdict_key=row.verdict_key,
        )
        for row in rows
    }


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
            register_state.c.verdict_key,
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


def _subject(row: sa.Row[Any], state: RegisterState | None) -> Subject:
    return Subject(
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
        verdict_key=row.verdict_key,
        state_agent_id=row.agent_id,
        state_version=(row.session, row.seq),
    )


def _as_utc(value: Any) -> datetime:
    # max() over a UtcDateTime column comes back untyped on SQLite (a string or naive datetime).
    parsed: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _parse_state(register_id: str, raw: Any) -> RegisterState | None:
    try:  # the mirror, as ingest hands fresh states over: the rule-inputs key compares types too
        return msgspec.convert(raw, RegisterState)
    except msgspec.ValidationError as exc:
        log.error("stored state of %s does not parse; evaluating without it: %s", register_id, exc)
        return None
