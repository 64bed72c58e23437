"""The КЭП-expiry alert: a company-level alert fed by the issued certificates.

Lifecycle against the catalogue's thresholds (warning 30 d, major 7 d, major once expired, a newer
certificate clears it), the company's time zone in its message, who hears about it (only those
who handle КЭП for the whole company), how the e-mail reads without a register, and the sweep
hung on the evaluator's periodic sweep.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))
from accounts_testkit import *  # noqa: F403
from accounts_testkit import T0, World, user_with_role

from collector.accounts import company, kep_alerts
from collector.accounts.audit import Actor
from collector.accounts.errors import NotFound, PermissionDenied
from collector.accounts.rights import Role, notification_filter
from collector.accounts.schema import account_alerts, kep_certificates
from collector.alerts import Thresholds
from collector.ingest.engine import AlertEngine, EvaluationWorker
from collector.notify import NotificationGrouper, Renderer
from collector.notify.notice import COMPANY_GROUP, AlertNotice, Receiver
from collector.storage.engine import begin_write
from collector.storage.schema import tenants

THRESHOLDS = Thresholds()


def add_certificate(conn: sa.Connection, tenant_id: int, serial: str, valid_until: datetime) -> None:
    conn.execute(sa.insert(kep_certificates).values(
        tenant_id=tenant_id, serial=serial, owner_name="Сидоров Пётр Ильич", issued_at=T0 - timedelta(days=300),
        valid_until=valid_until))


def stored(conn: sa.Connection, tenant_id: int) -> sa.RowMapping | None:
    return conn.execute(sa.select(account_alerts).where(account_alerts.c.tenant_id == tenant_id)).mappings().first()


def test_the_alert_follows_the_longest_valid_certificate_through_its_life(conn: sa.Connection, world: World) -> None:
    tenant = world.a.tenant_id
    expires = T0 + timedelta(days=40)
    add_certificate(conn, tenant, "AA-01", expires)
    assert kep_alerts.sweep(conn, T0, THRESHOLDS) == [] and stored(conn, tenant) is None  # 40 days left

    warned = kep_alerts.sweep(conn, expires - timedelta(days=29), THRESHOLDS)
    assert [(n.severity, n.status) for n in warned] == [("warning", "firing")]
    assert warned[0].register_id == "" and warned[0].store_node_id == COMPANY_GROUP
    assert warned[0].store_name == "Ромашка" and warned[0].url == "/admin/kep"
    assert "AA-01" in warned[0].message and "Сидоров" in warned[0].message
    assert warned[0].fix is not None and "КЭП" in warned[0].fix
    assert kep_alerts.sweep(conn, expires - timedelta(days=28), THRESHOLDS) == []  # no news a day later

    owner = Actor.user(conn, world.a.user_id)
    alert_id = stored(conn, tenant)["id"]
    acked = kep_alerts.acknowledge(conn, owner, tenant, alert_id, at=expires - timedelta(days=20))
    assert acked.acknowledged and acked.acked_by == "owner@romashka.test"

    major = kep_alerts.sweep(conn, expires - timedelta(days=6), THRESHOLDS)
    assert [(n.severity, n.status) for n in major] == [("major", "firing")]
    row = stored(conn, tenant)
    assert row["acknowledged"] is False  # a worse problem needs a fresh look

    after = kep_alerts.sweep(conn, expires + timedelta(days=1), THRESHOLDS)
    assert after == []  # still major: the message changes, nobody is paged again
    assert "истёк" in stored(conn, tenant)["message"] and stored(conn, tenant)["status"] == "active"

    add_certificate(conn, tenant, "AA-02", expires + timedelta(days=365))  # renewed
    cleared = kep_alerts.sweep(conn, expires + timedelta(days=2), THRESHOLDS)
    assert [(n.severity, n.status) for n in cleared] == [("major", "resolved")]
    row = stored(conn, tenant)
    assert row["status"] == "cleared" and row["cleared_at"] == expires + timedelta(days=2)

    again = kep_alerts.sweep(conn, expires + timedelta(days=365 - 25), THRESHOLDS)
    assert [(n.severity, n.status) for n in again] == [("warning", "firing")]
    assert stored(conn, tenant)["occurrence"] == 2 and "AA-02" in again[0].message
    assert stored(conn, world.b.tenant_id) is None  # the other company has no certificate: no alert


def test_the_last_day_is_named_in_the_company_time_zone(conn: sa.Connection, world: World) -> None:
    tenant = world.a.tenant_id
    company.set_time_zone(conn, Actor.cli(), tenant, "Asia/Vladivostok", at=T0)
    # 31.12.2026 15:30 UTC is already 1 January in Владивосток (UTC+10).
    add_certificate(conn, tenant, "VL-9", datetime.fromisoformat("2026-12-31T15:30:00+00:00"))
    (notice,) = kep_alerts.sweep(conn, T0 + timedelta(days=10), THRESHOLDS)
    assert "01.01.2027" in notice.message


def test_only_those_who_handle_kep_for_the_whole_company_hear_about_it(conn: sa.Connection, world: World) -> None:
    a = world.a.tenant_id
    people = {
        "owner": world.a.user_id,
        "accountant": user_with_role(conn, a, "acc@romashka.test", Role.ACCOUNTANT, world.a.root_node_id),
        "city accountant": user_with_role(conn, a, "acc-msk@romashka.test", Role.ACCOUNTANT, world.nodes["moscow"]),
        "admin": user_with_role(conn, a, "admin@romashka.test", Role.ADMIN, world.a.root_node_id),
        "viewer": user_with_role(conn, a, "viewer@romashka.test", Role.VIEWER, world.a.root_node_id),
        "other company's owner": world.b.user_id,
    }
    add_certificate(conn, a, "AA-01", T0 + timedelta(days=5))
    (notice,) = kep_alerts.sweep(conn, T0, THRESHOLDS)

    class Borrowed:  # the filter opens connections; here they all share the test's transaction
        def __enter__(self) -> sa.Connection:
            return conn

        def __exit__(self, *exc: object) -> None:
            return None

    hears = notification_filter(Borrowed)
    heard = {who for who, user in people.items()
             if hears(Receiver(f"r{user}", str(a), "email", f"{user}@x.test", principal_id=str(user)), notice)}
    assert heard == {"owner", "accountant", "admin"}


def test_the_api_lists_and_acknowledges_it_within_rights(conn: sa.Connection, world: World) -> None:
    a, b = world.a.tenant_id, world.b.tenant_id
    add_certificate(conn, a, "AA-01", T0 + timedelta(days=3))
    add_certificate(conn, b, "BB-01", T0 + timedelta(days=3))
    kep_alerts.sweep(conn, T0, THRESHOLDS)
    viewer = Actor.user(conn, user_with_role(conn, a, "v@romashka.test", Role.VIEWER, world.a.root_node_id))
    with pytest.raises(PermissionDenied):
        kep_alerts.company_alerts(conn, viewer, a)
    owner = Actor.user(conn, world.a.user_id)
    (mine,) = kep_alerts.company_alerts(conn, owner, a)
    assert mine.severity == "major" and mine.status == "active"
    with pytest.raises(NotFound):  # the other company's alert does not exist for us
        kep_alerts.acknowledge(conn, owner, a, stored(conn, b)["id"], at=T0)
    with pytest.raises(PermissionDenied):
        kep_alerts.acknowledge(conn, viewer, a, mine.id, at=T0)
    first = kep_alerts.acknowledge(conn, owner, a, mine.id, at=T0)
    second = kep_alerts.acknowledge(conn, owner, a, mine.id, at=T0 + timedelta(hours=1))
    assert first == second and first.acked_at == T0  # acknowledging twice changes nothing


def test_the_e_mail_about_the_company_names_no_register() -> None:
    receiver = Receiver("r1", "1", "email", "acc@romashka.test", principal_id="7")
    grouper = NotificationGrouper(lambda tenant: [receiver], lambda r, n: True)
    notice = AlertNotice(tenant_id="1", store_node_id=COMPANY_GROUP, store_name="Ромашка", register_id="",
                         register_serial="", rule="kep_validity", severity="major", status="firing",
                         message="КЭП действует до 03.12.2026: осталось 5 дн.", url="/admin/kep")
    grouper.add(notice, T0)
    (group,) = grouper.flush(T0 + timedelta(minutes=5))
    mail = Renderer("https://kassa.test").email(group)
    assert mail.subject.endswith("Ромашка: 1 проблема")
    assert "КЭП действует до 03.12.2026" in mail.text and "касса" not in mail.text.split("Активные проблемы")[1]
    assert "https://kassa.test/admin/kep" in mail.text and ">компания</a>" in mail.html


def test_the_evaluator_sweep_runs_it_and_survives_its_failure(engine: sa.Engine) -> None:
    with begin_write(engine) as conn:  # committed: the sweep opens its own transactions
        tenant = conn.execute(sa.insert(tenants).values(name="Sweep Co", created_at=T0).returning(tenants.c.id)).scalar_one()
        add_certificate(conn, tenant, "EV-1", T0 + timedelta(days=2))
    heard: list[AlertNotice] = []
    sweep = kep_alerts.KepAlertSweep(engine, THRESHOLDS, notify=heard.append, clock=lambda: T0)

    def broken() -> None:
        raise RuntimeError("a sweep that fails")

    worker = EvaluationWorker(AlertEngine(engine, THRESHOLDS), also_sweep=(broken, sweep))
    try:
        worker.sweep()
        assert worker.sweeps == 1 and [(n.tenant_id, n.severity) for n in heard] == [(str(tenant), "major")]
        worker.sweep()
        assert worker.sweeps == 2 and len(heard) == 1  # unchanged: nobody is told twice
    finally:
        with begin_write(engine) as conn:
            conn.execute(sa.delete(account_alerts).where(account_alerts.c.tenant_id == tenant))
            conn.execute(sa.delete(kep_certificates).where(kep_certificates.c.tenant_id == tenant))
            conn.execute(sa.delete(tenants).where(tenants.c.id == tenant))


def test_a_second_process_skips_the_sweep_while_one_runs(engine: sa.Engine) -> None:
    """PostgreSQL: a transaction-scoped advisory lock; SQLite: its write lock already serialises the
    sweeps, so the second one finds the alert raised and tells nobody again."""
    with begin_write(engine) as conn:
        tenant = conn.execute(sa.insert(tenants).values(name="Lock Co", created_at=T0).returning(tenants.c.id)).scalar_one()
        add_certificate(conn, tenant, "LK-1", T0 + timedelta(days=2))
    sweep = kep_alerts.KepAlertSweep(engine, THRESHOLDS, clock=lambda: T0)
    try:
        if engine.dialect.name == "postgresql":
            with engine.connect() as other, other.begin():  # another process in the middle of its sweep
                other.execute(sa.select(sa.func.pg_advisory_xact_lock(kep_alerts.SWEEP_LOCK_ID)))
                assert sweep() == []
        assert [n.tenant_id for n in sweep()] == [str(tenant)]  # free: this one raises it
        assert sweep() == []  # the next process finds it raised
    finally:
        with begin_write(engine) as conn:
            conn.execute(sa.delete(account_alerts).where(account_alerts.c.tenant_id == tenant))
            conn.execute(sa.delete(kep_certificates).where(kep_certificates.c.tenant_id == tenant))
            conn.execute(sa.delete(tenants).where(tenants.c.id == tenant))
