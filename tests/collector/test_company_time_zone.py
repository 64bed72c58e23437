"""The company's time zone: set by its owner (API and page), shown on every page, used for the
КЭП certificate's last day and as the default zone of new notification receivers."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent / "security"))
import accounts_testkit as accounts_kit
import security_testkit as kit

from collector.accounts import company
from collector.accounts.audit import Actor
from collector.accounts.errors import InvalidInput, PermissionDenied
from collector.accounts.schema import audit_log

engine = accounts_kit.engine

ALERT_STARTED = kit.T0 - timedelta(hours=2)  # when every seeded alert began


client = pytest.fixture(kit.fresh_site, name="client")


def shown(at: datetime, zone: str) -> str:
    return at.astimezone(ZoneInfo(zone)).strftime("%d.%m.%Y %H:%M")


def test_a_new_company_shows_moscow_time_and_only_real_zones_are_accepted(client: kit.Client) -> None:
    me = client.call("GET", "/api/v1/me", who="viewer").json
    assert me["tenant"]["time_zone"] == "Europe/Moscow"
    for wrong in ("Moscow", "UTC+3", "Europe/Nowhere", " "):
        reply = client.call("PATCH", "/api/v1/company", who="owner_a", json={"time_zone": wrong})
        assert reply.status == 422, (wrong, reply.text)
    assert "IANA" in client.call("PATCH", "/api/v1/company", who="owner_a", json={"time_zone": "Moscow"}).json["detail"]
    assert client.call("GET", "/api/v1/me", who="owner_a").json["tenant"]["time_zone"] == "Europe/Moscow"


def test_only_the_owner_changes_it_and_the_change_is_audited(client: kit.Client, engine: sa.Engine) -> None:
    for who in ("viewer", "accountant", "moscow_op"):
        assert client.call("PATCH", "/api/v1/company", who=who, json={"time_zone": "Asia/Omsk"}).status == 403
    reply = client.call("PATCH", "/api/v1/company", who="owner_a", json={"time_zone": "Asia/Vladivostok"})
    assert reply.status == 200 and reply.json["time_zone"] == "Asia/Vladivostok"
    # Company B is untouched.
    assert client.call("GET", "/api/v1/me", who="owner_b").json["tenant"]["time_zone"] == "Europe/Moscow"
    with engine.connect() as conn:
        entry = conn.execute(
            sa.select(audit_log).where(audit_log.c.action == "company.time_zone",
                                       audit_log.c.tenant_id == client.world.tenant_a)
        ).one()
    assert entry.details == {"from": "Europe/Moscow", "to": "Asia/Vladivostok"}


def test_pages_show_instants_in_the_company_zone(client: kit.Client) -> None:
    before = client.call("GET", "/alerts", who="owner_a").text
    assert shown(ALERT_STARTED, "Europe/Moscow") in before
    assert client.call("PATCH", "/api/v1/company", who="owner_a", json={"time_zone": "Asia/Vladivostok"}).status == 200
    after = client.call("GET", "/alerts", who="viewer").text  # every user of the company, at once
    assert shown(ALERT_STARTED, "Asia/Vladivostok") in after
    assert shown(ALERT_STARTED, "Europe/Moscow") not in after
    other = client.call("GET", "/alerts", who="owner_b").text  # the other company keeps Moscow
    assert shown(ALERT_STARTED, "Europe/Moscow") in other


def test_the_settings_page_lists_russias_zones_and_saves_one(client: kit.Client) -> None:
    assert "/admin/company" in client.call("GET", "/admin", who="owner_a").text
    assert "/admin/company" not in client.call("GET", "/admin", who="accountant").text
    assert client.call("GET", "/admin/company", who="accountant").status == 403
    page = client.call("GET", "/admin/company", who="owner_a").text
    assert "Камчатка (МСК+9), UTC+12:00" in page and '<option value="Europe/Moscow" selected>' in page
    bad = client.call("POST", "/admin/company", who="owner_a", data={"time_zone": "Mars/Olympus"})
    assert bad.status == 200 and "Выберите часовой пояс" in bad.text
    saved = client.call("POST", "/admin/company", who="owner_a", data={"time_zone": "Asia/Yekaterinburg"})
    assert saved.status == 303 and saved.headers["Location"] == "/admin/company?done=company-saved"
    page = client.call("GET", "/admin/company?done=company-saved", who="owner_a").text
    assert '<option value="Asia/Yekaterinburg" selected>' in page and "сохранены" in page
    assert shown(kit.T0, "Asia/Yekaterinburg") in page
    assert "— Екатеринбург (МСК+2), UTC+05:00</p>" in page and "(Asia/Yekaterinburg)" not in page  # no raw zone id


def test_new_receivers_default_to_the_company_zone(client: kit.Client) -> None:
    client.call("PATCH", "/api/v1/company", who="owner_a", json={"time_zone": "Asia/Irkutsk"})
    body = {"channel": "email", "address": "duty@romashka.test", "principal_user_id": client.world.users["owner_a"]}
    made = client.call("POST", "/api/v1/notifications/receivers", who="owner_a", json=body)
    assert made.status == 201, made.text
    listed = client.call("GET", "/api/v1/notifications/receivers", who="owner_a").json["items"]
    assert [r["timezone"] for r in listed if r["address"] == "duty@romashka.test"] == ["Asia/Irkutsk"]
    explicit = client.call("POST", "/api/v1/notifications/receivers", who="owner_a",
                           json={**body, "address": "night@romashka.test", "timezone": "Europe/Samara"})
    assert explicit.status == 201
    form = client.call("GET", "/admin/notifications", who="owner_a").text
    assert 'name="timezone" value="Asia/Irkutsk"' in form


def test_the_library_refuses_without_the_permission(engine: sa.Engine) -> None:
    import random

    world = kit.seed_world(engine, random.Random(11))
    with engine.begin() as conn:
        viewer = Actor.user(conn, world.users["viewer"])
        with pytest.raises(PermissionDenied):
            company.set_time_zone(conn, viewer, world.tenant_a, "Asia/Omsk", at=kit.T0)
        with pytest.raises(InvalidInput):
            company.set_time_zone(conn, Actor.cli(), world.tenant_a, "localtime ", at=kit.T0)
        assert company.set_time_zone(conn, Actor.cli(), world.tenant_a, " Asia/Omsk ", at=kit.T0) == "Asia/Omsk"
        assert company.tenant_zone(conn, world.tenant_a) == ZoneInfo("Asia/Omsk")
