"""OFD contracts (edit, CSV import), КЭП orders (transitions, certificates, the gate) and the
append-only audit log."""

from __future__ import annotations

import sys
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from collector.accounts import kep_documents
from collector.accounts.audit import Actor, list_entries
from collector.accounts.contracts import ContractChange, import_contracts_csv, set_contract
from collector.accounts.errors import InvalidInput, KepRequired, NotFound, PermissionDenied
from collector.accounts.inn import InvalidNumber
from collector.accounts.kep import (
    IllegalTransition,
    IssuedCertificate,
    KepApplicant,
    KepState,
    KepSubject,
    advance,
    create_order,
    has_valid_kep,
    order_history,
    order_state,
    require_valid_kep,
)
from collector.accounts.rights import Role
from collector.accounts.schema import audit_log
from collector.storage import repository as repo

sys.path.insert(0, str(Path(__file__).parent))
import accounts_testkit as kit
from accounts_testkit import *  # noqa: F403  (the shared fixtures: conn, engine, mailer, service, world)

T0 = kit.T0
CLI = Actor.cli()
HEAD = KepApplicant(
    subject=KepSubject.HEAD,
    full_name="Иванов Иван Иванович",
    position="Генеральный директор",
    inn="500100732259",
    snils="112-233-445 95",
    email="head@romashka.test",
    phone="+7 900 000-00-00",
)


def test_contract_edit_is_audited_with_before_and_after(conn, world) -> None:
    register = world.registers["arbat"]
    owner = Actor.user(conn, world.a.user_id)
    set_contract(
        conn, owner, world.a.tenant_id, register, ContractChange(True, date(2027, 1, 31), "Год"), at=T0
    )
    set_contract(
        conn,
        owner,
        world.a.tenant_id,
        register,
        ContractChange(True, date(2028, 1, 31), " Год "),
        at=T0 + timedelta(days=1),
    )
    stored = repo.load_contracts(conn, [register])[register]
    assert (stored.activated, stored.paid_until, stored.tariff) == (True, date(2028, 1, 31), "Год")
    (latest, first) = list_entries(conn, world.a.tenant_id, target_type="register", target_id=register)[:2]
    assert first.details["before"] is None and latest.details["before"]["paid_until"] == "2027-01-31"
    assert latest.details["after"]["paid_until"] == "2028-01-31" and latest.actor == "owner@romashka.test"
    with pytest.raises(NotFound):
        set_contract(
            conn,
            owner,
            world.a.tenant_id,
            world.registers["b_store"],
            ContractChange(True, None, None),
            at=T0,
        )


def test_contract_csv_import_dry_run_then_apply(conn, world) -> None:
    text = "register_id;activated;paid_until;tariff\nkkt-arbat;да;31.12.2027;Год\nkkt-nevsky;нет;;\n"
    owner = Actor.user(conn, world.a.user_id)
    dry = import_contracts_csv(conn, owner, world.a.tenant_id, text, at=T0, dry_run=True)
    assert dry.ok and not dry.applied and len(dry.changes) == 2
    assert repo.load_contracts(conn, ["kkt-arbat", "kkt-nevsky"]) == {}
    applied = import_contracts_csv(conn, owner, world.a.tenant_id, text, at=T0, dry_run=False)
    assert applied.applied
    contracts = repo.load_contracts(conn, ["kkt-arbat", "kkt-nevsky"])
    assert (
        contracts["kkt-arbat"].paid_until == date(2027, 12, 31) and contracts["kkt-nevsky"].activated is False
    )


def test_contract_csv_with_errors_applies_nothing(conn, world) -> None:
    moscow_accountant = Actor.user(
        conn,
        kit.user_with_role(
            conn, world.a.tenant_id, "b@romashka.test", Role.ACCOUNTANT, world.nodes["moscow"]
        ),
    )
    text = (
        "register_id,activated,paid_until\n"
        "kkt-arbat,yes,2027-05-01\n"  # fine
        "kkt-tverskaya,maybe,2027-05-01\n"  # 3: bad boolean
        "kkt-tverskaya,yes,1 мая\n"  # 4: bad date
        "kkt-nevsky,yes,\n"  # 5: outside this accountant's grants
        "kkt-b_store,yes,\n"  # 6: another tenant's register
        ",yes,\n"  # 7: no id
        "kkt-arbat,no,\n"  # 8: repeated
    )
    report = import_contracts_csv(conn, moscow_accountant, world.a.tenant_id, text, at=T0, dry_run=False)
    assert not report.applied
    assert [e.line for e in report.errors] == [3, 4, 5, 6, 7, 8]
    messages = [e.message for e in report.errors]
    assert "да/нет" in messages[0] and "date" in messages[1] and "edit_contracts" in messages[2]
    assert "not found" in messages[3] and "line 2" in messages[5]
    assert repo.load_contracts(conn, ["kkt-arbat"]) == {}


def test_kep_order_walks_the_workflow_and_audits_every_move(conn, world) -> None:
    """The issuer (operator CLI) requests documents, issues, rejects; the customer uploads and says sent."""
    tenant = world.a.tenant_id
    owner = Actor.user(conn, world.a.user_id)
    assert not has_valid_kep(conn, tenant, T0).ok
    order = create_order(conn, owner, tenant, HEAD, at=T0)
    certificate = IssuedCertificate("01AB", "Иванов Иван Иванович", T0 + timedelta(days=365))
    with pytest.raises(IllegalTransition, match="requested to issued"):
        advance(conn, CLI, tenant, order, KepState.ISSUED, at=T0, certificate=certificate)
    with pytest.raises(IllegalTransition):
        advance(conn, owner, tenant, order, KepState.DOCUMENTS_RECEIVED, at=T0)
    with pytest.raises(PermissionDenied, match="only the КЭП issuer"):
        advance(conn, owner, tenant, order, KepState.DOCUMENTS_REQUESTED, at=T0, documents=["passport"])
    with pytest.raises(InvalidInput, match="at least one document"):
        advance(conn, CLI, tenant, order, KepState.DOCUMENTS_REQUESTED, at=T0)
    advance(conn, CLI, tenant, order, KepState.DOCUMENTS_REQUESTED, at=T0, note="паспорт, СНИЛС",
            documents=["passport", "snils", "passport"])
    assert kep_documents.requested(conn, tenant, order) == ["passport", "snils"]
    with pytest.raises(InvalidInput, match="upload every requested document"):
        advance(conn, owner, tenant, order, KepState.DOCUMENTS_RECEIVED, at=T0)
    kep_documents.add_document(conn, owner, tenant, order, "passport", "паспорт.pdf", b"%PDF-1.7 scan", at=T0)
    assert kep_documents.missing(conn, tenant, order) == ["snils"]
    kep_documents.add_document(conn, owner, tenant, order, "snils", "snils.png", b"\x89PNG\r\n\x1a\n...", at=T0)
    advance(conn, owner, tenant, order, KepState.DOCUMENTS_RECEIVED, at=T0 + timedelta(days=1))
    for user in (owner, Actor.user(conn, kit.user_with_role(conn, tenant, "adm@romashka.test", Role.ADMIN,
                                                             world.a.root_node_id))):
        with pytest.raises(PermissionDenied, match="only the КЭП issuer"):  # whatever the customer's role
            advance(conn, user, tenant, order, KepState.ISSUED, at=T0 + timedelta(days=2), certificate=certificate)
    with pytest.raises(InvalidInput, match="certificate"):
        advance(conn, CLI, tenant, order, KepState.ISSUED, at=T0 + timedelta(days=2))
    stale = IssuedCertificate("01AA", "Иванов Иван Иванович", T0)
    with pytest.raises(InvalidInput, match="expired"):
        advance(conn, CLI, tenant, order, KepState.ISSUED, at=T0 + timedelta(days=2), certificate=stale)
    assert order_state(conn, tenant, order) is KepState.DOCUMENTS_RECEIVED  # a refused move changes nothing
    valid_until = T0 + timedelta(days=365)
    advance(conn, CLI, tenant, order, KepState.ISSUED, at=T0 + timedelta(days=2), certificate=certificate)
    assert order_state(conn, tenant, order) is KepState.ISSUED
    with pytest.raises(IllegalTransition, match="closed"):
        advance(conn, CLI, tenant, order, KepState.REJECTED, at=T0, note="x")
    assert order_history(conn, tenant, order) == [
        (None, "requested"),
        ("requested", "documents_requested"),
        ("documents_requested", "documents_received"),
        ("documents_received", "issued"),
    ]
    actions = [
        e.action for e in reversed(list_entries(conn, tenant, target_type="kep_order", target_id=order))
    ]
    assert actions == ["kep.requested", "kep.documents_requested", "kep.document", "kep.document",
                       "kep.documents_received", "kep.issued"]
    check = has_valid_kep(conn, tenant, T0 + timedelta(days=3))
    assert check.ok and check.serial == "01AB" and check.valid_until == valid_until
    expired = has_valid_kep(conn, tenant, valid_until + timedelta(seconds=1))
    assert not expired.ok and "expired" in expired.message
    assert not has_valid_kep(conn, world.b.tenant_id, T0).ok  # tenant B has none


def test_rejection_needs_a_reason_and_closes_the_order(conn, world) -> None:
    order = create_order(conn, CLI, world.a.tenant_id, HEAD, at=T0)
    with pytest.raises(InvalidInput, match="why"):
        advance(conn, CLI, world.a.tenant_id, order, KepState.REJECTED, at=T0)
    advance(conn, CLI, world.a.tenant_id, order, KepState.REJECTED, at=T0, note="документы не получены")
    with pytest.raises(IllegalTransition):
        advance(conn, CLI, world.a.tenant_id, order, KepState.DOCUMENTS_REQUESTED, at=T0)
    with pytest.raises(NotFound):
        order_state(conn, world.b.tenant_id, order)


def test_kep_gate_message(conn, world) -> None:
    with pytest.raises(
        KepRequired, match="Registering a register with the ФНС needs a valid КЭП: the company has no КЭП yet"
    ):
        require_valid_kep(conn, world.a.tenant_id, T0, "Registering a register with the ФНС")


def test_kep_order_validates_the_applicant_and_rights(conn, world) -> None:
    tenant = world.a.tenant_id
    with pytest.raises(InvalidNumber):
        create_order(conn, CLI, tenant, replace(HEAD, inn="7707083893"), at=T0)  # a company ИНН
    with pytest.raises(InvalidNumber):
        create_order(conn, CLI, tenant, replace(HEAD, snils="112-233-445 96"), at=T0)
    with pytest.raises(InvalidInput, match="СНИЛС"):
        create_order(conn, CLI, tenant, replace(HEAD, subject=KepSubject.EMPLOYEE, snils=None), at=T0)
    operator = Actor.user(
        conn, kit.user_with_role(conn, tenant, "o@romashka.test", Role.OPERATOR, world.a.root_node_id)
    )
    with pytest.raises(PermissionDenied, match="kep_orders"):
        create_order(conn, operator, tenant, HEAD, at=T0)
    accountant = Actor.user(
        conn, kit.user_with_role(conn, tenant, "a@romashka.test", Role.ACCOUNTANT, world.a.root_node_id)
    )
    assert create_order(conn, accountant, tenant, HEAD, at=T0)


def test_audit_log_is_append_only_in_the_database(conn, world) -> None:
    assert list_entries(conn, world.a.tenant_id)
    for statement in (sa.update(audit_log).values(actor="someone else"), sa.delete(audit_log)):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"), conn.begin_nested():
            conn.execute(statement)
