"""Actions that legally need the company's КЭП — an application to the ФНС about a register and an
e-document to the OFD — are offered only to those who may take them, only while a valid КЭП exists,
and say clearly why not otherwise; each is recorded with the certificate that signs it.

The security world's companies start with a certificate that ran out ten days before T0."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent / "security"))
import accounts_testkit as accounts_kit
import security_testkit as kit

from collector.accounts import kep
from collector.accounts.audit import Actor
from collector.accounts.schema import audit_log, kep_certificates
from collector.storage.engine import begin_write

engine = accounts_kit.engine
client = pytest.fixture(kit.fresh_site, name="client")


def issue_certificate(engine: sa.Engine, tenant: int, serial: str = "VALID-1") -> None:
    with begin_write(engine) as conn:
        conn.execute(sa.insert(kep_certificates).values(
            tenant_id=tenant, serial=serial, owner_name="Директор А", issued_at=kit.T0 - timedelta(days=1),
            valid_until=kit.T0 + timedelta(days=365)))


def audit_entries(client: kit.Client, engine: sa.Engine, action: str) -> list[sa.Row]:
    """This test's company only: the database is shared by the module."""
    query = sa.select(audit_log).where(audit_log.c.action == action, audit_log.c.tenant_id == client.world.tenant_a)
    with engine.connect() as conn:
        return list(conn.execute(query.order_by(audit_log.c.id)))


def test_without_a_valid_kep_the_page_says_why_and_the_api_refuses(client: kit.Client, engine: sa.Engine) -> None:
    register = client.world.registers["tverskaya"]
    page = client.call("GET", f"/registers/{register}", who="owner_a").text
    # The world's company has a КЭП order in progress: the page says so, not «нет КЭП».
    assert 'id="kep-ordered"' in page and "заявка принята" in page and 'id="kep-missing"' not in page
    assert "fns-application" not in page and "ofd-document" not in page  # nothing to fill in
    with begin_write(engine) as conn:
        order = int(client.world.a["{order_id}"])
        kep.advance(conn, Actor.cli(), client.world.tenant_a, order, kep.KepState.REJECTED, at=kit.T0, note="нет")
    page = client.call("GET", f"/registers/{register}", who="owner_a").text
    assert 'id="kep-missing"' in page and "срок последней истёк" in page and 'href="/admin/kep"' in page
    assert 'id="signed-actions"' not in client.call("GET", f"/registers/{register}", who="viewer").text
    refused = client.call("POST", "/api/v1/ofd-documents", who="accountant",
                          json={"kind": "contract", "register_id": register})
    assert refused.status == 409 and "КЭП" in refused.json["detail"] and "expired" in refused.json["detail"]
    page_refused = client.call("POST", f"/registers/{register}/fns-application", who="owner_a",
                               data={"kind": "fn_replacement"})
    assert page_refused.status == 409 and "КЭП" in page_refused.text
    assert audit_entries(client, engine, "ofd.document") == [] and audit_entries(client, engine, "register.fns_application") == []


def test_each_role_is_offered_its_own_action_and_it_is_recorded(client: kit.Client, engine: sa.Engine) -> None:
    issue_certificate(engine, client.world.tenant_a)
    register = client.world.registers["tverskaya"]

    def offered(who: str) -> tuple[bool, bool]:
        page = client.call("GET", f"/registers/{register}", who=who).text
        return "/fns-application" in page, "/ofd-document" in page

    assert offered("owner_a") == (True, True)
    assert offered("moscow_op") == (True, False)  # technical staff: the ФНС application
    assert offered("accountant") == (False, True)  # the accountant: documents for the OFD
    assert offered("viewer") == (False, False)

    applied = client.call("POST", f"/registers/{register}/fns-application", who="moscow_op",
                          data={"kind": "fn_replacement", "note": "ФН заменён 28.11"})
    assert applied.status == 303 and applied.headers["Location"].endswith("?done=fns-application#signed-actions")
    assert "записано и будет подписано КЭП № VALID-1" in client.call(
        "GET", f"/registers/{register}?done=fns-application", who="moscow_op").text
    (fns,) = audit_entries(client, engine, "register.fns_application")
    assert (fns.target_id, fns.details["kind"], fns.details["kep_serial"]) == (register, "fn_replacement", "VALID-1")

    sent = client.call("POST", f"/registers/{register}/ofd-document", who="accountant", data={"kind": "connection"})
    assert sent.status == 303 and sent.headers["Location"].endswith("?done=ofd-document#signed-actions")
    company_wide = client.call("POST", "/api/v1/ofd-documents", who="accountant", json={"kind": "act"})
    assert company_wide.status == 201 and "VALID-1" in company_wide.json["message"]
    assert [(e.target_type, e.details["kind"]) for e in audit_entries(client, engine, "ofd.document")] == [
        ("register", "connection"), ("tenant", "act")]


def test_refusals_come_from_rights_and_input_before_anything_is_recorded(client: kit.Client, engine: sa.Engine) -> None:
    issue_certificate(engine, client.world.tenant_a)
    register, nevsky = client.world.registers["tverskaya"], client.world.registers["nevsky"]
    assert client.call("POST", f"/registers/{register}/ofd-document", who="moscow_op",
                       data={"kind": "contract"}).status == 403
    assert client.call("POST", f"/registers/{nevsky}/fns-application", who="moscow_op",
                       data={"kind": "fn_replacement"}).status == 404  # another city
    assert client.call("POST", "/api/v1/ofd-documents", who="viewer", json={"kind": "contract"}).status == 403
    assert client.call("POST", "/api/v1/ofd-documents", who="owner_a",
                       json={"kind": "contract", "register_id": client.world.registers["b_store"]}).status == 404
    wrong = client.call("POST", f"/registers/{register}/fns-application", who="owner_a", data={"kind": "burn"})
    assert wrong.status == 303 and wrong.headers["Location"].endswith("?done=choose-fns-kind#signed-actions")
    assert "Выберите вид заявления" in client.call("GET", f"/registers/{register}?done=choose-fns-kind",
                                                   who="owner_a").text
    assert client.call("POST", "/api/v1/ofd-documents", who="owner_a", json={"kind": "burn"}).status == 422
    assert audit_entries(client, engine, "register.fns_application") == [] and audit_entries(client, engine, "ofd.document") == []


def test_registration_is_offered_deregistration_needs_confirmation_and_requests_are_listed(
    client: kit.Client, engine: sa.Engine
) -> None:
    issue_certificate(engine, client.world.tenant_a)
    register = client.world.registers["tverskaya"]
    page = client.call("GET", f"/registers/{register}", who="owner_a").text
    assert '<option value="registration">регистрация ККТ</option>' in page and 'id="submitted-requests"' not in page
    unconfirmed = client.call("POST", f"/registers/{register}/fns-application", who="owner_a",
                              data={"kind": "deregistration"})
    assert unconfirmed.headers["Location"].endswith("?done=confirm-deregistration#signed-actions")
    assert audit_entries(client, engine, "register.fns_application") == []
    assert "отметьте, что понимаете последствия" in client.call(
        "GET", f"/registers/{register}?done=confirm-deregistration", who="owner_a").text
    refused = client.call("POST", f"/api/v1/registers/{register}/fns-application", who="owner_a",
                          json={"kind": "deregistration"})
    assert refused.status == 422 and "confirmed" in refused.json["detail"]
    for data in ({"kind": "deregistration", "confirm": "yes"}, {"kind": "registration", "note": "новая касса"}):
        assert client.call("POST", f"/registers/{register}/fns-application", who="owner_a", data=data).status == 303
    listed = client.call("GET", f"/registers/{register}", who="owner_a").text
    items = listed.split('id="submitted-requests"')[1].split("</ul>")[0]
    assert items.index("регистрация ККТ") < items.index("снятие ККТ с учёта")  # newest first
    assert "«новая касса»" in items and items.count("записано, ждёт подписи КЭП и отправки") == 2
    assert client.call("POST", "/api/v1/ofd-documents", who="accountant", json={"kind": "act"}).status == 201
    company = client.call("GET", "/admin/kep", who="accountant").text.split('id="company-requests"')[1].split("</ul>")[0]
    assert company.count("<li>") == 3 and "по компании" in company and f"касса <a href=\"/registers/{register}\">" in company
