"""The lifecycle of a remote action, stored in ``register_actions``::

    requested → sent → accepted → done | failed | refused | expired

* :func:`request_action` checks the right (``register_actions`` on the register), that an agent
  serves the register, the stored state (``catalogue.precondition``) and that no other action on
  the register is unfinished (409 otherwise), writes the row and audits the request;
* :func:`mark_sent` — the dispatcher published it;
* :func:`apply_results` — the agent's ``action_result`` events (ingest calls it in the batch's
  transaction): a result for an unknown id, or from another agent than the one the command went
  to, is ignored; a status never moves back (a late ``accepted`` after ``done`` changes nothing);
* :func:`expire_overdue` — an action without a final answer ``GRACE`` after its deadline is
  ``expired`` (the agent never starts one after its deadline, so nothing can happen later).

Final outcomes are audited with the agent (or the collector, for an expiry) as the actor.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa

from collector.accounts import audit
from collector.accounts.audit import Actor
from collector.accounts.errors import Conflict, NotFound
from collector.accounts.rights import Permission, authorize
from collector.actions.catalogue import ACTIONS, precondition
from collector.storage.schema import agents, register_actions, register_state, registers
from collector.storage.scope import Scope, register_visible
from protocol.kkt.state import RegisterState
from protocol.mqtt.actions import DEFAULT_DEADLINE, FINAL_STATUSES, ActionName
from protocol.mqtt.models import ActionResult

log = logging.getLogger(__name__)

GRACE: Final = timedelta(seconds=30)  # for a result already on its way when the deadline passes
# Where each status stands: an update only ever moves forward.
_RANK: Final = {"requested": 0, "sent": 1, "accepted": 2, **{status: 3 for status in FINAL_STATUSES}}
EXPIRED_MEANING: Final = "Агент не ответил до истечения срока команды; касса её не выполняла."
COLLECTOR_ACTOR: Final = Actor(user_id=None, label="collector")


@dataclass(frozen=True, slots=True)
class ActionRow:
    id: str
    tenant_id: int
    register_id: str
    agent_id: str | None  # None: refused by the collector before sending (a bulk run records those)
    action: str
    args: dict[str, Any]
    requested_by: str
    requested_at: datetime
    deadline: datetime
    status: str
    code: int | None
    meaning: str | None
    reason: str | None
    updated_at: datetime
    bulk_id: str | None

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def title(self) -> str:
        try:
            return ACTIONS[ActionName(self.action)].title
        except ValueError:
            return self.action


_COLUMNS = [register_actions.c[name] for name in ActionRow.__dataclass_fields__]


def _row(mapping: Any) -> ActionRow:
    return ActionRow(**{name: mapping[name] for name in ActionRow.__dataclass_fields__})


@dataclass(frozen=True, slots=True)
class Target:
    """What a request needs to know about the register."""

    register_id: str
    tenant_id: int
    agent_id: str | None
    protocol: str
    state: RegisterState | None
    state_received_at: datetime | None


def load_target(conn: sa.Connection, tenant_id: int, register_id: str) -> Target:
    row = conn.execute(
        sa.select(registers.c.agent_id, registers.c.protocol, register_state.c.state, register_state.c.received_at)
        .select_from(registers.outerjoin(register_state, register_state.c.register_id == registers.c.register_id))
        .where(registers.c.register_id == register_id, registers.c.tenant_id == tenant_id)
    ).first()
    if row is None:
        raise NotFound(f"register {register_id!r} does not exist or is outside your scope")
    state = None if row.state is None else RegisterState.model_validate(row.state)
    return Target(register_id, tenant_id, row.agent_id, row.protocol, state, row.received_at)


def open_action(conn: sa.Connection, register_id: str) -> ActionRow | None:
    row = conn.execute(sa.select(*_COLUMNS).where(register_actions.c.open_for == register_id)).first()
    return None if row is None else _row(row._mapping)


def _busy(existing: ActionRow) -> Conflict:
    return Conflict(
        f"register {existing.register_id!r} already has an unfinished action ({existing.action}, {existing.status}, "
        f"id {existing.id}); wait for its result or its deadline",
        ru=f"На кассе уже выполняется действие «{existing.title}» — дождитесь его результата.",
    )


def request_action(
    conn: sa.Connection,
    actor: Actor,
    tenant_id: int,
    register_id: str,
    action: ActionName,
    at: datetime,
    *,
    args: dict[str, Any] | None = None,
    lifetime: timedelta = DEFAULT_DEADLINE,
    bulk_id: str | None = None,
) -> ActionRow:
    """Record a requested action (the dispatcher sends it); raises ``PermissionDenied``,
    ``NotFound`` or ``Conflict`` (no agent, the state forbids it, another action unfinished)."""
    authorize(conn, actor, tenant_id, Permission.REGISTER_ACTIONS, register_id)
    target = load_target(conn, tenant_id, register_id)
    if target.agent_id is None:
        raise Conflict(f"register {register_id!r} has no agent to carry out the action",
                       ru="К этой кассе не подключён агент — выполнить действие некому.")
    refusal = precondition(action, target.state, target.protocol)
    if refusal is not None:
        raise Conflict(refusal.message, ru=refusal.ru)
    existing = open_action(conn, register_id)
    if existing is not None:
        raise _busy(existing)
    row = ActionRow(
        id=uuid.uuid4().hex, tenant_id=tenant_id, register_id=register_id, agent_id=target.agent_id,
        action=action.value, args=dict(args or {}), requested_by=actor.label, requested_at=at, deadline=at + lifetime,
        status="requested", code=None, meaning=None, reason=None, updated_at=at, bulk_id=bulk_id,
    )
    try:
        with conn.begin_nested():  # a concurrent request for the same register loses on open_for
            conn.execute(sa.insert(register_actions).values(
                **{name: getattr(row, name) for name in ActionRow.__dataclass_fields__},
                requested_by_id=actor.user_id, open_for=register_id,
            ))  # fmt: skip
    except sa.exc.IntegrityError:
        existing = open_action(conn, register_id)
        if existing is None:
            raise
        raise _busy(existing) from None
    audit.record(conn, actor, tenant_id=tenant_id, action="register_action.request", target_type="register",
                 target_id=register_id, at=at,
                 details={"id": row.id, "action": row.action, "args": row.args, "deadline": row.deadline.isoformat(),
                          **({"bulk_id": bulk_id} if bulk_id else {})})
    return row


def record_refusal(
    conn: sa.Connection, actor: Actor, tenant_id: int, register_id: str, action: ActionName, at: datetime,
    refusal: str, *, bulk_id: str | None = None,
) -> ActionRow:
    """A final ``refused`` row for an action the collector would not send (so a bulk run's results
    list every register it considered); ``refusal`` is the Russian reason."""
    row = ActionRow(
        id=uuid.uuid4().hex, tenant_id=tenant_id, register_id=register_id, agent_id=None, action=action.value,
        args={}, requested_by=actor.label, requested_at=at, deadline=at, status="refused", code=None,
        meaning=refusal, reason="collector", updated_at=at, bulk_id=bulk_id,
    )
    conn.execute(sa.insert(register_actions).values(
        **{name: getattr(row, name) for name in ActionRow.__dataclass_fields__}, requested_by_id=actor.user_id,
    ))  # fmt: skip
    _outcome_audit(conn, actor, row, at)
    return row


def _outcome_audit(conn: sa.Connection, actor: Actor, row: ActionRow, at: datetime) -> None:
    audit.record(conn, actor, tenant_id=row.tenant_id, action=f"register_action.{row.status}", target_type="register",
                 target_id=row.register_id, at=at,
                 details={"id": row.id, "action": row.action, "requested_by": row.requested_by, "code": row.code,
                          "meaning": row.meaning, "reason": row.reason})


def _move(conn: sa.Connection, row: ActionRow, status: str, at: datetime, **fields: Any) -> ActionRow | None:
    """Move ``row`` forward to ``status`` unless something moved it meanwhile; the new row, or None."""
    if _RANK[status] <= _RANK[row.status]:
        return None
    values = {"status": status, "updated_at": at, **fields}
    if status in FINAL_STATUSES:
        values["open_for"] = None
    done = conn.execute(
        sa.update(register_actions)
        .where(register_actions.c.id == row.id, register_actions.c.status == row.status)
        .values(**values)
    )
    if done.rowcount != 1:
        return None
    merged = {name: getattr(row, name) for name in ActionRow.__dataclass_fields__}
    merged.update({key: value for key, value in values.items() if key in merged})
    return ActionRow(**merged)


def get_row(conn: sa.Connection, action_id: str) -> ActionRow | None:
    row = conn.execute(sa.select(*_COLUMNS).where(register_actions.c.id == action_id)).first()
    return None if row is None else _row(row._mapping)


def mark_sent(conn: sa.Connection, action_id: str, at: datetime) -> bool:
    """requested → sent; False when the action had moved on already (an answer came first)."""
    done = conn.execute(
        sa.update(register_actions)
        .where(register_actions.c.id == action_id, register_actions.c.status == "requested")
        .values(status="sent", updated_at=at)
    )
    return done.rowcount == 1


def apply_results(conn: sa.Connection, results: list[tuple[str, ActionResult, datetime]]) -> set[str]:
    """Apply ``(agent id, result, received at)`` in order; returns the registers whose action changed."""
    changed: set[str] = set()
    for agent_id, result, at in results:
        row = get_row(conn, result.id)
        if row is None or row.agent_id != agent_id:
            log.info("action result %s from %s ignored: no such action for this agent", result.id, agent_id)
            continue
        moved = _move(conn, row, result.status, at, code=result.code, meaning=result.meaning, reason=result.reason)
        if moved is None:
            continue
        changed.add(moved.register_id)
        if moved.final:
            _outcome_audit(conn, Actor(user_id=None, label=f"agent {agent_id}"), moved, at)
    return changed


def _overdue(now: datetime, grace: timedelta) -> sa.ColumnElement[bool]:
    return sa.and_(register_actions.c.open_for.is_not(None), register_actions.c.deadline < now - grace)


def any_overdue(conn: sa.Connection, now: datetime, grace: timedelta = GRACE) -> bool:
    """A read-only check, so the periodic sweep takes the write lock only when there is work."""
    return conn.execute(sa.select(register_actions.c.id).where(_overdue(now, grace)).limit(1)).first() is not None


def expire_overdue(conn: sa.Connection, now: datetime, grace: timedelta = GRACE) -> list[ActionRow]:
    """Mark every unfinished action past its deadline + ``grace`` expired; returns them."""
    rows = conn.execute(sa.select(*_COLUMNS).where(_overdue(now, grace)))
    expired = []
    for found in rows.all():
        moved = _move(conn, _row(found._mapping), "expired", now, reason="no_answer", meaning=EXPIRED_MEANING)
        if moved is not None:
            _outcome_audit(conn, COLLECTOR_ACTOR, moved, now)
            expired.append(moved)
    return expired


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A requested action ready to publish, with its agent's measured clock error."""

    row: ActionRow
    clock_offset: timedelta


def due_for_sending(conn: sa.Connection, now: datetime, limit: int = 100) -> list[Outgoing]:
    """Requested actions whose deadline has not passed (an overdue one is left to expire)."""
    rows = conn.execute(
        sa.select(*_COLUMNS, agents.c.clock_offset)
        .select_from(register_actions.outerjoin(agents, agents.c.agent_id == register_actions.c.agent_id))
        .where(register_actions.c.status == "requested", register_actions.c.deadline > now)
        .order_by(register_actions.c.requested_at)
        .limit(limit)
    )
    return [Outgoing(_row(r._mapping), timedelta(seconds=r.clock_offset or 0.0)) for r in rows]


# --- scoped reads --------------------------------------------------------------------------------


def _visible() -> sa.Select[Any]:
    return sa.select(*_COLUMNS).join(registers, registers.c.register_id == register_actions.c.register_id)


def register_in_scope(conn: sa.Connection, scope: Scope, register_id: str) -> bool:
    query = sa.select(registers.c.register_id).where(registers.c.register_id == register_id, register_visible(scope))
    return conn.execute(query).first() is not None


def get_action(conn: sa.Connection, scope: Scope, action_id: str) -> ActionRow | None:
    row = conn.execute(_visible().where(register_actions.c.id == action_id, register_visible(scope))).first()
    return None if row is None else _row(row._mapping)


def list_actions(
    conn: sa.Connection, scope: Scope, register_id: str, *, limit: int = 50, offset: int = 0
) -> tuple[list[ActionRow], int]:
    """A register's actions, newest first, with their total."""
    where = (register_actions.c.register_id == register_id, register_visible(scope))
    total = conn.execute(
        sa.select(sa.func.count()).select_from(
            register_actions.join(registers, registers.c.register_id == register_actions.c.register_id)
        ).where(*where)
    ).scalar_one()
    rows = conn.execute(
        _visible().where(*where)
        .order_by(register_actions.c.requested_at.desc(), register_actions.c.id.desc())
        .limit(limit).offset(offset)
    )
    return [_row(r._mapping) for r in rows], int(total)


def list_bulk(conn: sa.Connection, scope: Scope, bulk_id: str) -> list[ActionRow]:
    rows = conn.execute(
        _visible().where(register_actions.c.bulk_id == bulk_id, register_visible(scope))
        .order_by(register_actions.c.register_id)
    )
    return [_row(r._mapping) for r in rows]
