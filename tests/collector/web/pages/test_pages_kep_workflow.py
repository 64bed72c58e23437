"""The КЭП page as the customer uses it: the status of the order (never «нет КЭП» while one is in
progress), no way to issue one's own order whatever the role, the requested documents listed with
an upload form (type and size checked), «документы отправлены» once all are there, and a
certificate the company already has entered from its .cer file (refused for another ИНН)."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parents[2]))
sys.path.insert(0, str(Path(__file__).parents[2] / "security"))
import accounts_testkit as accounts_kit
import kep_certs
import security_testkit as kit

from collector.accounts import kep
from collector.accounts.audit import Actor
from collector.accounts.schema import kep_certificates, kep_orders, tenant_profiles
from collector.storage import begin_write

engine = accounts_kit.engine
client = pytest.fixture(kit.fresh_site, name="client")


def upload(client: kit.Client, who: str, path: str, field: str, name: str, data: bytes, **fields: str) -> kit.Reply:
    form = aiohttp.FormData()
    for key, value in fields.items():
        form.add_field(key, value)
    form.add_field(field, data, filename=name, content_type="application/octet-stream")
    return client.call("POST", path, who=who, data=form)


def order_state(engine: sa.Engine, order: int) -> str:
    with engine.connect() as conn:
        return conn.execute(sa.select(kep_orders.c.state).where(kep_orders.c.id == order)).scalar_one()


def test_the_customer_sees_the_status_but_cannot_issue_their_own_order(client: kit.Client, engine: sa.Engine) -> None:
    order = int(client.world.a["{order_id}"])
    page = client.call("GET", "/admin/kep", who="accountant").text
    assert "КЭП заказана: заявка №" in page and "У компании нет действующей КЭП" not in page
    assert "заявка принята" in page and f'action="/admin/kep/{order}/transition"' not in page
    assert "Серийный номер сертификата" not in page  # nothing to type a serial into
    for who in ("owner_a", "accountant"):
        for to in ("issued", "documents_requested", "rejected"):
            refused = client.call("POST", f"/admin/kep/{order}/transition", who=who,
                                  data={"to": to, "serial": "ANY-1", "owner_name": "Я", "valid_until": "2030-01-01"})
            assert refused.status == 403 and "только удостоверяющий центр" in refused.text, (who, to)
    assert order_state(engine, order) == "requested"


def test_requested_documents_are_listed_uploaded_and_sent(client: kit.Client, engine: sa.Engine) -> None:
    order = int(client.world.a["{order_id}"])
    with begin_write(engine) as conn:
        kep.advance(conn, Actor.cli(), client.world.tenant_a, order, kep.KepState.DOCUMENTS_REQUESTED, at=kit.T0,
                    documents=["passport", "snils"])
    page = client.call("GET", "/admin/kep", who="accountant").text
    assert "запрошены документы" in page and "Паспорт владельца КЭП" in page and "СНИЛС владельца КЭП" in page
    assert page.count("ещё не загружен") == 2 and f'action="/admin/kep/{order}/documents"' in page
    assert "отправить в удостоверяющий центр" not in page
    documents = f"/admin/kep/{order}/documents"
    exe = upload(client, "accountant", documents, "document", "passport.pdf", b"MZ\x90\x00", kind="passport")
    assert exe.status == 200 and "PDF, JPEG или PNG" in exe.text and "Управление" in exe.text
    early = client.call("POST", f"/admin/kep/{order}/transition", who="accountant", data={"to": "documents_received"})
    assert early.status == 200 and "Не хватает" in early.text
    assert upload(client, "accountant", documents, "document", "паспорт.pdf", b"%PDF-1.7", kind="passport").status == 303
    assert upload(client, "accountant", documents, "document", "snils.png", b"\x89PNG\r\n\x1a\nxx", kind="snils").status == 303
    page = client.call("GET", "/admin/kep?done=document-uploaded", who="accountant").text
    assert "загружен «паспорт.pdf»" in page and "ещё не загружен" not in page and "Документ загружен" in page
    sent = client.call("POST", f"/admin/kep/{order}/transition", who="accountant", data={"to": "documents_received"})
    assert sent.status == 303 and order_state(engine, order) == "documents_received"
    page = client.call("GET", "/admin/kep", who="accountant").text
    assert "документы получены" in page and "ждите выпуска сертификата" in page


def test_documents_the_issuer_received_outside_the_page_are_not_shown_as_missing(
    client: kit.Client, engine: sa.Engine
) -> None:
    order = int(client.world.a["{order_id}"])
    with begin_write(engine) as conn:
        for step in (kep.KepState.DOCUMENTS_REQUESTED, kep.KepState.DOCUMENTS_RECEIVED):
            kep.advance(conn, Actor.cli(), client.world.tenant_a, order, step, at=kit.T0, documents=["passport"])
    page = client.call("GET", "/admin/kep", who="accountant").text
    assert "Паспорт владельца КЭП (разворот с фото и страница с регистрацией): передан в удостоверяющий центр" in page
    assert "ещё не загружен" not in page and f'action="/admin/kep/{order}/documents"' not in page


def test_an_existing_certificate_is_entered_from_its_file(client: kit.Client, engine: sa.Engine) -> None:
    with engine.connect() as conn:
        inn = conn.execute(sa.select(tenant_profiles.c.inn)
                           .where(tenant_profiles.c.tenant_id == client.world.tenant_a)).scalar_one()
    since = kit.T0 - timedelta(days=1)
    other = kep_certs.make_certificate(company_inn=accounts_kit.make_inn(), not_before=since)
    refused = upload(client, "accountant", "/admin/kep/certificates", "certificate", "other.cer", other)
    assert refused.status == 200 and f"а ИНН компании — {inn}" in refused.text
    not_a_cer = upload(client, "accountant", "/admin/kep/certificates", "certificate", "a.cer", b"hello")
    assert "Это не файл сертификата" in not_a_cer.text
    own = kep_certs.make_certificate(company_inn=inn, not_before=since, serial=0xC0FFEE)
    entered = upload(client, "accountant", "/admin/kep/certificates", "certificate", "own.cer", own)
    assert entered.status == 303 and entered.headers["Location"] == "/admin/kep?done=certificate-entered"
    page = client.call("GET", "/admin/kep?done=certificate-entered", who="accountant").text
    assert "Действующая КЭП: № C0FFEE" in page and "Сертификат внесён" in page
    with engine.connect() as conn:
        assert conn.execute(sa.select(kep_certificates.c.owner_name)
                            .where(kep_certificates.c.serial == "C0FFEE")).scalar_one() == "Иванов Иван Иванович"
    assert upload(client, "viewer", "/admin/kep/certificates", "certificate", "own.cer", own).status == 403
