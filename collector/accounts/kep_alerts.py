"""The КЭП-expiry alert: a company-level alert, one per tenant, in ``account_alerts``.

What matters to a company is whether it can still sign (an FNS application, e-documents with
the OFD), so the alert follows the certificate that lasts longest — the one ``has_valid_kep``
answers with. Thresholds are the catalogue's (warning 30 d, major 7 d, major once expired); the
certificate's last day is shown in the company's time zone. A newer certificate clears the alert.
The lifecycle is the register alerts' reducer (``collector.alerts.lifecycle``): raise, escalate
(which drops an acknowledgement), de-escalate, clear, raise again as a new occurrence.

``sweep`` runs beside the register sweep (the service calls it every evaluator period) and
returns the notices for what changed; nothing here sends them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from collector.accounts import audit
from collector.accounts.audit import Actor
from collector.accounts.company import DEFAULT_TIME_ZONE, thresholds_in_force
from collector.accounts.errors import InvalidInput, NotFound
from collector.accounts.rights import Permission, authorize
from collector.accounts.schema import account_alerts, kep_certificates, tenant_profiles
from collector.alerts import (
    NOTIFIED_CHANGES,
    AlertActionError,
    AlertRecord,
    AlertStatus,
    Condition,
    RuleId,
    Severity,
    apply,
    fix_text,
    kep_validity,
)
from collector.alerts import acknowledge as acknowledge_record
from collector.alerts.thresholds import Thresholds
from collector.notify.notice import COMPANY_GROUP, AlertNotice
from collector.storage.dialect import upsert_insert
from collector.storage.engine import begin_write
from collector.storage.schema import tenants

log = logging.getLogger(__name__)

RULE = RuleId.KEP_VALIDITY
KEP_PAGE = "/admin/kep"


def subject_key(tenant_id: int) -> str:
    """What the lifecycle reducer calls ``register_id``: the alert's subject, here the company."""
    return f"company:{tenant_id}"


@dataclass(frozen=True, slots=True)
class CompanyAlert:
    id: int
    tenant_id: int
    rule: str
    occurrence: int
    severity: str
    status: str
    acknowledged: bool
    acked_by: str | None
    acked_at: datetime | None
    started_at: datetime
    updated_at: datetime
    cleared_at: datetime | None
    message: str
    details: dict[str, Any]

    @property
    def fix(self) -> str | None:
        """What to do, in Russian (collector.alerts.fixes)."""
        return fix_text(self.rule, self.details)


@dataclass(frozen=True, slots=True)
class _Certificate:
    serial: str
    owner_name: str
    valid_until: datetime


def _longest_valid(conn: sa.Connection, tenant_ids: list[int] | None = None) -> dict[int, _Certificate]:
    query = sa.select(
        kep_certificates.c.tenant_id, kep_certificates.c.serial, kep_certificates.c.owner_name,
        kep_certificates.c.valid_until,
    ).order_by(kep_certificates.c.tenant_id, kep_certificates.c.valid_until.desc(), kep_certificates.c.id.desc())
    if tenant_ids is not None:
        query = query.where(kep_certificates.c.tenant_id.in_(tenant_ids))
    best: dict[int, _Certificate] = {}
    for row in conn.execute(query):
        best.setdefault(row.tenant_id, _Certificate(row.serial, row.owner_name, row.valid_until))
    return best


def kep_condition(certificate: _Certificate, now: datetime, thresholds: Thresholds, zone: tzinfo) -> Condition | None:
    condition = kep_validity(certificate.valid_until, now, thresholds, zone)
    if condition is None:
        return None
    return condition.model_copy(update={
        "message": f"{condition.message} (сертификат № {certificate.serial}, {certificate.owner_name})",
        "details": {**condition.details, "serial": certificate.serial, "owner_name": certificate.owner_name},
    })


def _record(row: sa.RowMapping) -> AlertRecord:
    return AlertRecord(
        register_id=subject_key(row["tenant_id"]), rule=RuleId(row["rule"]), occurrence=row["occurrence"],
        severity=Severity.parse(row["severity"]), status=AlertStatus(row["status"]),
        acknowledged=row["acknowledged"], acked_by=row["acked_by"], acked_at=row["acked_at"],
        started_at=row["started_at"], updated_at=row["updated_at"], cleared_at=row["cleared_at"],
        message=row["message"], details=dict(row["details"]), history=[],
    )


def _store(conn: sa.Connection, tenant_id: int, record: AlertRecord) -> None:
    values = {
        "occurrence": record.occurrence, "severity": record.severity.label, "status": record.status.value,
        "acknowledged": record.acknowledged, "acked_by": record.acked_by, "acked_at": record.acked_at,
        "started_at": record.started_at, "updated_at": record.updated_at, "cleared_at": record.cleared_at,
        "message": record.message, "details": record.details,
    }
    stmt = upsert_insert(conn, account_alerts).values(tenant_id=tenant_id, rule=record.rule.value, **values)
    conn.execute(stmt.on_conflict_do_update(
        index_elements=[account_alerts.c.tenant_id, account_alerts.c.rule],
        set_={name: stmt.excluded[name] for name in values},
    ))


def _rows(conn: sa.Connection, *conditions: sa.ColumnElement[bool]) -> list[sa.RowMapping]:
    query = sa.select(account_alerts).where(account_alerts.c.rule == RULE.value, *conditions)
    return list(conn.execute(query.order_by(account_alerts.c.tenant_id)).mappings())


def sweep(conn: sa.Connection, now: datetime, thresholds: Thresholds) -> list[AlertNotice]:
    """Bring every company's КЭП alert up to date at ``now``; the notices of what people must hear."""
    stored = {row["tenant_id"]: row for row in _rows(conn)}
    certificates = _longest_valid(conn)
    names = {row.id: row.name for row in conn.execute(sa.select(tenants.c.id, tenants.c.name))}
    profiles = {  # one read for every company, not two per company per sweep
        row.tenant_id: row for row in conn.execute(
            sa.select(tenant_profiles.c.tenant_id, tenant_profiles.c.time_zone, tenant_profiles.c.alert_thresholds)
        )
    }
    notices: list[AlertNotice] = []
    for tenant_id in sorted(stored.keys() | certificates.keys()):
        certificate, profile = certificates.get(tenant_id), profiles.get(tenant_id)
        company_thresholds = thresholds_in_force(thresholds, profile.alert_thresholds if profile else None, tenant_id)
        zone = ZoneInfo(profile.time_zone if profile else DEFAULT_TIME_ZONE)
        condition = None if certificate is None else kep_condition(certificate, now, company_thresholds, zone)
        before = _record(stored[tenant_id]) if tenant_id in stored else None
        after, changes = apply(before, condition, now, register_id=subject_key(tenant_id),
                               pending=company_thresholds.pending_for(RULE))
        if after is None:
            if before is None:
                continue
            conn.execute(sa.delete(account_alerts).where(account_alerts.c.tenant_id == tenant_id,
                                                         account_alerts.c.rule == RULE.value))
            continue
        if after is before:  # the reducer hands back the very record when nothing changed
            continue
        _store(conn, tenant_id, after)
        if after.status is not AlertStatus.PENDING and any(c.kind in NOTIFIED_CHANGES for c in changes):
            notices.append(_notice(tenant_id, names.get(tenant_id, str(tenant_id)), after))
    return notices


def _notice(tenant_id: int, company_name: str, record: AlertRecord) -> AlertNotice:
    return AlertNotice(
        tenant_id=str(tenant_id), store_node_id=COMPANY_GROUP, store_name=company_name, register_id="",
        register_serial="", rule=record.rule.value, severity=record.severity.label,
        status="resolved" if record.status is AlertStatus.CLEARED else "firing", message=record.message,
        url=KEP_PAGE, fix=fix_text(record.rule, record.details),
    )


def _alert(row: sa.RowMapping) -> CompanyAlert:
    return CompanyAlert(**{name: row[name] for name in CompanyAlert.__slots__})


def company_alerts(conn: sa.Connection, actor: Actor, tenant_id: int, *, active_only: bool = False) -> list[CompanyAlert]:
    """The company's КЭП alert(s), for those who handle КЭП (``kep_orders`` on the whole company)."""
    authorize(conn, actor, tenant_id, Permission.KEP_ORDERS, None)
    rows = _rows(conn, account_alerts.c.tenant_id == tenant_id)
    return [_alert(r) for r in rows if not active_only or r["status"] == AlertStatus.ACTIVE.value]


def acknowledge(conn: sa.Connection, actor: Actor, tenant_id: int, alert_id: int, *, at: datetime) -> CompanyAlert:
    """Acknowledge (idempotent); another company's alert is ``NotFound``."""
    authorize(conn, actor, tenant_id, Permission.KEP_ORDERS, None)
    found = _rows(conn, account_alerts.c.id == alert_id, account_alerts.c.tenant_id == tenant_id)
    if not found:
        raise NotFound(f"company alert {alert_id} not found")
    record = _record(found[0])
    try:
        acked, changes = acknowledge_record(record, actor.label, at)
    except AlertActionError as exc:
        raise InvalidInput(str(exc)) from None
    if changes:
        _store(conn, tenant_id, acked)
        audit.record(conn, actor, tenant_id=tenant_id, action="company_alert.ack", target_type="company_alert",
                     target_id=alert_id, at=at, details={"rule": RULE.value, "severity": acked.severity.label})
    return _alert(_rows(conn, account_alerts.c.id == alert_id)[0])


# Several collector processes sweep on the same schedule. On SQLite the write transaction already
# serialises them (the second sees the first one's rows); on PostgreSQL both would read the old row
# and both notify, so the sweep holds a transaction-scoped advisory lock and a busy one is skipped.
SWEEP_LOCK_ID = 0x6B61_7373_6B65  # "kasske"


def _sweep_lock(conn: sa.Connection) -> bool:
    if conn.dialect.name != "postgresql":
        return True
    return bool(conn.execute(sa.select(sa.func.pg_try_advisory_xact_lock(SWEEP_LOCK_ID))).scalar_one())


class KepAlertSweep:
    """``sweep`` in its own transaction, its notices handed to ``notify`` after the commit.

    The service hangs it on the evaluator's periodic sweep; a failing ``notify`` is logged and
    never undoes the stored alert (the change is not lost, only its message)."""

    def __init__(self, engine: sa.Engine, thresholds: Thresholds, *, notify: Callable[[AlertNotice], None] | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._engine = engine
        self._thresholds = thresholds
        self._notify = notify
        self._clock = clock

    def __call__(self) -> list[AlertNotice]:
        with begin_write(self._engine) as conn:
            if not _sweep_lock(conn):
                return []  # another collector process is sweeping right now: it tells people, not us
            notices = sweep(conn, self._clock(), self._thresholds)
        if self._notify is not None:
            for notice in notices:
                try:
                    self._notify(notice)
                except Exception:
                    log.exception("handing the КЭП alert of company %s to the notifier failed", notice.tenant_id)
        return notices
