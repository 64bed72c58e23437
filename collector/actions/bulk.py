"""«Закрыть смены на всех кассах узла, где смена открыта дольше N часов»: which registers match
(the preview) and one request per register (the execution), each with its own result.

Only registers the user may act on count (``register_actions`` on them), so the preview never
names a register the user could not close; the shift's age is the alert rules' (the register's
clock advanced by the time since the poll), so it agrees with «Смена открыта N ч» on the pages.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from collector.accounts.audit import Actor
from collector.accounts.errors import AccountsError, NotFound, PermissionDenied
from collector.accounts.rights import Permission, can, scope_for
from collector.actions import store
from collector.alerts.rules import RuleInput, shift_age
from collector.storage.schema import nodes, register_state, registers
from collector.storage.scope import in_subtree, register_visible
from protocol.kkt.state import RegisterState
from protocol.mqtt.actions import ActionName


@dataclass(frozen=True, slots=True)
class Candidate:
    register_id: str
    serial: str | None
    store: str | None
    shift_number: int | None
    shift_hours: float
    busy: bool  # another action is unfinished: the request will be refused


@dataclass(frozen=True, slots=True)
class BulkOutcome:
    register_id: str
    action_id: str
    status: str  # "requested", or "refused" by the collector (the row records why)
    message: str


def long_shifts(
    conn: sa.Connection, user_id: int, tenant_id: int, node_id: int, min_hours: float, now: datetime
) -> list[Candidate]:
    """Registers under ``node_id`` the user may act on whose shift is open longer than ``min_hours``.

    ``NotFound`` for a node the user cannot see; ``PermissionDenied`` for a user who may act nowhere.
    """
    if not can(conn, user_id, Permission.VIEW, node_id):
        raise NotFound(f"node {node_id} does not exist or is outside your scope")
    scope = scope_for(conn, user_id, Permission.REGISTER_ACTIONS)
    if scope.node_ids is not None and not scope.node_ids:
        raise PermissionDenied("your role may not run actions on registers (needs the 'register_actions' permission)",
                               ru="Ваша роль не позволяет выполнять действия на кассах.")
    rows = conn.execute(
        sa.select(registers.c.register_id, registers.c.serial, nodes.c.name.label("store"), register_state.c.state,
                  register_state.c.received_at)
        .join(register_state, register_state.c.register_id == registers.c.register_id)
        .outerjoin(nodes, nodes.c.id == registers.c.node_id)
        .where(registers.c.tenant_id == tenant_id, in_subtree(registers.c.node_id, node_id), register_visible(scope),
               register_state.c.shift_status.in_(("open", "expired")))
        .order_by(registers.c.register_id)
    )
    found = []
    for row in rows:
        state = RegisterState.model_validate(row.state)
        aged = shift_age(RuleInput(register_id=row.register_id, now=now, state=state,
                                   state_received_at=row.received_at))
        if aged is None or aged[0] < timedelta(hours=min_hours):
            continue
        found.append(Candidate(
            register_id=row.register_id, serial=row.serial, store=row.store, shift_number=state.shift.number,
            shift_hours=round(aged[0].total_seconds() / 3600, 1),
            busy=store.open_action(conn, row.register_id) is not None,
        ))  # fmt: skip
    return found


def close_long_shifts(
    conn: sa.Connection, actor: Actor, user_id: int, tenant_id: int, node_id: int, min_hours: float, now: datetime
) -> tuple[str, list[BulkOutcome]]:
    """Request a Z-report on every matching register; one refusal never stops the others (it is
    recorded as a ``refused`` row of the same bulk, with its reason)."""
    bulk_id = uuid.uuid4().hex
    outcomes = []
    for candidate in long_shifts(conn, user_id, tenant_id, node_id, min_hours, now):
        try:
            with conn.begin_nested():
                row = store.request_action(conn, actor, tenant_id, candidate.register_id, ActionName.CLOSE_SHIFT, now,
                                           bulk_id=bulk_id)
        except AccountsError as refused:
            reason = refused.ru or str(refused)
            row = store.record_refusal(conn, actor, tenant_id, candidate.register_id, ActionName.CLOSE_SHIFT, now,
                                       reason, bulk_id=bulk_id)
            outcomes.append(BulkOutcome(candidate.register_id, row.id, "refused", reason))
            continue
        outcomes.append(BulkOutcome(candidate.register_id, row.id, row.status, "Команда поставлена в очередь"))
    return bulk_id, outcomes
