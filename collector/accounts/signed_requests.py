"""Requests that legally need the company's КЭП: an application to the ФНС about a register, and an
e-document to the OFD (ЭДО).

The collector does not talk to the ФНС cabinet or the OFD's ЭДО itself. It checks what the law
asks of the sender — a valid qualified signature — and records the request with the certificate
that will sign it in the audit log, where the integration (or the person) that signs and sends it
picks it up. Without a valid КЭП the request is refused with what to do (``KepRequired``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa

from collector.accounts import audit
from collector.accounts.audit import Actor
from collector.accounts.errors import InvalidInput
from collector.accounts.kep import KepCheck, require_valid_kep
from collector.accounts.rights import Permission, authorize
from collector.accounts.schema import audit_log

MAX_NOTE = 2000


class FnsApplication(StrEnum):
    REGISTRATION = "registration"  # регистрация ККТ
    REGISTRATION_CHANGE = "registration_change"  # перерегистрация ККТ
    FN_REPLACEMENT = "fn_replacement"  # замена ФН
    DEREGISTRATION = "deregistration"  # снятие с учёта


class OfdDocument(StrEnum):
    CONTRACT = "contract"  # договор с ОФД
    CONNECTION = "connection"  # заявление на подключение ККТ к ОФД
    ACT = "act"  # акт оказанных услуг


# What a person reads, in the order the forms offer them.
FNS_TITLES: dict[str, str] = {
    FnsApplication.REGISTRATION: "регистрация ККТ",
    FnsApplication.FN_REPLACEMENT: "перерегистрация при замене ФН",
    FnsApplication.REGISTRATION_CHANGE: "перерегистрация ККТ (другие изменения)",
    FnsApplication.DEREGISTRATION: "снятие ККТ с учёта",
}
OFD_TITLES: dict[str, str] = {
    OfdDocument.CONNECTION: "заявление на подключение ККТ",
    OfdDocument.CONTRACT: "договор с ОФД",
    OfdDocument.ACT: "акт оказанных услуг",
}
_ACTIONS = {"register.fns_application": "ФНС", "ofd.document": "ОФД"}
# The collector records the request; signing and sending belong to the integration (see above).
RECORDED_STATUS = "записано, ждёт подписи КЭП и отправки"


@dataclass(frozen=True, slots=True)
class SubmittedRequest:
    at: datetime
    to: str  # "ФНС" or "ОФД"
    title: str
    actor: str
    note: str
    kep_serial: str | None
    register_id: str | None  # None: a company-wide OFD document
    status: str = RECORDED_STATUS


def _note(note: str) -> str:
    cleaned = note.strip()
    if len(cleaned) > MAX_NOTE:
        raise InvalidInput(f"the note is longer than {MAX_NOTE} characters")
    return cleaned


def apply_to_fns(
    conn: sa.Connection, actor: Actor, tenant_id: int, register_id: str, kind: FnsApplication, note: str, *,
    at: datetime, confirmed: bool = False,
) -> KepCheck:
    """A technical action on the register (``manage_registers``) that the company signs.
    Deregistration ends the register's fiscal life, so it must be ``confirmed``."""
    authorize(conn, actor, tenant_id, Permission.MANAGE_REGISTERS, register_id)
    if FnsApplication(kind) is FnsApplication.DEREGISTRATION and not confirmed:
        raise InvalidInput("deregistration must be confirmed: the register will no longer be able to sell")
    check = require_valid_kep(conn, tenant_id, at, "an application to the ФНС")
    audit.record(conn, actor, tenant_id=tenant_id, action="register.fns_application", target_type="register",
                 target_id=register_id, at=at,
                 details={"kind": FnsApplication(kind).value, "note": _note(note), "kep_serial": check.serial})
    return check


def send_to_ofd(
    conn: sa.Connection, actor: Actor, tenant_id: int, kind: OfdDocument, note: str, *, at: datetime,
    register_id: str | None = None,
) -> KepCheck:
    """An accountant's document for the OFD (``edit_contracts`` on the register, or the company)."""
    authorize(conn, actor, tenant_id, Permission.EDIT_CONTRACTS, register_id)
    check = require_valid_kep(conn, tenant_id, at, "an e-document to the OFD")
    audit.record(conn, actor, tenant_id=tenant_id, action="ofd.document",
                 target_type="register" if register_id else "tenant", target_id=register_id or tenant_id, at=at,
                 details={"kind": OfdDocument(kind).value, "note": _note(note), "kep_serial": check.serial})
    return check


def submitted(
    conn: sa.Connection, tenant_id: int, register_id: str | None = None, *, limit: int = 20
) -> list[SubmittedRequest]:
    """The ФНС applications and OFD documents recorded for this register (None: the whole company), newest first."""
    query = (
        sa.select(audit_log.c.at, audit_log.c.action, audit_log.c.actor, audit_log.c.details, audit_log.c.target_type,
                  audit_log.c.target_id)
        .where(audit_log.c.tenant_id == tenant_id, audit_log.c.action.in_(list(_ACTIONS)))
        .order_by(audit_log.c.at.desc(), audit_log.c.id.desc())
        .limit(limit)
    )
    if register_id is not None:
        query = query.where(audit_log.c.target_type == "register", audit_log.c.target_id == register_id)
    rows = conn.execute(query)
    found = []
    for row in rows:
        kind = str(row.details.get("kind", ""))
        titles = FNS_TITLES if row.action == "register.fns_application" else OFD_TITLES
        found.append(SubmittedRequest(row.at, _ACTIONS[row.action], titles.get(kind, kind), row.actor,
                                      str(row.details.get("note", "")), row.details.get("kep_serial"),
                                      row.target_id if row.target_type == "register" else None))
    return found
