"""The monitoring pages in a real (headless Debian) Chromium: counters against the API, a click
through to the filtered list, live countdown, acknowledging alerts, an SSE live update, CSV
export of the filter, phone width, and screenshots of the main pages."""

from __future__ import annotations

import csv
import io
import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from collector.storage import repository as repo
from collector.storage.rows import AlertRow
from collector.storage.scope import Scope
from collector.web.pages import data

pytestmark = pytest.mark.timeout(60)


def api_json(site: Any, path: str) -> Any:
    with urllib.request.urlopen(site.url(path), timeout=5) as response:
        return json.loads(response.read())


def shoot(page: Any, folder: Path, name: str) -> None:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5_000, f"{name}.png looks empty"


def wait_live(page: Any) -> None:
    page.wait_for_selector('#live-status[data-state="open"]')


def test_dashboard_counters_match_the_api(site: Any, page: Any, screenshots: Path) -> None:
    page.goto(site.url("/"))
    wait_live(page)
    for key, _, filters, _ in data.COUNTERS:
        shown = page.locator(f'[data-counter="{key}"] .counter-value').inner_text()
        total = api_json(site, f"/api/v1/registers?{data.filter_query(filters)}")["total"]
        assert int(shown) == total, key
    assert page.locator('[data-shift="expired"] dd').inner_text() == "1"
    shoot(page, screenshots, "dashboard")


def test_clicking_a_counter_lands_on_the_filtered_list(site: Any, page: Any, screenshots: Path) -> None:
    page.goto(site.url("/"))
    expected = page.locator('[data-counter="ofd_backlog"] .counter-value').inner_text()
    page.locator('[data-counter="ofd_backlog"]').click()
    page.wait_for_url(re.compile(r"/registers\?rule=ofd_backlog$"))
    rows = page.locator("table.registers tbody tr")
    assert rows.count() == int(expected) == 1
    assert rows.first.get_attribute("data-register-id") == site.fleet.registers["tverskaya-1"]
    assert page.locator("#f-rule").input_value() == "ofd_backlog"
    page.goto(site.url("/registers"))
    shoot(page, screenshots, "registers")


def test_register_page_shows_a_live_countdown_and_the_chart(site: Any, page: Any, screenshots: Path) -> None:
    from playwright.sync_api import expect  # here: the browser fixture is what skips without Playwright

    page.goto(site.url(f"/registers/{site.fleet.registers['tverskaya-1']}"))
    countdown = page.locator("#block .countdown")
    assert re.fullmatch(r"через (9 дн\. 23 ч|10 дн\.)", countdown.inner_text())
    assert page.locator("#history-chart svg polyline").count() == 1
    # The countdown is re-rendered every second from data-blocks-at by app.js.
    countdown.evaluate("el => el.setAttribute('data-blocks-at', new Date(Date.now() + 95000).toISOString())")
    expect(countdown).to_have_text("через 1 мин")  # expect(), not wait_for_function: the CSP refuses eval
    shoot(page, screenshots, "register")


def test_acknowledging_alerts_one_and_in_bulk(site: Any, page: Any, screenshots: Path) -> None:
    single = site.fleet.alerts["tverskaya-1:ofd_backlog"]
    page.goto(site.url("/alerts"))
    shoot(page, screenshots, "alerts")
    page.locator(f'tr[data-alert-id="{single}"] button:has-text("Подтвердить")').click()
    page.wait_for_selector("#done-message")
    assert "Алерт подтверждён" in page.locator("#done-message").inner_text()
    assert "подтверждён" in page.locator(f'tr[data-alert-id="{single}"] .alert-state').inner_text()

    bulk_button = page.locator("#bulk-ack")
    assert bulk_button.is_disabled()
    page.locator("#select-all").check()
    selectable = page.locator(".select-alert:not(:disabled)").count()
    assert selectable == 7 and bulk_button.inner_text() == f"Подтвердить выбранные ({selectable})"
    bulk_button.click()
    page.wait_for_selector("#done-message")
    assert f"Подтверждено алертов: {selectable}" in page.locator("#done-message").inner_text()
    with site.engine.connect() as conn:
        active, _ = repo.list_alerts(conn, Scope.admin(), status="active")
    assert active and all(alert.acknowledged for alert in active)


def test_a_change_published_to_the_hub_updates_the_dashboard_live(site: Any, page: Any) -> None:
    from playwright.sync_api import expect  # here: the browser fixture is what skips without Playwright

    page.goto(site.url("/"))
    wait_live(page)
    counter = page.locator('[data-counter="clock_skew"] .counter-value')
    assert counter.inner_text() == "0"
    register_id = site.fleet.registers["arbat"]
    with site.engine.begin() as conn:
        repo.upsert_alert(
            conn,
            AlertRow(
                register_id=register_id,
                rule="clock_skew",
                severity="warning",
                status="active",
                started_at=site.fleet.now,
                updated_at=site.fleet.now,
                message="часы кассы отстают на 3 мин",
            ),
        )
    path = f"/{site.fleet.nodes['legal']}/{site.fleet.nodes['moscow']}/{site.fleet.nodes['arbat']}/"
    site.hub.publish("alert", register_id, path, {"rule": "clock_skew"}, tenant_id=site.fleet.tenant_a)
    expect(page.locator('[data-counter="clock_skew"] .counter-value')).to_have_text("1")
    assert page.locator("body").get_attribute("data-live-events") == "1"


def test_csv_export_matches_the_filter(site: Any, page: Any) -> None:
    page.goto(site.url("/registers"))
    page.locator("#f-tag").select_option("24/7")
    page.locator("#f-sort").select_option("severity")
    page.locator("form.filters button[type=submit]").click()
    page.wait_for_url(re.compile(r"tag=24%2F7"))
    shown = [row.get_attribute("data-register-id") for row in page.locator("table.registers tbody tr").all()]
    assert sorted(shown) == sorted([site.fleet.registers["nevsky-1"], site.fleet.registers["nevsky-2"]])
    with page.expect_download() as download_info:
        page.locator("#csv-export").click()
    body = Path(download_info.value.path()).read_bytes().decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(body), delimiter=";"))
    assert [row["register_id"] for row in rows] == shown


def test_tree_collapses_and_pages_fit_a_phone(site: Any, browser: Any, screenshots: Path) -> None:
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, locale="ru-RU", timezone_id="Europe/Moscow"
    )
    try:
        phone = context.new_page()
        for path, name in (
            ("/", "dashboard-phone"),
            ("/registers", "registers-phone"),
            ("/tree", "tree-phone"),
        ):
            phone.goto(site.url(path))
            overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"{path} scrolls sideways by {overflow}px at phone width"
            shoot(phone, screenshots, name)
        moscow = phone.locator(f'li[data-node-id="{site.fleet.nodes["moscow"]}"] > details')
        assert moscow.get_attribute("open") is not None
        moscow.locator("> summary").click()
        assert moscow.get_attribute("open") is None
    finally:
        context.close()


def test_every_form_control_has_a_label(site: Any, page: Any) -> None:
    for path in ("/registers", "/alerts"):
        page.goto(site.url(path))
        unlabelled = page.evaluate(
            """() => Array.from(document.querySelectorAll('select, textarea, input:not([type=hidden])'))
                 .filter(el => el.labels.length === 0 && !el.getAttribute('aria-label'))
                 .map(el => el.outerHTML)"""
        )
        assert unlabelled == [], path


def test_every_page_answers_can_it_sell_with_the_fix_and_blocked_first(site: Any, page: Any) -> None:
    """Dashboard, list, tree and a register page: no register is both "cannot sell now" and
    "in N days", every problem shown carries its fix, registers that cannot sell come first."""
    page.goto(site.url("/"))
    ranking = page.locator("#ranking tbody tr").all()
    statuses = [row.get_attribute("data-sell") for row in ranking]
    assert statuses and statuses[0] == "cannot_sell" and "cannot_sell" not in statuses[statuses.count("cannot_sell") :]
    for row in ranking:
        text = row.inner_text()
        assert row.locator("[data-fix]").count() == 1, text
        if row.get_attribute("data-sell") == "cannot_sell":
            assert "Сейчас не может продавать" in text and not re.search(r"через \d", text.split("Что делать")[0])
    for counter in page.locator(".counters li").all():
        if counter.locator(".counter-value").inner_text() != "0":
            assert counter.locator("[data-fix]").count() == 1, counter.inner_text()

    page.goto(site.url("/registers"))
    rows = page.locator("table.registers tbody tr").all()
    listed = [row.get_attribute("data-sell") for row in rows]
    assert listed[0] == "cannot_sell" and listed.index("no_threat") > listed.index("will_stop")
    for row in rows:
        cell = row.locator('td[data-label="Продажи"]').inner_text()
        assert ("Сейчас не может продавать" in cell) == (row.get_attribute("data-sell") == "cannot_sell"), cell
        assert not ("Сейчас не может продавать" in cell and re.search(r"через \d", cell)), cell

    page.goto(site.url("/tree"))
    assert "блокировка заблокирована" not in page.locator("main").inner_text()

    page.goto(site.url(f"/registers/{site.fleet.registers['tverskaya-2']}"))
    banner = page.locator("#block").inner_text()
    assert "Сейчас не может продавать: смена открыта" in banner and "Что делать: Закройте смену (Z-отчёт)" in banner
    assert page.locator("ul.alert-list:not(.past) [data-fix]").count() == 2  # shift and paper: each says what to do
