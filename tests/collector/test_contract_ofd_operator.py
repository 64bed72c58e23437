"""The contracted OFD in the contract registry: set by key, name or ИНН, imported from CSV,
audited; an unknown operator is refused naming the known ones."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import pytest

from collector.accounts.audit import Actor, list_entries
from collector.accounts.contracts import ContractChange, import_contracts_csv, set_contract
from collector.accounts.errors import InvalidInput
from collector.alerts.ofd_operators import parse_operator
from collector.storage import repository as repo

sys.path.insert(0, str(Path(__file__).parent))
import accounts_testkit as kit
from accounts_testkit import *  # noqa: F403  (the shared fixtures: conn, engine, mailer, service, world)

T0 = kit.T0


@pytest.mark.parametrize("named", ["taxcom", "Такском", "7704211201", " TAXCOM "])
def test_operator_is_named_by_key_name_or_inn(named: str) -> None:
    assert parse_operator(named) == "taxcom"


def test_empty_operator_is_unknown_and_a_wrong_one_names_the_known() -> None:
    assert parse_operator("  ") is None
    with pytest.raises(ValueError, match="first-ofd"):
        parse_operator("ОФД Рога и копыта")


def test_set_contract_stores_and_audits_the_operator(conn, world) -> None:
    register = world.registers["arbat"]
    owner = Actor.user(conn, world.a.user_id)
    set_contract(conn, owner, world.a.tenant_id, register, ContractChange(True, date(2027, 1, 31), None, "Первый ОФД"), at=T0)
    assert repo.load_contracts(conn, [register])[register].ofd_operator == "first-ofd"
    (entry,) = list_entries(conn, world.a.tenant_id, target_type="register", target_id=register)[:1]
    assert entry.details["after"]["ofd_operator"] == "first-ofd"
    with pytest.raises(InvalidInput, match="unknown OFD"):
        set_contract(conn, owner, world.a.tenant_id, register, ContractChange(True, None, None, "нет такого"), at=T0)


def test_csv_import_reads_the_ofd_column(conn, world) -> None:
    owner = Actor.user(conn, world.a.user_id)
    text = "register_id;activated;ofd\nkkt-arbat;да;kkt.sbis.ru\n"
    report = import_contracts_csv(conn, owner, world.a.tenant_id, text, at=T0, dry_run=True)
    assert [e.line for e in report.errors] == [2] and "unknown OFD" in report.errors[0].message
    text = "register_id;activated;ofd\nkkt-arbat;да;7605016030\nkkt-nevsky;да;\n"
    assert import_contracts_csv(conn, owner, world.a.tenant_id, text, at=T0, dry_run=False).applied
    contracts = repo.load_contracts(conn, ["kkt-arbat", "kkt-nevsky"])
    assert (contracts["kkt-arbat"].ofd_operator, contracts["kkt-nevsky"].ofd_operator) == ("sbis", None)
