"""Requests that legally need the company's КЭП: an application to the ФНС about a register, and an
e-document to the OFD (ЭДО).

The collector does not talk to the ФНС cabinet or the OFD's ЭДО itself. It checks what the law
asks of the sender — a valid qualified signature — and records the request with the certificate
that will sign it in the audit log, where the integration (or the person) that signs and sends it
picks it up. Without a valid КЭП the request is refused with what to do (``KepRequired``).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa

from collector.accounts import audit
from collector.accounts.audit import Actor
from collector.accounts.errors import InvalidInput
from collector.accounts.kep import KepCheck, require_valid_kep
from collector.accounts.rights import Permission, authorize

MAX_NOTE = 2000


class FnsApplication(StrEnum):
    REGISTRATION_CHANGE = "registration_change"  # перерегистрация ККТ
    FN_REPLACEMENT = "fn_replacement"  # замена ФН
    DEREGISTRATION = "deregistration"  # снятие с учёта


class OfdDocument(StrEnum):
    CONTRACT = "contract"  # договор с ОФД
    CONNECTION = "connection"  # заявление на подключение ККТ к ОФД
    ACT = "act"  # акт оказанных услуг


def _note(note: str) -> str:
    cleaned = note.strip()
    if len(cleaned) > MAX_NOTE:
        raise InvalidInput(f"the note is longer than {MAX_NOTE} characters")
    return cleaned


def apply_to_fns(
    conn: sa.Connection, actor: Actor, tenant_id: int, register_id: str, kind: FnsApplication, note: str, *,
    at: datetime,
) -> KepCheck:
    """A technical action on the register (``manage_registers``) that the company signs."""
    authorize(conn, actor, tenant_id, Permission.MANAGE_REGISTERS, register_id)
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
