"""Remote actions in storage, on SQLite and PostgreSQL: rights per role, preconditions, one
unfinished action per register, the lifecycle driven by agent results (never backwards, nothing
from another agent), expiry, the deadline on the agent's clock, bulk shift closing, and the audit."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from collector.accounts.audit import Actor, list_entries
from collector.accounts.errors import Conflict, NotFound, PermissionDenied
from collector.accounts.rights import Role
from collector.accounts.service import AccountService
from collector.actions import bulk, store
from collector.actions.dispatch import command_for
from protocol.kkt.state import ShiftStatus
from protocol.mqtt.actions import DEFAULT_DEADLINE, ActionName
from protocol.mqtt.models import ActionResult

sys.path.insert(0, str(Path(__file__).parent))
import accounts_testkit as kit
import ingest_testkit
from accounts_testkit import *  # noqa: F403  (the fixtures: engine, conn, service, mailer, world)
from actions_testkit import serve_register

T0 = kit.T0
AGENT = "agent-tverskaya"


@pytest.fixture
def served(conn: sa.Connection, world: kit.World) -> kit.World:
    """Тверская and Арбат (Москва) and Невский (Петербург) served by agents, shifts open 2 h."""
    for key in ("tverskaya", "arbat", "nevsky"):
        serve_register(conn, world.a.tenant_id, world.registers[key], f"agent-{key}", T0)
    return world


def owner(conn: sa.Connection, world: kit.World) -> Actor:
    return Actor.user(conn, world.a.user_id)


def request(conn: sa.Connection, world: kit.World, action: ActionName = ActionName.CLOSE_SHIFT,
            key: str = "tverskaya", actor: Actor | None = None) -> store.ActionRow:
    return store.request_action(conn, actor or owner(conn, world), world.a.tenant_id, world.registers[key], action, T0)


def result(row: store.ActionRow, status: str, **fields: object) -> ActionResult:
    return ActionResult.model_validate({"id": row.id, "action": row.action, "status": status, **fields})


@pytest.mark.parametrize(("role", "allowed"), [
    (Role.OWNER, True), (Role.ADMIN, True), (Role.OPERATOR, True), (Role.ACCOUNTANT, False), (Role.VIEWER, False),
])
def test_owner_admin_and_operator_may_act_accountant_and_viewer_never(
    conn: sa.Connection, served: kit.World, role: Role, allowed: bool
) -> None:
    user = kit.user_with_role(conn, served.a.tenant_id, f"{role.value}-moscow@romashka.test", role, served.nodes["moscow"])
    actor = Actor.user(conn, user)
    if allowed:
        assert request(conn, served, actor=actor).status == "requested"
    else:
        with pytest.raises(PermissionDenied):
            request(conn, served, actor=actor)


def test_an_operator_may_not_act_outside_the_subtree_and_another_tenant_is_not_found(
    conn: sa.Connection, served: kit.World
) -> None:
    user = kit.user_with_role(conn, served.a.tenant_id, "op@romashka.test", Role.OPERATOR, served.nodes["moscow"])
    with pytest.raises(PermissionDenied):
        request(conn, served, key="nevsky", actor=Actor.user(conn, user))
    with pytest.raises((NotFound, PermissionDenied)):
        store.request_action(conn, owner(conn, served), served.a.tenant_id, served.registers["b_store"],
                             ActionName.CHECK_NOW, T0)


def test_a_request_is_audited_and_only_one_action_per_register_is_unfinished(
    conn: sa.Connection, served: kit.World
) -> None:
    first = request(conn, served, ActionName.X_REPORT)
    with pytest.raises(Conflict) as busy:
        request(conn, served, ActionName.CLOSE_SHIFT)
    assert "X-отчёт" in (busy.value.ru or "")
    assert request(conn, served, ActionName.CLOSE_SHIFT, key="arbat").status == "requested"  # another register
    store.apply_results(conn, [(first.agent_id, result(first, "done"), T0)])
    assert request(conn, served, ActionName.CLOSE_SHIFT).status == "requested"  # the first one is final now
    entries = list_entries(conn, served.a.tenant_id, target_type="register", target_id=served.registers["tverskaya"])
    assert [(e.action, e.actor, e.details["action"]) for e in reversed(entries)] == [
        ("register_action.request", "owner@romashka.test", "x_report"),
        ("register_action.done", "agent agent-tverskaya", "x_report"),
        ("register_action.request", "owner@romashka.test", "close_shift"),
    ]


def test_the_stored_shift_state_refuses_what_cannot_run(conn: sa.Connection, served: kit.World) -> None:
    with pytest.raises(Conflict, match="shift closed") as clock:
        request(conn, served, ActionName.SET_DATETIME)
    assert clock.value.ru is not None and "закрытой смене" in clock.value.ru
    with pytest.raises(Conflict, match="already open"):
        request(conn, served, ActionName.OPEN_SHIFT)
    with pytest.raises(Conflict, match="only on ATOL"):
        request(conn, served, ActionName.REBOOT)
    serve_register(conn, served.a.tenant_id, served.registers["arbat"], "agent-arbat", T0, shift=ShiftStatus.CLOSED)
    with pytest.raises(Conflict, match="already closed"):
        request(conn, served, ActionName.CLOSE_SHIFT, key="arbat")
    assert request(conn, served, ActionName.SET_DATETIME, key="arbat").status == "requested"


def test_a_register_without_an_agent_is_refused(conn: sa.Connection, world: kit.World) -> None:
    with pytest.raises(Conflict, match="no agent"):
        request(conn, world, ActionName.CHECK_NOW)


def test_results_move_the_lifecycle_forward_only_and_only_from_the_agent_it_went_to(
    conn: sa.Connection, served: kit.World
) -> None:
    row = request(conn, served)
    assert store.mark_sent(conn, row.id, T0)
    changed = store.apply_results(conn, [
        ("agent-arbat", result(row, "done"), T0),  # another agent (of the same tenant): ignored
        (AGENT, ActionResult(id="no-such-id", action=ActionName.CLOSE_SHIFT, status="done"), T0),
        (AGENT, result(row, "accepted"), T0),
    ])
    assert changed == {served.registers["tverskaya"]}
    assert store.get_row(conn, row.id).status == "accepted"  # type: ignore[union-attr]
    store.apply_results(conn, [(AGENT, result(row, "failed", code=0x4A, meaning="Открыт чек", reason="register_error"),
                                T0 + timedelta(seconds=5))])
    assert not store.mark_sent(conn, row.id, T0)  # a late "sent" never overrides an answer
    changed = store.apply_results(conn, [(AGENT, result(row, "accepted"), T0), (AGENT, result(row, "done"), T0)])
    assert changed == set()
    final = store.get_row(conn, row.id)
    assert final is not None
    assert (final.status, final.code, final.meaning, final.reason) == ("failed", 0x4A, "Открыт чек", "register_error")
    assert store.open_action(conn, served.registers["tverskaya"]) is None


def test_unanswered_actions_expire_after_deadline_and_grace(conn: sa.Connection, served: kit.World) -> None:
    row = request(conn, served)
    assert store.expire_overdue(conn, T0 + DEFAULT_DEADLINE + store.GRACE) == []
    expired = store.expire_overdue(conn, T0 + DEFAULT_DEADLINE + store.GRACE + timedelta(seconds=1))
    assert [(r.id, r.status, r.reason) for r in expired] == [(row.id, "expired", "no_answer")]
    store.apply_results(conn, [(AGENT, result(row, "done"), T0 + timedelta(minutes=5))])  # too late: stays expired
    assert store.get_row(conn, row.id).status == "expired"  # type: ignore[union-attr]
    last = list_entries(conn, served.a.tenant_id, target_type="register", limit=1)[0]
    assert (last.action, last.actor) == ("register_action.expired", "collector")


def test_the_command_carries_the_deadline_on_the_agents_clock(conn: sa.Connection, served: kit.World) -> None:
    serve_register(conn, served.a.tenant_id, served.registers["tverskaya"], AGENT, T0, clock_offset=-3600.0)
    row = request(conn, served, ActionName.CHECK_NOW)
    [outgoing] = store.due_for_sending(conn, T0)
    command = command_for(outgoing)
    assert (command.id, command.cmd, command.register) == (row.id, "check_now", served.registers["tverskaya"])
    assert command.deadline == row.deadline - timedelta(hours=1)  # the agent's clock is an hour behind
    assert store.due_for_sending(conn, row.deadline) == []  # once overdue it is left to expire, never sent


def test_bulk_preview_and_run_close_only_long_shifts_within_rights(conn: sa.Connection, served: kit.World) -> None:
    tenant = served.a.tenant_id
    for key, hours in (("tverskaya", 30), ("arbat", 26), ("nevsky", 40)):
        serve_register(conn, tenant, served.registers[key], f"agent-{key}", T0, open_for=timedelta(hours=hours))
    everything = bulk.long_shifts(conn, served.a.user_id, tenant, served.nodes["brand"], 24, T0)
    assert [c.register_id for c in everything] == sorted(served.registers[k] for k in ("tverskaya", "arbat", "nevsky"))
    operator = kit.user_with_role(conn, tenant, "op@romashka.test", Role.OPERATOR, served.nodes["moscow"])
    with pytest.raises(NotFound):  # the brand node is above the operator's grant
        bulk.long_shifts(conn, operator, tenant, served.nodes["brand"], 24, T0)
    preview = bulk.long_shifts(conn, operator, tenant, served.nodes["moscow"], 24, T0)
    assert [(c.register_id, c.shift_hours, c.busy, c.shift_number) for c in preview] == [
        (served.registers["arbat"], 26.0, False, 7), (served.registers["tverskaya"], 30.0, False, 7),
    ]
    assert [c.register_id for c in bulk.long_shifts(conn, operator, tenant, served.nodes["moscow"], 28, T0)] == [
        served.registers["tverskaya"]
    ]
    request(conn, served, ActionName.X_REPORT, key="arbat")  # busy: its close will be refused
    bulk_id, outcomes = bulk.close_long_shifts(conn, Actor.user(conn, operator), operator, tenant,
                                               served.nodes["moscow"], 24, T0)
    assert [(o.register_id, o.status) for o in outcomes] == [
        (served.registers["arbat"], "refused"), (served.registers["tverskaya"], "requested"),
    ]
    assert "уже выполняется" in outcomes[0].message
    rows = store.list_bulk(conn, store.Scope.tenant(tenant), bulk_id)
    assert [(r.register_id, r.status, r.agent_id is None) for r in rows] == [
        (served.registers["arbat"], "refused", True), (served.registers["tverskaya"], "requested", False),
    ]  # the refusal is recorded with its reason, never sent
    assert rows[0].meaning == outcomes[0].message


def test_bulk_refuses_a_role_without_the_right_and_an_unseen_node(conn: sa.Connection, served: kit.World) -> None:
    tenant = served.a.tenant_id
    viewer = kit.user_with_role(conn, tenant, "viewer@romashka.test", Role.VIEWER, served.a.root_node_id)
    with pytest.raises(PermissionDenied):
        bulk.long_shifts(conn, viewer, tenant, served.nodes["brand"], 24, T0)
    with pytest.raises(NotFound):
        bulk.long_shifts(conn, served.a.user_id, tenant, served.nodes["b_store"], 24, T0)


def test_results_replayed_from_the_outbox_apply_and_a_malformed_one_is_only_stored(
    conn: sa.Connection, served: kit.World
) -> None:
    """Results travel on the event path: a ``hist`` batch (store-and-forward) finishes the action
    as a live event would; one whose data is not an ActionResult is kept as an event, nothing more."""
    from collector.ingest.batch import classify
    from collector.ingest.writes import write_messages
    from protocol.mqtt.models import EventKind, EventPayload

    row = request(conn, served, ActionName.X_REPORT)
    register = served.registers["tverskaya"]

    def event(seq: int, data: dict[str, object]) -> EventPayload:
        return EventPayload(agent=AGENT, session=3, seq=seq, ts=T0, register=register, kind=EventKind.ACTION_RESULT,
                            message="x_report", data=data)

    good = result(row, "done").model_dump(mode="json")
    decoded = classify(ingest_testkit.inbound(*ingest_testkit.hist_msg(AGENT, [event(1, {"id": row.id}), event(2, good)])))
    outcome = write_messages(conn, [decoded])  # type: ignore[list-item]
    assert register in outcome.registers and outcome.new_records == 2
    final = store.get_row(conn, row.id)
    assert final is not None and final.status == "done"


def test_two_requests_at_the_same_moment_make_one_action(engine: sa.Engine, service: AccountService) -> None:
    """The one-unfinished-action rule holds under concurrency (a unique key, not only a check)."""
    import threading
    import uuid

    from collector.accounts.tree import create_node
    from collector.storage.engine import begin_write

    tag = uuid.uuid4().hex[:8]
    with begin_write(engine) as conn:
        company = service.sign_up(conn, email=f"owner-{tag}@race.test", password=kit.PASSWORD,
                                  company=f"Гонка {tag}", inn=kit.make_inn(), at=T0)
        store_id = create_node(conn, Actor.cli(), company.tenant_id, parent_id=company.root_node_id, kind="store",
                               name="Магазин", at=T0)
        register_id = kit.add_register(conn, company.tenant_id, store_id, f"kkt-race-{tag}")
        serve_register(conn, company.tenant_id, register_id, f"agent-race-{tag}", T0)
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def ask(action: ActionName) -> None:
        start.wait()
        try:
            with begin_write(engine) as conn:
                store.request_action(conn, Actor.cli(), company.tenant_id, register_id, action, T0)
            outcomes.append("requested")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=ask, args=(a,)) for a in (ActionName.X_REPORT, ActionName.CHECK_NOW)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["conflict", "requested"]
    with engine.connect() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(store.register_actions).where(
            store.register_actions.c.register_id == register_id)).scalar_one()
    assert count == 1
