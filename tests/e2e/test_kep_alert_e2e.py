"""End to end: an issued КЭП certificate feeds the КЭП-expiry alert and its notification.

The running collector service (SQLite, a private Mosquitto, an aiosmtpd server on loopback): the
owner orders a КЭП and the accountant records it as issued through the API with five days left;
the evaluator's periodic sweep raises a major company-level alert, the owner's mailbox gets one
e-mail about the company (not about a register) while a viewer's mailbox gets nothing, and the
alert is listed and acknowledged through the API.
"""

from __future__ import annotations

import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))
import test_notifications_e2e as e2e
from test_notifications_e2e import call, mailbox  # noqa: F401  (mailbox: a fixture)

sys.path.insert(0, str(Path(__file__).parent.parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "collector"))
import kep_certs
from netkit import free_port, wait_for

from collector.accounts import kep, kep_documents
from collector.accounts.audit import Actor
from collector.accounts.groups import add_member, create_group, grant_role
from collector.accounts.passwords import FAST_TEST_COST, Passwords
from collector.accounts.rights import Role
from collector.accounts.schema import tenant_profiles
from collector.accounts.service import create_user
from collector.accounts.sessions import create_api_token
from collector.cli import main as cli_main
from collector.config import load_config
from collector.service import CollectorService
from collector.storage import create_engine_from_url, migrate

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]

PERSON_INN = "500100732259"  # a valid 12-digit ИНН (a public example)


def add_person(engine: Any, tenant: int, root: int, email: str, role: Role) -> tuple[int, str]:
    at = datetime.now(UTC)
    with engine.begin() as conn:
        cli = Actor.cli()
        user = create_user(conn, Passwords(FAST_TEST_COST), cli, tenant, email=email,
                           password="correct horse battery", at=at, confirmed=True)
        group = create_group(conn, cli, tenant, f"{role.value} group", at=at)
        grant_role(conn, cli, tenant, group, role, root, at=at)
        add_member(conn, cli, tenant, group, user, at=at)
        return user, create_api_token(conn, user, "e2e", at=at).token


def test_an_issued_certificate_near_its_end_raises_and_mails_the_kep_alert(
    mqtt_broker: Any, mailbox: tuple[e2e.Mailbox, int], tmp_path: Path  # noqa: F811 (the fixture)
) -> None:
    box, smtp_port = mailbox
    db_url = f"sqlite:///{tmp_path}/kep-{uuid.uuid4().hex[:6]}.db"
    engine = create_engine_from_url(db_url)
    migrate(engine)
    company = e2e.build_company(engine)
    with engine.connect() as conn:
        root = conn.execute(sa.select(tenant_profiles.c.root_node_id)
                            .where(tenant_profiles.c.tenant_id == company.tenant_id)).scalar_one()
    accountant, accountant_token = add_person(engine, company.tenant_id, root, "buh@romashka.test", Role.ACCOUNTANT)
    web_port = free_port()
    config = load_config(None, env={}, overrides={
        "broker_url": mqtt_broker.url, "db_url": db_url, "client_id": "collector-kep-e2e",
        "listen": f"127.0.0.1:{web_port}", "evaluator_period": 0.5,
        "notify": {
            "smtp_host": "127.0.0.1", "smtp_port": smtp_port, "smtp_security": "none",
            "smtp_sender": "Касса-Монитор <alerts@kassa.test>", "public_url": "https://kassa.test",
            "group_wait": 0.5, "group_interval": 60, "repeat_interval": 3600, "tick": 0.1,
            "receivers_refresh": 0.2, "retry_attempts": 1, "retry_backoff": 0,
        },
    })  # fmt: skip
    service = CollectorService(config, app_factory=e2e.app_with_notify_api)
    service.start()
    try:
        receivers = "/api/v1/notifications/receivers"
        for address, principal in (("buh@romashka.test", accountant), ("moscow@romashka.test", company.viewer_id)):
            status, _ = call(web_port, "POST", receivers, company.owner_token,
                             {"channel": "email", "address": address, "principal_user_id": principal})
            assert status == 201
        time.sleep(0.3)  # past receivers_refresh

        status, order = call(web_port, "POST", "/api/v1/kep-orders", accountant_token, {
            "subject": "head", "full_name": "Сидоров Пётр", "position": "Директор", "inn": PERSON_INN,
            "email": "sidorov@romashka.test"})  # fmt: skip
        assert status == 201, order
        order_id = int(order["id"])
        # The issuer's side is the operator CLI; the customer uploads what it asks for.
        assert cli_main(["kep", "request-documents", "--db", db_url, str(order_id), "--document", "passport"]) == 0
        move = f"/api/v1/kep-orders/{order_id}/transition"
        assert call(web_port, "POST", move, accountant_token, {"to": "documents_received"})[0] == 403
        with engine.begin() as conn:
            buh = Actor.user(conn, accountant)
            kep_documents.add_document(conn, buh, company.tenant_id, order_id, "passport", "p.pdf", b"%PDF-1.7",
                                       at=datetime.now(UTC))
            kep.advance(conn, buh, company.tenant_id, order_id, kep.KepState.DOCUMENTS_RECEIVED, at=datetime.now(UTC))
        cer = tmp_path / "issued.cer"  # five days left
        cer.write_bytes(kep_certs.make_certificate(company_inn=None, person_inn=PERSON_INN, serial=0xE2E1,
                                                   not_before=datetime.now(UTC) - timedelta(days=360), days=365))
        assert cli_main(["kep", "issue", "--db", db_url, str(order_id), "--cer", str(cer)]) == 0

        mail = wait_for(lambda: box.messages, 15, "the e-mail about the КЭП")[0]
        time.sleep(1.5)  # a few more sweeps: nobody is mailed twice, the viewer not at all
        assert len(box.messages) == 1, box.bodies()
        assert mail["To"] == "buh@romashka.test"
        body = box.bodies()[0]
        assert "Ромашка" in body and "E2E1" in body and "осталось" in body
        assert "касса" not in body.split("Активные проблемы")[1].split("Открыть")[0]
        assert "https://kassa.test/admin/kep" in body

        status, listed = call(web_port, "GET", "/api/v1/company/alerts", accountant_token)
        (alert,) = listed["items"]
        assert (alert["severity"], alert["status"], alert["acknowledged"]) == ("major", "active", False)
        assert call(web_port, "GET", "/api/v1/company/alerts", company.viewer_token)[0] == 403
        status, acked = call(web_port, "POST", f"/api/v1/company/alerts/{alert['id']}/ack", accountant_token)
        assert status == 200 and acked["acknowledged"] is True
    finally:
        service.stop()
        engine.dispose()
