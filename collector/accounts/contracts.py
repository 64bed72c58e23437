"""The OFD contract registry per register (activated, paid-until, tariff, the operator): edits
checked against the ``edit_contracts`` permission, CSV import with a dry run, every change audited.

CSV columns: ``register_id`` and ``activated`` (да/нет, yes/no, true/false, 1/0) required;
``paid_until`` (YYYY-MM-DD or DD.MM.YYYY, empty = unknown), ``tariff`` and ``ofd`` (the operator:
its key, name or ИНН from ``collector.alerts.ofd_operators``; empty = unknown) optional.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa

from collector.accounts import audit
from collector.accounts.audit import Actor
from collector.accounts.csvrows import ImportReport, read_rows
from collector.accounts.errors import AccountsError, InvalidInput, NotFound
from collector.accounts.rights import Permission, authorize
from collector.alerts.ofd_operators import parse_operator
from collector.storage.contracts import load_contracts, upsert_contract
from collector.storage.rows import ContractRow
from collector.storage.schema import registers

_TRUE = {"да", "yes", "true", "1", "y", "д"}
_FALSE = {"нет", "no", "false", "0", "n", "н"}
MAX_TARIFF_LENGTH = 200


@dataclass(frozen=True, slots=True)
class ContractChange:
    activated: bool
    paid_until: date | None
    tariff: str | None
    ofd_operator: str | None = None  # an ``ofd_operators`` key (checked by ``parse_ofd``)


def parse_activated(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise InvalidInput(f"activated must be да/нет (yes/no), got {value!r}")


def parse_paid_until(value: str) -> date | None:
    value = value.strip()
    if not value:
        return None
    for pattern in ("%Y-%m-%d", "%d.%m.%Y"):
        try:
            return datetime.strptime(value, pattern).date()
        except ValueError:
            continue
    raise InvalidInput(f"paid_until must be a date like 2027-03-31 or 31.03.2027, got {value!r}")


def parse_ofd(value: str | None) -> str | None:
    """The contracted OFD as its key; None when not given."""
    try:
        return parse_operator(value or "")
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


def _check_tariff(tariff: str | None) -> str | None:
    if tariff is None or not tariff.strip():
        return None
    if len(tariff.strip()) > MAX_TARIFF_LENGTH:
        raise InvalidInput(f"the tariff must be at most {MAX_TARIFF_LENGTH} characters")
    return tariff.strip()


def _require_register(conn: sa.Connection, tenant_id: int, register_id: str) -> None:
    found = conn.execute(
        sa.select(registers.c.register_id).where(
            registers.c.register_id == register_id, registers.c.tenant_id == tenant_id
        )
    ).first()
    if found is None:
        raise NotFound(f"register {register_id!r} not found")


def _contract_json(contract: ContractRow | None) -> dict[str, object] | None:
    if contract is None:
        return None
    return {
        "activated": contract.activated,
        "paid_until": None if contract.paid_until is None else contract.paid_until.isoformat(),
        "tariff": contract.tariff,
        "ofd_operator": contract.ofd_operator,
    }


def _write(
    conn: sa.Connection, actor: Actor, tenant_id: int, register_id: str, change: ContractChange, at: datetime
) -> None:
    before = load_contracts(conn, [register_id]).get(register_id)
    after = ContractRow(register_id, change.activated, change.paid_until, change.tariff, at, change.ofd_operator)
    upsert_contract(conn, after)
    audit.record(
        conn,
        actor,
        tenant_id=tenant_id,
        action="contract.set",
        target_type="register",
        target_id=register_id,
        at=at,
        details={"before": _contract_json(before), "after": _contract_json(after)},
    )


def set_contract(
    conn: sa.Connection,
    actor: Actor,
    tenant_id: int,
    register_id: str,
    change: ContractChange,
    *,
    at: datetime,
) -> None:
    _require_register(conn, tenant_id, register_id)
    authorize(conn, actor, tenant_id, Permission.EDIT_CONTRACTS, register_id)
    _write(
        conn,
        actor,
        tenant_id,
        register_id,
        ContractChange(change.activated, change.paid_until, _check_tariff(change.tariff), parse_ofd(change.ofd_operator)),
        at,
    )


def get_contract(conn: sa.Connection, actor: Actor, tenant_id: int, register_id: str) -> ContractRow | None:
    _require_register(conn, tenant_id, register_id)
    authorize(conn, actor, tenant_id, Permission.VIEW, register_id)
    return load_contracts(conn, [register_id]).get(register_id)


def import_contracts_csv(
    conn: sa.Connection, actor: Actor, tenant_id: int, text: str, *, at: datetime, dry_run: bool
) -> ImportReport:
    """Check every line; apply all of them in one savepoint only when none has an error."""
    report = ImportReport()
    planned: dict[str, tuple[int, ContractChange]] = {}
    for row in read_rows(
        text, report, required={"register_id", "activated"}, optional={"paid_until", "tariff", "ofd"}
    ):
        register_id = row.values["register_id"]
        if not register_id:
            report.error(row.line, "register_id is empty")
            continue
        if register_id in planned:
            report.error(row.line, f"register {register_id!r} is already on line {planned[register_id][0]}")
            continue
        try:
            change = ContractChange(
                parse_activated(row.values["activated"]),
                parse_paid_until(row.values.get("paid_until", "")),
                _check_tariff(row.values.get("tariff")),
                parse_ofd(row.values.get("ofd")),
            )
            _require_register(conn, tenant_id, register_id)
            authorize(conn, actor, tenant_id, Permission.EDIT_CONTRACTS, register_id)
        except AccountsError as exc:
            report.error(row.line, str(exc))
            continue
        planned[register_id] = (row.line, change)
        paid = "unknown" if change.paid_until is None else change.paid_until.isoformat()
        report.changes.append(
            f"line {row.line}: {register_id}: activated={'yes' if change.activated else 'no'}, paid until {paid}"
        )
    if report.errors or dry_run:
        return report
    with conn.begin_nested():
        for register_id, (_line, change) in planned.items():
            _write(conn, actor, tenant_id, register_id, change, at)
    report.applied = True
    return report
