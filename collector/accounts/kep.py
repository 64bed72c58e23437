"""КЭП orders (a qualified e-signature for the company head or an employee) and certificates.

An order moves requested → documents_requested → documents_received → issued | rejected and
only along those arrows (rejection is possible from any open state); each move writes a row
to ``kep_order_history`` and an audit entry. Two sides move it: the issuer (the service
provider's staff, through the operator CLI) asks for documents, issues and rejects; the
customer only says the requested documents are sent, once each is uploaded — no user of the
customer company can issue their own order, whatever their role. Issuing records the
certificate (serial, owner, valid-until). A company may also enter a certificate it already
has (``enter_certificate``: the .cer file, checked against the company's ИНН).
``has_valid_kep`` gates the actions that legally need a signature, with a message that says
what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa

from collector.accounts import audit, kep_documents
from collector.accounts.audit import Actor
from collector.accounts.certificates import CertificateInfo, check_belongs_to
from collector.accounts.errors import Conflict, InvalidInput, KepRequired, NotFound, PermissionDenied
from collector.accounts.inn import check_inn, check_snils
from collector.accounts.names import clean_name
from collector.accounts.rights import Permission, authorize
from collector.accounts.schema import kep_certificates, kep_order_history, kep_orders, tenant_profiles
from collector.accounts.service import normalise_email


class KepState(StrEnum):
    REQUESTED = "requested"
    DOCUMENTS_REQUESTED = "documents_requested"
    DOCUMENTS_RECEIVED = "documents_received"
    ISSUED = "issued"
    REJECTED = "rejected"


class KepSubject(StrEnum):
    HEAD = "head"  # the company head: signs for the organisation
    EMPLOYEE = "employee"  # an employee with a power of attorney (МЧД)


TRANSITIONS: dict[KepState, frozenset[KepState]] = {
    KepState.REQUESTED: frozenset({KepState.DOCUMENTS_REQUESTED, KepState.REJECTED}),
    KepState.DOCUMENTS_REQUESTED: frozenset({KepState.DOCUMENTS_RECEIVED, KepState.REJECTED}),
    KepState.DOCUMENTS_RECEIVED: frozenset({KepState.ISSUED, KepState.REJECTED}),
    KepState.ISSUED: frozenset(),
    KepState.REJECTED: frozenset(),
}


# Moves only the issuer makes (the operator CLI: ``Actor.cli()``); the customer's side only says
# the requested documents are sent.
ISSUER_MOVES = frozenset({KepState.DOCUMENTS_REQUESTED, KepState.ISSUED, KepState.REJECTED})
OPEN_STATES = frozenset({KepState.REQUESTED, KepState.DOCUMENTS_REQUESTED, KepState.DOCUMENTS_RECEIVED})


class IllegalTransition(InvalidInput):
    """A state change the workflow does not allow."""


@dataclass(frozen=True, slots=True)
class KepApplicant:
    subject: KepSubject
    full_name: str
    position: str
    inn: str  # the person's ИНН (12 digits)
    snils: str | None
    email: str
    phone: str = ""


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    serial: str
    owner_name: str
    valid_until: datetime


@dataclass(frozen=True, slots=True)
class KepCheck:
    ok: bool
    message: str
    serial: str | None = None
    valid_until: datetime | None = None


def create_order(
    conn: sa.Connection, actor: Actor, tenant_id: int, applicant: KepApplicant, *, at: datetime
) -> int:
    authorize(conn, actor, tenant_id, Permission.KEP_ORDERS, None)
    subject = KepSubject(applicant.subject)
    snils = None if not applicant.snils else check_snils(applicant.snils)
    if subject is KepSubject.EMPLOYEE and snils is None:
        raise InvalidInput("an employee's КЭП needs the СНИЛС")
    values = {
        "tenant_id": tenant_id,
        "subject": subject.value,
        "full_name": clean_name(applicant.full_name, "full name"),
        "position": clean_name(applicant.position, "position"),
        "inn": check_inn(applicant.inn, person=True),
        "snils": snils,
        "email": normalise_email(applicant.email),
        "phone": applicant.phone.strip()[:30],
        "state": KepState.REQUESTED.value,
        "requested_by": actor.user_id,
        "created_at": at,
        "updated_at": at,
    }
    order_id = int(
        conn.execute(sa.insert(kep_orders).values(**values).returning(kep_orders.c.id)).scalar_one()
    )
    _history(conn, actor, tenant_id, order_id, None, KepState.REQUESTED, "", at)
    return order_id


def order_state(conn: sa.Connection, tenant_id: int, order_id: int) -> KepState:
    state = conn.execute(
        sa.select(kep_orders.c.state).where(kep_orders.c.id == order_id, kep_orders.c.tenant_id == tenant_id)
    ).scalar_one_or_none()
    if state is None:
        raise NotFound(f"КЭП order {order_id} not found")
    return KepState(state)


def advance(
    conn: sa.Connection,
    actor: Actor,
    tenant_id: int,
    order_id: int,
    to: KepState,
    *,
    at: datetime,
    note: str = "",
    certificate: IssuedCertificate | None = None,
    documents: Sequence[str] = (),
) -> None:
    """Move the order; ``issued`` needs the certificate, ``rejected`` a note with the reason,
    ``documents_requested`` names the ``documents`` asked for. Only the issuer (no user) may
    request documents, issue or reject; a user may say the documents are sent once all are uploaded."""
    authorize(conn, actor, tenant_id, Permission.KEP_ORDERS, None)
    current = order_state(conn, tenant_id, order_id)
    if actor.user_id is not None and to in ISSUER_MOVES:
        raise PermissionDenied(
            f"only the КЭП issuer (the service provider's staff) may move an order to {to}; {actor.label} cannot"
        )
    if to not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none (the order is closed)"
        raise IllegalTransition(f"a КЭП order cannot go from {current} to {to}; allowed: {allowed}")
    if (to is KepState.ISSUED) != (certificate is not None):
        raise InvalidInput("the certificate is given exactly when the order is issued")
    if to is KepState.REJECTED and not note.strip():
        raise InvalidInput("say why the order is rejected")
    asked = kep_documents.check_kinds(documents) if to is KepState.DOCUMENTS_REQUESTED else None
    if to is KepState.DOCUMENTS_RECEIVED and actor.user_id is not None:
        still_missing = kep_documents.missing(conn, tenant_id, order_id)
        if still_missing:
            raise InvalidInput(
                "upload every requested document first; missing: "
                + ", ".join(kep_documents.DOCUMENT_KINDS[kind] for kind in still_missing)
            )
    if certificate is not None:
        if not certificate.serial.strip():
            raise InvalidInput("the certificate serial is empty")
        if certificate.valid_until <= at:
            raise InvalidInput("the certificate is already expired")
        owner_name = clean_name(certificate.owner_name, "certificate owner")
    # The state is part of the WHERE, so two concurrent moves cannot both succeed.
    moved = conn.execute(
        sa.update(kep_orders)
        .where(kep_orders.c.id == order_id, kep_orders.c.state == current.value)
        .values(
            state=to.value, updated_at=at, reject_reason=note.strip() if to is KepState.REJECTED else None,
            **({} if asked is None else {"requested_documents": asked}),
        )
    ).rowcount
    if moved != 1:
        raise IllegalTransition(f"КЭП order {order_id} changed meanwhile; reload it")
    if certificate is not None:
        conn.execute(
            sa.insert(kep_certificates).values(
                tenant_id=tenant_id,
                order_id=order_id,
                serial=certificate.serial.strip(),
                owner_name=owner_name,
                issued_at=at,
                valid_until=certificate.valid_until,
            )
        )
    _history(conn, actor, tenant_id, order_id, current, to, note, at)


def _history(
    conn: sa.Connection,
    actor: Actor,
    tenant_id: int,
    order_id: int,
    frm: KepState | None,
    to: KepState,
    note: str,
    at: datetime,
) -> None:
    conn.execute(
        sa.insert(kep_order_history).values(
            order_id=order_id,
            at=at,
            from_state=None if frm is None else frm.value,
            to_state=to.value,
            actor_id=actor.user_id,
            note=note,
        )
    )
    audit.record(
        conn,
        actor,
        tenant_id=tenant_id,
        action=f"kep.{to.value}",
        target_type="kep_order",
        target_id=order_id,
        at=at,
        details={"from": None if frm is None else frm.value, "to": to.value, "note": note},
    )


def enter_certificate(
    conn: sa.Connection, actor: Actor, tenant_id: int, info: CertificateInfo, *, at: datetime
) -> None:
    """Record a certificate the company already has (parsed from its .cer file); refused unless it
    was issued for the company's ИНН and is valid now, or when it is already entered."""
    authorize(conn, actor, tenant_id, Permission.KEP_ORDERS, None)
    company_inn = conn.execute(
        sa.select(tenant_profiles.c.inn).where(tenant_profiles.c.tenant_id == tenant_id)
    ).scalar_one_or_none()
    if company_inn is None:
        raise NotFound(f"company {tenant_id} has no profile")
    check_belongs_to(info, company_inn, at)
    known = conn.execute(
        sa.select(kep_certificates.c.id).where(
            kep_certificates.c.tenant_id == tenant_id, kep_certificates.c.serial == info.serial
        )
    ).first()
    if known is not None:
        raise Conflict(f"the certificate {info.serial} is already entered")
    conn.execute(
        sa.insert(kep_certificates).values(
            tenant_id=tenant_id, order_id=None, serial=info.serial, owner_name=info.owner_name,
            issued_at=info.valid_from, valid_until=info.valid_until,
        )
    )
    audit.record(conn, actor, tenant_id=tenant_id, action="kep.certificate_entered", target_type="tenant",
                 target_id=tenant_id, at=at,
                 details={"serial": info.serial, "owner": info.owner_name, "valid_until": info.valid_until.isoformat()})


def open_order(conn: sa.Connection, tenant_id: int) -> tuple[int, KepState] | None:
    """The newest order still in progress (so the pages say «КЭП заказана», not «нет КЭП»)."""
    row = conn.execute(
        sa.select(kep_orders.c.id, kep_orders.c.state)
        .where(kep_orders.c.tenant_id == tenant_id, kep_orders.c.state.in_([s.value for s in OPEN_STATES]))
        .order_by(kep_orders.c.id.desc())
        .limit(1)
    ).first()
    return None if row is None else (int(row.id), KepState(row.state))


def order_history(conn: sa.Connection, tenant_id: int, order_id: int) -> list[tuple[str | None, str]]:
    order_state(conn, tenant_id, order_id)
    rows = conn.execute(
        sa.select(kep_order_history.c.from_state, kep_order_history.c.to_state)
        .where(kep_order_history.c.order_id == order_id)
        .order_by(kep_order_history.c.id)
    )
    return [(r.from_state, r.to_state) for r in rows]


def has_valid_kep(conn: sa.Connection, tenant_id: int, now: datetime) -> KepCheck:
    """The company's longest-valid certificate at ``now``, or why there is none."""
    row = conn.execute(
        sa.select(kep_certificates.c.serial, kep_certificates.c.valid_until)
        .where(kep_certificates.c.tenant_id == tenant_id, kep_certificates.c.valid_until > now)
        .order_by(kep_certificates.c.valid_until.desc())
        .limit(1)
    ).first()
    if row is not None:
        return KepCheck(
            True, f"КЭП {row.serial} valid until {row.valid_until:%Y-%m-%d}", row.serial, row.valid_until
        )
    expired = conn.execute(
        sa.select(sa.func.max(kep_certificates.c.valid_until)).where(
            kep_certificates.c.tenant_id == tenant_id
        )
    ).scalar_one_or_none()
    if expired is not None:
        return KepCheck(
            False, f"the company's КЭП expired on {expired:%Y-%m-%d}; order a new one under КЭП orders"
        )
    return KepCheck(
        False, "the company has no КЭП yet; order one under КЭП orders (sign-up did not need one)"
    )


def require_valid_kep(conn: sa.Connection, tenant_id: int, now: datetime, action: str) -> KepCheck:
    """Raise ``KepRequired`` (saying which action and what to do) unless a КЭП is valid now."""
    check = has_valid_kep(conn, tenant_id, now)
    if not check.ok:
        raise KepRequired(f"{action} needs a valid КЭП: {check.message}")
    return check
