"""The КЭП alert over HTTP: the API list and acknowledgement, the banner on every page of those
who handle КЭП, and the КЭП page's «Подтвердить». The security world gives both companies a
certificate that ran out ten days before T0, so each has an active major КЭП alert."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent / "security"))
import accounts_testkit as accounts_kit
import security_testkit as kit

from collector.accounts.schema import account_alerts, audit_log

engine = accounts_kit.engine
BANNER = 'id="company-alert-kep_validity"'


client = pytest.fixture(kit.fresh_site, name="client")


def test_the_api_lists_the_company_alert_and_acknowledges_it(client: kit.Client, engine: sa.Engine) -> None:
    (alert,) = client.call("GET", "/api/v1/company/alerts", who="accountant").json["items"]
    assert alert["rule"] == "kep_validity" and alert["severity"] == "major" and alert["status"] == "active"
    assert "истёк" in alert["message"] and alert["details"]["serial"] == "OLD-А"
    assert alert["fix"].startswith("Получите новую КЭП руководителя")
    assert client.call("GET", "/api/v1/company/alerts", who="viewer").status == 403
    other = client.world.b["{company_alert_id}"]
    assert client.call("POST", f"/api/v1/company/alerts/{other}/ack", who="owner_a").status == 404
    acked = client.call("POST", f"/api/v1/company/alerts/{alert['id']}/ack", who="accountant")
    assert acked.status == 200 and acked.json["acknowledged"] is True
    assert acked.json["acked_by"] == client.world.emails["accountant"]
    with engine.connect() as conn:
        assert conn.execute(sa.select(audit_log.c.actor).where(
            audit_log.c.action == "company_alert.ack", audit_log.c.target_id == str(alert["id"]))).scalar_one() \
            == client.world.emails["accountant"]
        assert conn.execute(sa.select(account_alerts.c.acknowledged).where(
            account_alerts.c.id == int(other))).scalar_one() is False  # B's untouched


def test_the_banner_is_on_every_page_of_those_who_handle_kep(client: kit.Client) -> None:
    for path in ("/", "/registers", "/alerts", "/admin"):
        page = client.call("GET", path, who="owner_a").text
        assert BANNER in page and "Срок КЭП истёк" in page and 'href="/admin/kep"' in page, path
    assert BANNER in client.call("GET", "/", who="accountant").text
    for who in ("viewer", "moscow_op"):  # no КЭП rights: not their business
        assert BANNER not in client.call("GET", "/", who=who).text


def test_the_kep_page_acknowledges_it(client: kit.Client) -> None:
    page = client.call("GET", "/admin/kep", who="accountant").text
    alert_id = client.world.a["{company_alert_id}"]
    assert f'action="/admin/kep/alerts/{alert_id}/ack"' in page and "Тревога по сроку КЭП" in page
    done = client.call("POST", f"/admin/kep/alerts/{alert_id}/ack", who="accountant", data={})
    assert done.status == 303 and done.headers["Location"] == "/admin/kep?done=kep-alert-acked"
    page = client.call("GET", "/admin/kep?done=kep-alert-acked", who="accountant").text
    assert "Тревога по КЭП подтверждена" in page and f'action="/admin/kep/alerts/{alert_id}/ack"' not in page
    assert f"подтверждено: {client.world.emails['accountant']}" in page
    missing = client.call("POST", "/admin/kep/alerts/99999999/ack", who="accountant", data={})
    assert missing.status == 404
