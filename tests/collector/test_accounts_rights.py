"""Rights: scopes from grants feed the storage queries; tenants never see each other; the
permission table (viewer, operator, accountant); ``explain``; no escalation; notifications."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path

import pytest
import sqlalchemy as sa

from collector.accounts.audit import Actor
from collector.accounts.contracts import ContractChange, set_contract
from collector.accounts.errors import NotFound, PermissionDenied
from collector.accounts.groups import add_member, create_group, grant_role, revoke_grant
from collector.accounts.rights import (
    ROLE_PERMISSIONS,
    Permission,
    Role,
    authorize,
    can,
    can_see,
    explain,
    notification_filter,
    permissions_at,
    scope_for,
)
from collector.accounts.schema import users
from collector.accounts.tree import attach_register
from collector.notify.notice import AlertNotice, Receiver
from collector.storage import Scope
from collector.storage import repository as repo

sys.path.insert(0, str(Path(__file__).parent))
import accounts_testkit as kit
from accounts_testkit import *  # noqa: F403  (the shared fixtures: conn, engine, mailer, service, world)

T0 = kit.T0


def _listed(conn: sa.Connection, scope: Scope) -> set[str]:
    rows, total = repo.list_registers(conn, scope, limit=1000)
    assert total == len(rows)
    return {r.register_id for r in rows}


def test_permission_table_is_explicit_and_layered() -> None:
    assert ROLE_PERMISSIONS[Role.VIEWER] == {Permission.VIEW}
    assert Permission.ACKNOWLEDGE in ROLE_PERMISSIONS[Role.OPERATOR]
    assert Permission.EDIT_CONTRACTS not in ROLE_PERMISSIONS[Role.OPERATOR]
    assert ROLE_PERMISSIONS[Role.ACCOUNTANT] == {
        Permission.VIEW,
        Permission.EDIT_CONTRACTS,
        Permission.KEP_ORDERS,
    }
    assert ROLE_PERMISSIONS[Role.ADMIN] < ROLE_PERMISSIONS[Role.OWNER]
    assert ROLE_PERMISSIONS[Role.OWNER] - ROLE_PERMISSIONS[Role.ADMIN] == {Permission.MANAGE_COMPANY}
    for role in Role:
        assert Permission.VIEW in ROLE_PERMISSIONS[role]


def test_a_user_granted_one_city_sees_only_that_subtree(conn, world) -> None:
    moscow = kit.user_with_role(
        conn, world.a.tenant_id, "msk@romashka.test", Role.VIEWER, world.nodes["moscow"]
    )
    scope = scope_for(conn, moscow)
    assert scope == Scope.subtrees(world.a.tenant_id, [world.nodes["moscow"]])
    assert _listed(conn, scope) == {world.registers["tverskaya"], world.registers["arbat"]}
    assert repo.get_register(conn, scope, world.registers["nevsky"]) is None
    # A register not placed in the tree yet is only for grants on the whole company.
    kit.add_register(conn, world.a.tenant_id, None, "kkt-unplaced")
    assert "kkt-unplaced" not in _listed(conn, scope)
    assert "kkt-unplaced" in _listed(conn, scope_for(conn, world.a.user_id))


def test_grants_add_up_across_groups(conn, world) -> None:
    user = kit.user_with_role(
        conn, world.a.tenant_id, "two@romashka.test", Role.VIEWER, world.nodes["tverskaya"]
    )
    cli = Actor.cli()
    group = create_group(conn, cli, world.a.tenant_id, "Питер", at=T0)
    grant_role(conn, cli, world.a.tenant_id, group, Role.OPERATOR, world.nodes["spb"], at=T0)
    add_member(conn, cli, world.a.tenant_id, group, user, at=T0)
    assert _listed(conn, scope_for(conn, user)) == {world.registers["tverskaya"], world.registers["nevsky"]}
    assert can(conn, user, Permission.ACKNOWLEDGE, world.registers["nevsky"])
    assert not can(conn, user, Permission.ACKNOWLEDGE, world.registers["tverskaya"])


def test_no_grant_means_nothing(conn, world) -> None:
    nobody = kit.user_with_role(conn, world.a.tenant_id, "x@romashka.test", Role.VIEWER, world.nodes["arbat"])
    group = conn.execute(sa.text("SELECT id FROM grants ORDER BY id DESC LIMIT 1")).scalar_one()
    revoke_grant(conn, Actor.cli(), world.a.tenant_id, group, at=T0)
    scope = scope_for(conn, nobody)
    assert scope == Scope.subtrees(world.a.tenant_id, [])
    assert _listed(conn, scope) == set()
    assert permissions_at(conn, nobody, world.registers["arbat"]) == frozenset()


def test_disabled_user_has_no_rights(conn, world) -> None:
    conn.execute(sa.update(users).where(users.c.id == world.a.user_id).values(disabled=True))
    assert _listed(conn, scope_for(conn, world.a.user_id)) == set()


def test_tenant_a_never_sees_tenant_b(conn, world) -> None:
    owner_a, owner_b = world.a.user_id, world.b.user_id
    assert _listed(conn, scope_for(conn, owner_a)) == {
        world.registers[k] for k in ("tverskaya", "arbat", "nevsky")
    }
    assert _listed(conn, scope_for(conn, owner_b)) == {world.registers["b_store"]}
    assert not can_see(conn, owner_a, world.registers["b_store"])
    assert permissions_at(conn, owner_a, world.nodes["b_store"]) == frozenset()
    assert not explain(conn, owner_a, world.registers["b_store"]).visible
    # No path crosses tenants: a grant onto another tenant's node is refused outright.
    group = create_group(conn, Actor.cli(), world.a.tenant_id, "jumpers", at=T0)
    with pytest.raises(NotFound):
        grant_role(conn, Actor.cli(), world.a.tenant_id, group, Role.OWNER, world.nodes["b_store"], at=T0)
    with pytest.raises(PermissionDenied):
        authorize(
            conn, Actor.user(conn, owner_a), world.b.tenant_id, Permission.VIEW, world.registers["b_store"]
        )


def test_a_grant_row_pointing_across_tenants_still_grants_nothing(conn, world) -> None:
    # Even if a bad row slipped in, the rights query joins through the user's own tenant.
    group = create_group(conn, Actor.cli(), world.a.tenant_id, "corrupt", at=T0)
    conn.execute(
        sa.text("INSERT INTO grants (group_id, role, node_id) VALUES (:g, 'owner', :n)"),
        {"g": group, "n": world.nodes["b_store"]},
    )
    viewer = kit.user_with_role(conn, world.a.tenant_id, "v@romashka.test", Role.VIEWER, world.nodes["arbat"])
    add_member(conn, Actor.cli(), world.a.tenant_id, group, viewer, at=T0)
    assert world.registers["b_store"] not in _listed(conn, scope_for(conn, viewer))
    assert not can_see(conn, viewer, world.registers["b_store"])


def test_viewer_cannot_acknowledge_operator_can(conn, world) -> None:
    viewer = kit.user_with_role(
        conn, world.a.tenant_id, "view@romashka.test", Role.VIEWER, world.a.root_node_id
    )
    operator = kit.user_with_role(
        conn, world.a.tenant_id, "op@romashka.test", Role.OPERATOR, world.nodes["moscow"]
    )
    register = world.registers["arbat"]
    assert can(conn, viewer, Permission.VIEW, register)
    for permission in (Permission.ACKNOWLEDGE, Permission.COMMENT, Permission.SILENCE):
        assert not can(conn, viewer, permission, register)
        assert can(conn, operator, permission, register)  # who may write may also acknowledge
    with pytest.raises(PermissionDenied, match="acknowledge"):
        authorize(conn, Actor.user(conn, viewer), world.a.tenant_id, Permission.ACKNOWLEDGE, register)


def test_accountant_edits_contracts_but_runs_no_technical_actions(conn, world) -> None:
    accountant = kit.user_with_role(
        conn, world.a.tenant_id, "buh@romashka.test", Role.ACCOUNTANT, world.a.root_node_id
    )
    actor = Actor.user(conn, accountant)
    register = world.registers["nevsky"]
    for technical in (
        Permission.ACKNOWLEDGE,
        Permission.SILENCE,
        Permission.MANAGE_REGISTERS,
        Permission.ENROLL,
    ):
        assert not can(conn, accountant, technical, register)
    with pytest.raises(PermissionDenied):
        attach_register(conn, actor, world.a.tenant_id, register, world.nodes["arbat"], at=T0)
    set_contract(conn, actor, world.a.tenant_id, register, ContractChange(True, None, "Год"), at=T0)
    assert repo.load_contracts(conn, [register])[register].tariff == "Год"
    operator = kit.user_with_role(
        conn, world.a.tenant_id, "op2@romashka.test", Role.OPERATOR, world.a.root_node_id
    )
    with pytest.raises(PermissionDenied, match="edit_contracts"):
        set_contract(
            conn,
            Actor.user(conn, operator),
            world.a.tenant_id,
            register,
            ContractChange(False, None, None),
            at=T0,
        )


def test_explain_names_the_grant(conn, world) -> None:
    user = kit.user_with_role(conn, world.a.tenant_id, "why@romashka.test", Role.OPERATOR, world.nodes["spb"])
    shown = explain(conn, user, world.registers["nevsky"])
    assert shown.visible and len(shown.grants) == 1
    (grant,) = shown.grants
    assert (grant.role, grant.node_id, grant.node_name) == (Role.OPERATOR, world.nodes["spb"], "Петербург")
    assert "Петербург" in shown.message and "operator" in shown.message
    hidden = explain(conn, user, world.registers["arbat"])
    assert not hidden.visible and hidden.grants == () and "no grant" in hidden.message
    owner = explain(conn, world.a.user_id, world.registers["arbat"])
    assert [g.group_name for g in owner.grants] == ["Владельцы"]


def test_no_escalation_through_grants(conn, world) -> None:
    admin = kit.user_with_role(conn, world.a.tenant_id, "adm@romashka.test", Role.ADMIN, world.a.root_node_id)
    regional = kit.user_with_role(
        conn, world.a.tenant_id, "reg@romashka.test", Role.ADMIN, world.nodes["moscow"]
    )
    group = create_group(conn, Actor.cli(), world.a.tenant_id, "new", at=T0)
    with pytest.raises(PermissionDenied, match="owner"):
        grant_role(
            conn, Actor.user(conn, admin), world.a.tenant_id, group, Role.OWNER, world.a.root_node_id, at=T0
        )
    grant_role(conn, Actor.user(conn, admin), world.a.tenant_id, group, Role.ADMIN, world.nodes["spb"], at=T0)
    with pytest.raises(PermissionDenied):
        grant_role(
            conn, Actor.user(conn, regional), world.a.tenant_id, group, Role.VIEWER, world.nodes["spb"], at=T0
        )
    grant_role(
        conn, Actor.user(conn, regional), world.a.tenant_id, group, Role.VIEWER, world.nodes["arbat"], at=T0
    )


def test_notifications_respect_rights(conn, engine, world) -> None:
    moscow = kit.user_with_role(
        conn, world.a.tenant_id, "n@romashka.test", Role.VIEWER, world.nodes["moscow"]
    )
    can_notify = notification_filter(lambda: nullcontext(conn))

    def notice(key: str) -> AlertNotice:
        return AlertNotice(
            tenant_id=str(world.a.tenant_id),
            store_node_id=str(world.nodes[key]),
            store_name=key,
            register_id=world.registers[key],
            register_serial=key,
            rule="ofd_backlog",
            severity="major",
            status="firing",
            message="backlog",
        )

    receiver = Receiver("r1", str(world.a.tenant_id), "email", "n@romashka.test", principal_id=str(moscow))
    anonymous = Receiver("r2", str(world.a.tenant_id), "email", "ops@romashka.test")
    assert can_notify(receiver, notice("arbat"))
    assert not can_notify(receiver, notice("nevsky"))
    assert not can_notify(anonymous, notice("arbat"))  # default deny without a principal
