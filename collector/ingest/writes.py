"""Turn decoded uplink messages into storage writes on one connection (the caller owns the transaction).

Rows are gathered per batch and written with one multi-row statement per table, so a batch of
500 states costs a handful of round trips, not 2 000:

* ``state`` (live or replayed in ``hist``): history row (dedup on (agent, session, seq)) and a
  latest-state candidate; the storage upserts it only when newer, so replayed history never
  overwrites fresher live state;
* ``birth``: every device's state and link as the latest view (births restore the full view); a
  birth also supersedes whatever its agent has stored from a higher session (see
  ``bulk.supersede_sessions``);
* ``event``: event row; live link_lost/link_regained also set the register's link flag; an event
  without a register (outbox_gap, command_error) goes to ``agent_events``;
* ``status``: agent online/offline, a death of an older session ignored by the storage;
* ``action_result`` events (live or replayed) also move their action's lifecycle
  (``collector.actions.store.apply_results``) in the same transaction.

Record times are stored on the collector's clock (``agent_clock.record_time``), never the agent's.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from collector.actions.store import apply_results
from collector.ingest import bulk
from collector.ingest.agent_clock import record_time
from collector.ingest.consumer import InboundMessage
from collector.ingest.history_keeper import HistoryKeeper
from collector.ingest.history_policy import history_document
from collector.storage import register_summary
from collector.storage import repository as repo
from collector.storage.agents import StatusOutcome
from collector.storage.dialect import member_of
from collector.storage.errors import RegisterOwnedElsewhere
from collector.storage.rows import (
    AgentEventRow,
    EventRow,
    HistoryRow,
    JsonText,
    LatestState,
    RegisterIdentity,
    state_json,
)
from collector.storage.schema import agents, registers
from protocol.mqtt.models import ActionResult
from protocol.mqtt.rules import EventKind
from protocol.mqtt.topics import AgentTopic
from protocol.mqtt.wire import (
    BirthPayload,
    EventPayload,
    HistBatch,
    HistStateRecord,
    Payload,
    RegisterState,
    StatePayload,
    StatusPayload,
)

log = logging.getLogger(__name__)

UNKNOWN_PROTOCOL = "unknown"  # placeholder until the register's first state names its protocol
LINK_EVENTS = {EventKind.LINK_LOST: False, EventKind.LINK_REGAINED: True}


@dataclass(frozen=True, slots=True)
class Decoded:
    inbound: InboundMessage
    topic: AgentTopic
    payload: Payload


@dataclass(frozen=True, slots=True)
class FreshState:
    """A register's latest state as a batch stored it, already parsed: the alert evaluator uses it
    instead of reading the row back and re-parsing its JSON. ``(agent_id, session, seq)`` names
    the version, so the evaluator can tell whether the stored row is still this one."""

    agent_id: str
    session: int
    seq: int
    state: RegisterState
    received_at: datetime  # the row's arrival time, and when it was polled (``agent_ts``)
    polled_at: datetime


@dataclass
class WriteOutcome:
    registers: set[str] = field(default_factory=set)  # latest state or link may have changed
    # The registers whose latest state this batch replaced (it won the newer-only upsert).
    states: dict[str, FreshState] = field(default_factory=dict)
    status_agents: set[str] = field(default_factory=set)  # online/offline applied
    seen_agents: set[str] = field(default_factory=set)  # last_seen written
    woken_agents: set[str] = field(default_factory=set)  # of those, brought online by a newer session
    live: dict[tuple[str, int], list[int]] = field(default_factory=lambda: defaultdict(list))
    replayed: dict[tuple[str, int], list[int]] = field(default_factory=lambda: defaultdict(list))  # seqs per replayed session
    births: dict[str, int] = field(default_factory=dict)  # agent → session of its last live birth
    new_records: int = 0
    duplicates: int = 0
    stale_status: int = 0
    agent_events: list[AgentEventRow] = field(default_factory=list)  # new ones, for the caller to report


def _newer(candidate: LatestState, current: LatestState) -> bool:
    if candidate.agent_id == current.agent_id:
        return (candidate.session, candidate.seq) > (current.session, current.seq)
    return candidate.agent_ts > current.agent_ts


class _Gather:
    def __init__(self, history: HistoryKeeper | None) -> None:
        self.history = history  # None: every state is a history row
        # Keyed by (register, agent): two agents claiming one register must both be checked.
        self.identities: dict[tuple[str, str], tuple[RegisterIdentity, str, datetime]] = {}
        self.event_registers: dict[str, tuple[str, datetime]] = {}
        self.rows: list[HistoryRow] = []  # the states kept as history
        self.events: list[EventRow] = []
        self.agent_events: list[AgentEventRow] = []
        self.latest: dict[str, tuple[LatestState, RegisterState]] = {}
        # register → ((session, seq), up, from a state): the newest live link signal
        self.links: dict[str, tuple[tuple[int, int], bool, bool]] = {}
        self.seen: dict[str, tuple[datetime, int]] = {}
        self.statuses: list[tuple[str, StatusPayload, datetime]] = []
        self.action_results: list[tuple[str, ActionResult, datetime]] = []

    def see(self, agent: str, at: datetime, session: int) -> None:
        previous = self.seen.get(agent)
        self.seen[agent] = (at, session) if previous is None else (max(previous[0], at), max(previous[1], session))

    def identity(self, register_id: str, state: RegisterState | None, protocol: str, agent: str, at: datetime) -> None:
        ident = RegisterIdentity(
            register_id=register_id,
            protocol=state.protocol if state is not None else protocol,
            serial=state.serial if state is not None else None,
            rnm=state.rnm if state is not None else None,
            fn_serial=state.fn.serial if state is not None else None,
            model=state.model if state is not None else None,
        )
        self.identities[(register_id, agent)] = (ident, agent, at)

    def latest_state(self, row: LatestState, state: RegisterState) -> None:
        current = self.latest.get(row.register_id)
        if current is None or _newer(row, current[0]):
            self.latest[row.register_id] = (row, state)

    def link(self, register_id: str, key: tuple[int, int], up: bool, *, from_state: bool = False) -> None:
        current = self.links.get(register_id)
        if current is None or key > current[0]:
            self.links[register_id] = (key, up, from_state)

    def state(self, payload: StatePayload, received_at: datetime, *, live: bool, made_at: datetime) -> None:
        register_id = payload.register
        self.identity(register_id, payload.state, payload.state.protocol, payload.agent, received_at)
        dumped = state_json(payload.state)
        reason = None if self.history is None else self.history.keep(register_id, payload.agent, payload.state, made_at)
        if self.history is None or reason is not None:
            self.rows.append(
                HistoryRow(
                    agent_id=payload.agent,
                    session=payload.session,
                    seq=payload.seq,
                    register_id=register_id,
                    ts=made_at,
                    received_at=received_at,
                    state=JsonText(history_document(payload.state)),
                    reason=reason,
                )
            )
        self.latest_state(
            LatestState.from_register_state(
                register_id,
                payload.state,
                agent_id=payload.agent,
                session=payload.session,
                seq=payload.seq,
                agent_ts=made_at,
                received_at=received_at,
                link_up=True,  # a state is only published after a successful poll
                dumped=dumped,
            ),
            payload.state,
        )
        if live:
            self.link(register_id, (payload.session, payload.seq), True, from_state=True)

    def event(self, payload: EventPayload, received_at: datetime, *, live: bool, made_at: datetime) -> None:
        register_id = payload.register
        data = {"message": payload.message, **payload.data}
        if payload.kind is EventKind.ACTION_RESULT:
            self.action_result(payload, received_at)
        if register_id is None:
            self.agent_events.append(AgentEventRow(
                agent_id=payload.agent, session=payload.session, seq=payload.seq, kind=payload.kind.value,
                ts=made_at, received_at=received_at, data=data,
            ))  # fmt: skip
            return
        if (register_id, payload.agent) not in self.identities:
            self.event_registers[register_id] = (payload.agent, received_at)
        self.events.append(
            EventRow(
                agent_id=payload.agent,
                session=payload.session,
                seq=payload.seq,
                register_id=register_id,
                kind=payload.kind.value,
                ts=made_at,
                received_at=received_at,
                data=data,
            )
        )
        if live and payload.kind in LINK_EVENTS:
            self.link(register_id, (payload.session, payload.seq), LINK_EVENTS[payload.kind])
        if live and payload.kind is EventKind.LINK_LOST and self.history is not None:
            self.history.link_lost(register_id)  # the state after the return is kept (reason "link")

    def action_result(self, payload: EventPayload, received_at: datetime) -> None:
        try:
            result = ActionResult.model_validate(payload.data)
        except ValueError as exc:  # the event is still stored; only the lifecycle cannot use it
            log.warning("action_result from %s without a valid result: %s", payload.agent, exc)
            return
        self.action_results.append((payload.agent, result, received_at))

    def birth(self, payload: BirthPayload, received_at: datetime) -> None:
        for device in payload.devices:
            # A device not read yet is listed under a placeholder id (the agent learns the real
            # one from the first poll): creating a register for it would leave a ghost behind.
            # Its link flag still applies if the register exists.
            if device.state is not None:
                self.identity(device.register_id, device.state, device.protocol, payload.agent, received_at)
                self.latest_state(
                    LatestState.from_register_state(
                        device.register_id,
                        device.state,
                        agent_id=payload.agent,
                        session=payload.session,
                        seq=payload.seq,
                        agent_ts=received_at,
                        received_at=received_at,
                        link_up=device.link_up,
                    ),
                    device.state,
                )
            self.link(device.register_id, (payload.session, payload.seq), device.link_up)
            if not device.link_up and self.history is not None:
                self.history.link_lost(device.register_id)


def _gather(items: list[Decoded], outcome: WriteOutcome, history: HistoryKeeper | None) -> _Gather:
    gather = _Gather(history)
    for item in items:
        payload, at = item.payload, item.inbound.received_at
        if isinstance(payload, StatusPayload):
            gather.statuses.append((payload.agent, payload, at))
            if payload.status != "online" and history is not None:
                history.agent_offline(payload.agent)
            continue
        if isinstance(payload, HistBatch):
            for record in payload.records:
                inner = record.payload
                made_at = record_time(inner.ts, payload.ts, at)
                if isinstance(record, HistStateRecord):
                    gather.state(inner, at, live=False, made_at=made_at)  # type: ignore[arg-type]
                else:
                    gather.event(inner, at, live=False, made_at=made_at)  # type: ignore[arg-type]
                outcome.replayed[(inner.agent, inner.session)].append(inner.seq)
            gather.see(payload.agent, at, 0)
            continue
        if isinstance(payload, StatePayload):
            gather.state(payload, at, live=True, made_at=at)
        elif isinstance(payload, EventPayload):
            gather.event(payload, at, live=True, made_at=at)
        elif isinstance(payload, BirthPayload):
            gather.birth(payload, at)
            outcome.births[payload.agent] = payload.session  # arrival order: the last one counts
        else:
            continue  # downlink kinds never reach here: decode refuses them on uplink topics
        outcome.live[(payload.agent, payload.session)].append(payload.seq)
        gather.see(payload.agent, at, payload.session)
    return gather


def _missing_registers(conn: sa.Connection, claims: dict[str, tuple[str, datetime]]) -> set[str]:
    """Registers named only by events that do not exist yet; refuses one of another agent's tenant."""
    if not claims:
        return set()
    owners: dict[str, int] = {
        row.register_id: row.tenant_id
        for row in conn.execute(
            sa.select(registers.c.register_id, registers.c.tenant_id).where(member_of(conn, registers.c.register_id, claims))
        )
    }
    claimants = {agent for agent, _ in claims.values()}
    tenants: dict[str, int] = {
        row.agent_id: row.tenant_id
        for row in conn.execute(sa.select(agents.c.agent_id, agents.c.tenant_id).where(member_of(conn, agents.c.agent_id, claimants)))
    }
    for register_id, tenant_id in owners.items():
        if tenants.get(claims[register_id][0]) != tenant_id:
            raise RegisterOwnedElsewhere(f"register {register_id!r} belongs to another tenant")
    return set(claims) - set(owners)


class RefreshCache:
    """Skips rewriting what an earlier batch wrote moments ago: a register's unchanged identity
    (``registers.last_seen`` is then refreshed at most every ``interval``) and an agent's
    ``last_seen`` within the same session (every ``seen_interval``; the offline rule works in
    minutes). Must be cleared whenever a transaction rolls back, or it would skip a needed write.
    """

    def __init__(self, interval: float = 30.0, seen_interval: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._seen_interval = seen_interval
        self._clock = clock
        self._identities: dict[tuple[str, str], tuple[RegisterIdentity, float]] = {}
        self._seen: dict[str, tuple[int, float]] = {}

    def clear(self) -> None:
        self._identities.clear()
        self._seen.clear()

    def identities_due(self, claims: dict[tuple[str, str], tuple[RegisterIdentity, str, datetime]]) -> list[tuple[RegisterIdentity, str, datetime]]:
        now = self._clock()
        due = []
        for key, claim in claims.items():
            cached = self._identities.get(key)
            if cached is None or cached[0] != claim[0] or now - cached[1] >= self._interval:
                due.append(claim)
                self._identities[key] = (claim[0], now)
        return due

    def forget_seen(self, agent_ids: set[str]) -> None:
        for agent in agent_ids:
            self._seen.pop(agent, None)

    def seen_due(self, seen: dict[str, tuple[datetime, int]]) -> dict[str, tuple[datetime, int]]:
        now = self._clock()
        due = {}
        for agent, (at, session) in seen.items():
            cached = self._seen.get(agent)
            if cached is None or cached[0] != session or now - cached[1] >= self._seen_interval:
                due[agent] = (at, session)
                self._seen[agent] = (session, now)
        return due


def write_messages(
    conn: sa.Connection, items: list[Decoded], cache: RefreshCache | None = None, history: HistoryKeeper | None = None
) -> WriteOutcome:
    """Write one batch; raises the storage's typed errors (the caller retries message by message).
    ``history`` decides which states become history rows (None: all of them); like ``cache``, it
    must be cleared when the transaction rolls back."""
    cache = cache or RefreshCache(interval=0, seen_interval=0)
    outcome = WriteOutcome()
    gather = _gather(items, outcome, history)
    bulk.supersede_sessions(conn, outcome.births)
    # By agent (a stable sort keeps each agent's arrival order): rows are locked in key order.
    for agent, status, at in sorted(gather.statuses, key=lambda claim: claim[0]):
        applied = repo.upsert_agent_status(
            conn, agent, online=status.status == "online", session=status.session, at=at, refresh_summary=False
        )
        if applied is StatusOutcome.APPLIED:
            outcome.status_agents.add(agent)
        else:
            outcome.stale_status += 1
    identified = {register_id for register_id, _ in gather.identities}
    event_only = {rid: claim for rid, claim in gather.event_registers.items() if rid not in identified}
    missing = [(RegisterIdentity(rid, UNKNOWN_PROTOCOL), *event_only[rid]) for rid in _missing_registers(conn, event_only)]
    # One statement pass over registers in key order, so two collectors cannot lock them crosswise.
    claims = [*cache.identities_due(gather.identities), *missing]
    bulk.ensure_registers(conn, claims)
    records = len(gather.rows) + len(gather.events) + len(gather.agent_events)
    new_agent_events = repo.insert_agent_events(conn, gather.agent_events)
    outcome.new_records = bulk.insert_history(conn, gather.rows) + repo.insert_events(conn, gather.events)
    outcome.new_records += new_agent_events
    if new_agent_events:
        outcome.agent_events = gather.agent_events
    outcome.duplicates = records - outcome.new_records
    written = bulk.upsert_latest_states(conn, [row for row, _ in gather.latest.values()])
    outcome.registers |= written
    for register_id in written:
        row, state = gather.latest[register_id]
        outcome.states[register_id] = FreshState(
            row.agent_id, row.session, row.seq, state, row.received_at, row.agent_ts
        )
    # A state's own upsert already set link_up; only events and births need the extra update.
    links = {rid: up for rid, (_, up, from_state) in gather.links.items() if not from_state}
    bulk.set_links(conn, links)
    outcome.registers |= set(links)
    acted = apply_results(conn, gather.action_results)
    outcome.registers |= acted
    due = cache.seen_due({agent: seen for agent, seen in gather.seen.items() if seen[1] > 0})
    marked, woken = bulk.mark_agents_seen(conn, due)  # may bring an agent online (a newer session)
    cache.forget_seen(set(due) - marked)  # skipped while busy: due next batch
    outcome.seen_agents = marked
    outcome.woken_agents = woken
    # Registers whose identity row or link this batch wrote; of those that only got a new latest
    # state, the summary reads nothing else but its shift status and link flag.
    rewritten = {identity.register_id for identity, _, _ in claims} | set(links) | acted
    settled = {
        register_id: (row.shift_status, row.link_up)
        for register_id in written
        if register_id not in rewritten and (row := gather.latest[register_id][0]).link_up is not None
    }
    _refresh_summaries(conn, outcome, rewritten | (written - set(settled)), settled)
    return outcome


def _refresh_summaries(
    conn: sa.Connection, outcome: WriteOutcome, changed: set[str], settled: dict[str, tuple[str | None, bool]]
) -> None:
    """The register list's summary rows of what this batch changed, after every agent row this
    batch updates: taking summary locks between agent updates (per status) deadlocked two
    collectors, one holding an agent and waiting for a summary row, the other the reverse.
    Statuses, births and a newer session's first message change their agents' online flag, so those
    agents' registers are included (an agent merely seen again changed nothing the list shows).
    ``settled`` registers (a new latest state only) are rewritten only if their shift status or
    link flag moved: most states change neither, and the summary's recomputation would write nothing."""
    changed_agents = set(outcome.births) | outcome.status_agents | outcome.woken_agents
    register_summary.refresh_agents(conn, changed_agents, also=changed, settled=settled)
