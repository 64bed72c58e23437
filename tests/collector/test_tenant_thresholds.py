"""A company's own alert thresholds: set by its owner through the API (checked: known names, ladders
in order), applied by the alert engine to that company's registers only."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent / "security"))
import ingest_testkit as kit
import security_testkit as security_kit

from collector.accounts.schema import tenant_profiles
from collector.alerts import Thresholds
from collector.ingest.batcher import IngestWriter
from collector.ingest.company_thresholds import CompanyThresholds
from collector.ingest.engine import AlertEngine
from collector.storage.schema import alerts, registers

engine = kit.engine  # a migrated engine per backend
client = pytest.fixture(security_kit.fresh_site, name="client")


def ingest(db: sa.Engine, *messages: tuple[str, bytes]) -> None:
    IngestWriter(db, kit.FakeDownlink()).process([kit.inbound(topic, payload, at=kit.T0) for topic, payload in messages])


def backlog(hours: float) -> object:
    return kit.register_state(unsent=5, oldest_unsent_age=timedelta(hours=hours))


def test_the_owner_sets_checked_overrides(client: security_kit.Client) -> None:
    one_hour = {"ofd_backlog_warning": "PT1H", "shift_warning": 18 * 3600}
    made = client.call("PATCH", "/api/v1/company", who="owner_a", json={"alert_thresholds": one_hour})
    assert made.status == 200 and made.json["alert_thresholds"] == one_hour
    assert made.json["time_zone"] == "Europe/Moscow"  # untouched
    unknown = client.call("PATCH", "/api/v1/company", who="owner_a", json={"alert_thresholds": {"ofd_late": 60}})
    assert unknown.status == 422 and "ofd_late" in unknown.json["detail"]
    upside_down = client.call("PATCH", "/api/v1/company", who="owner_a",
                              json={"alert_thresholds": {"ofd_backlog_warning": "P40D"}})  # after "major" (48 h)
    assert upside_down.status == 422 and "ofd_backlog" in upside_down.json["detail"]
    assert client.call("PATCH", "/api/v1/company", who="accountant", json={"alert_thresholds": {}}).status == 403
    assert client.call("PATCH", "/api/v1/company", who="owner_a", json={}).status == 422
    assert client.call("GET", "/api/v1/me", who="viewer").json["tenant"]["alert_thresholds"] == one_hour
    reset = client.call("PATCH", "/api/v1/company", who="owner_a", json={"alert_thresholds": {}})
    assert reset.status == 200 and reset.json["alert_thresholds"] == {}


def test_a_company_s_overrides_apply_to_its_registers_only(engine: sa.Engine) -> None:
    ingest(engine, kit.status_msg("agent-a", 1, "online"), kit.state_msg("agent-a", "kkt-a", 1, 1, backlog(2)))
    kit.enroll_elsewhere(engine, "agent-b")
    ingest(engine, kit.status_msg("agent-b", 1, "online"), kit.state_msg("agent-b", "kkt-b", 1, 1, backlog(2)))
    with engine.begin() as conn:
        tenant_a = conn.execute(sa.select(registers.c.tenant_id).where(registers.c.register_id == "kkt-a")).scalar_one()
        conn.execute(sa.insert(tenant_profiles).values(
            tenant_id=tenant_a, inn="7707083893", time_zone="Asia/Vladivostok",
            alert_thresholds={"ofd_backlog_warning": "PT1H"}))
    AlertEngine(engine, clock=lambda: kit.T0).evaluate(["kkt-a", "kkt-b"])
    with engine.connect() as conn:
        raised = {(r.register_id, r.rule, r.severity) for r in conn.execute(sa.select(alerts))}
    assert ("kkt-a", "ofd_backlog", "warning") in raised  # 2 h ≥ the company's 1 h
    assert not any(r[0] == "kkt-b" and r[1] == "ofd_backlog" for r in raised)  # the default is 4 h
    # The company's zone (Владивосток) is the head office's, not the store's: the register's naive clock
    # must not be read in it, or every register outside that zone would "run 7 hours fast".
    assert not any(r[1] == "clock_skew" for r in raised)


def test_settings_are_read_per_company_cached_and_stale_overrides_ignored(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        one = conn.execute(sa.text("INSERT INTO tenants (name, created_at) VALUES ('Один', :t) RETURNING id"),
                           {"t": kit.T0}).scalar_one()
        conn.execute(sa.insert(tenant_profiles).values(tenant_id=one, inn="500100732259", time_zone="Asia/Omsk",
                                                       alert_thresholds={"fn_validity_info": "P1D"}))  # below "warning"
    clock = [0.0]
    settings = CompanyThresholds(Thresholds(), ttl=30, clock=lambda: clock[0])
    with engine.connect() as conn:
        rules = settings.for_tenants(conn, [one, 999_999])
    assert rules[one] == Thresholds()  # stale: ignored
    assert rules[999_999] == Thresholds()  # no profile: the defaults
    with engine.begin() as conn:
        conn.execute(sa.update(tenant_profiles).where(tenant_profiles.c.tenant_id == one)
                     .values(alert_thresholds={"shift_warning": "PT19H"}))
    with engine.connect() as conn:
        assert settings.for_tenants(conn, [one])[one] == Thresholds()  # within the ttl: remembered
        clock[0] = 31
        assert settings.for_tenants(conn, [one])[one].shift_warning == timedelta(hours=19)


def test_the_settings_page_edits_them_in_natural_units(client: security_kit.Client) -> None:
    page = client.call("GET", "/admin/company", who="owner_a").text
    assert 'name="thr_ofd_backlog_warning" value=""' in page and "<td>4 ч</td>" in page  # the default
    client.call("PATCH", "/api/v1/company", who="owner_a", json={"alert_thresholds": {"pending": {"paper_out": 60}}})
    saved = client.call("POST", "/admin/company/thresholds", who="owner_a",
                        data={"thr_shift_warning": "19", "thr_kep_warning": "45", "thr_ofd_backlog_warning": "1,5"})
    assert saved.status == 303 and saved.headers["Location"] == "/admin/company?done=thresholds-saved"
    stored = client.call("GET", "/api/v1/me", who="owner_a").json["tenant"]["alert_thresholds"]
    assert stored == {"shift_warning": 19 * 3600, "kep_warning": 45 * 86400, "ofd_backlog_warning": 5400,
                      "pending": {"paper_out": 60}}  # what the form does not show is kept
    page = client.call("GET", "/admin/company?done=thresholds-saved", who="owner_a").text
    assert 'name="thr_ofd_backlog_warning" value="1,5"' in page and "Пороги алертов сохранены" in page
    for bad, why in (({"thr_shift_warning": "скоро"}, "нужно число"),
                     ({"thr_shift_warning": "-1"}, "положительное"),
                     ({"thr_shift_warning": "30"}, "shift_critical")):  # 30 h is after the 23.5 h critical level
        refused = client.call("POST", "/admin/company/thresholds", who="owner_a", data=bad)
        assert refused.status == 200 and why in refused.text, why
    assert client.call("GET", "/api/v1/me", who="owner_a").json["tenant"]["alert_thresholds"] == stored
    cleared = client.call("POST", "/admin/company/thresholds", who="owner_a", data={})
    assert cleared.status == 303
    assert client.call("GET", "/api/v1/me", who="owner_a").json["tenant"]["alert_thresholds"] == {
        "pending": {"paper_out": 60}}
