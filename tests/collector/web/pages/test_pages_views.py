"""The monitoring pages through aiohttp's test client: status, key texts, scoping, counters that
match the API, CSV link, friendly errors and the alert form actions with CSRF."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer

from collector.storage import repository as repo
from collector.storage.scope import Scope
from collector.web import Principal, StaticTokenAuth
from collector.web.pages import data
from collector.web.pages.sse import EVENT_HUB_KEY, EventHub

sys.path.insert(0, str(Path(__file__).parents[2]))  # importlib mode: make the shared helper importable
import pages_testkit as kit

NOW = kit.FIXED_NOW


# Fixtures shared with the other page tests: a migrated SQLite file per module, reseeded per test.
engine = kit.module_engine
fleet = kit.seeded_fleet


Session = Callable[[TestClient], Awaitable[None]]


def run(
    engine: sa.Engine, session: Session, *, principal: Principal | None = None, **app_kwargs: Any
) -> None:
    """Start the app on a test server, run ``session`` against it, close it."""
    authenticator = app_kwargs.pop("authenticator", None)
    if authenticator is None and principal is not None:
        authenticator = kit.FixedPrincipal(principal)
    app = kit.build_app(engine, authenticator=authenticator, clock=lambda: NOW, **app_kwargs)

    async def go() -> None:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            await session(client)

    asyncio.run(go())


async def fetch(client: TestClient, path: str, status: int = 200) -> str:
    response = await client.get(path)
    text = await response.text()
    assert response.status == status, f"{path}: {response.status}\n{text[:2000]}"
    return text


def counter_values(html: str) -> dict[str, int]:
    found = re.findall(r'data-counter="([a-z_]+)">\s*<span class="counter-value">(\d+)</span>', html)
    return {key: int(value) for key, value in found}


# --- pages render ----------------------------------------------------------------------------------


def test_every_page_renders_with_its_key_texts(engine: sa.Engine, fleet: Any) -> None:
    tverskaya = fleet.registers["tverskaya-1"]

    async def session(client: TestClient) -> None:
        dashboard = await fetch(client, "/")
        assert "Проблемы" in dashboard and "Ближайшие блокировки" in dashboard and "Смены" in dashboard
        assert 'lang="ru"' in dashboard and '<main id="main"' in dashboard
        tree = await fetch(client, "/tree")
        assert "<details open>" in tree and "Санкт-Петербург" in tree and "Баумана 3" in tree
        assert 'data-cannot-sell="1"' in tree and "не могут продавать: 1" in tree  # Тверская: shift over 24 h
        assert "блокировка заблокирована" not in tree and 'class="node-block">ближайшая остановка <time' in tree
        registers = await fetch(client, "/registers")
        assert "Тверская 1" in registers and "Найдено касс: <strong data-total>6</strong>" in registers
        register = await fetch(client, f"/registers/{tverskaya}")
        for text in (
            "Фискальный накопитель",
            "Передача в ОФД",
            "Договор с ОФД",
            "История с ",
            "Связь с кассой потеряна",
        ):
            assert text in register
        alerts = await fetch(client, "/alerts")
        assert "Подтвердить выбранные" in alerts and "Документы не переданы в ОФД" in alerts

    run(engine, session)


def test_dashboard_counters_match_the_api_totals(engine: sa.Engine, fleet: Any) -> None:
    async def session(client: TestClient) -> None:
        counters = counter_values(await fetch(client, "/"))
        assert set(counters) == {key for key, *_ in data.COUNTERS}
        for key, _, filters, _ in data.COUNTERS:
            response = await client.get(f"/api/v1/registers?{data.filter_query(filters)}")
            assert response.status == 200
            assert counters[key] == (await response.json())["total"], key
        assert counters["offline"] == 1 and counters["ofd_backlog"] == 1 and counters["clock_skew"] == 0

    run(engine, session)


def test_counter_link_lands_on_the_filtered_list(engine: sa.Engine, fleet: Any) -> None:
    async def session(client: TestClient) -> None:
        dashboard = await fetch(client, "/")
        href = re.search(r'href="([^"]+)" data-counter="shift_too_long"', dashboard)
        assert href is not None
        listing = await fetch(client, href.group(1).replace("&amp;", "&"))
        assert "Найдено касс: <strong data-total>1</strong>" in listing
        assert "0010670002" in listing and "0010670001" not in listing

    run(engine, session)


def test_ranking_puts_cannot_sell_first_marked_red_then_time_left(engine: sa.Engine, fleet: Any) -> None:
    async def session(client: TestClient) -> None:
        dashboard = await fetch(client, "/")
        ranking = dashboard[dashboard.index('id="ranking"') :]
        # tverskaya-2: shift over 24 h; then 10 days to the 30-day rule, 10 d 12 h to the ФН's end,
        # and nevsky-2 whose unpaid OFD is 30 days from blocking (it still sells).
        order = [fleet.registers[key] for key in ("tverskaya-2", "tverskaya-1", "nevsky-1", "nevsky-2")]
        positions = [ranking.index(f'data-register-id="{register_id}"') for register_id in order]
        assert positions == sorted(positions)
        blocked_row = ranking[positions[0] : positions[1]]
        assert 'data-marker="red"' in blocked_row and "Сейчас не может продавать" in blocked_row
        assert "через" not in blocked_row.split("Что делать")[0]  # never both "cannot sell" and "in N days"
        assert 'data-marker="yellow"' in ranking[positions[1] : positions[2]]  # 10 days left
        unpaid = ranking[positions[3] :].split("</tr>")[0]
        assert "через 30 дн.: 30 дней без передачи в ОФД после окончания оплаты ОФД" in unpaid
        assert "Оплата ОФД закончилась 1 день назад" in unpaid and "Что делать: Оплатите услуги ОФД" in unpaid
        assert all("Что делать:" in row for row in ranking.split("</tbody>")[0].split("<tr ")[2:])

    run(engine, session)


def test_register_page_shows_countdowns_and_fn_days_left(engine: sa.Engine, fleet: Any) -> None:
    async def session(client: TestClient) -> None:
        backlog = await fetch(client, f"/registers/{fleet.registers['tverskaya-1']}")
        blocks_at = re.search(r'data-blocks-at="([^"]+)"', backlog)
        assert blocks_at is not None
        assert datetime.fromisoformat(blocks_at.group(1)) - NOW == timedelta(days=10)
        assert "через 10 дн." in backlog and "30 дней без передачи в ОФД" in backlog
        assert '"unsent": 11' in backlog  # the chart data of the last history point
        fn = await fetch(client, f"/registers/{fleet.registers['nevsky-1']}")
        assert "осталось 10 дн." in fn
        assert "<dt>ФФД</dt><dd>1.05</dd>" in fn  # the format the register works in

    run(engine, session)


def test_csv_link_exports_exactly_the_filtered_list(engine: sa.Engine, fleet: Any) -> None:
    async def session(client: TestClient) -> None:
        listing = await fetch(client, "/registers?tag=24%2F7&severity=major&sort=severity")
        href = re.search(r'href="([^"]+)" download id="csv-export"', listing)
        assert href is not None
        csv_path = href.group(1).replace("&amp;", "&")
        assert csv_path.startswith("/api/v1/registers.csv?")
        response = await client.get(csv_path)
        assert response.status == 200
        rows = list(csv.DictReader(io.StringIO((await response.read()).decode("utf-8-sig")), delimiter=";"))
        shown = re.findall(r'<tr data-register-id="([^"]+)"', listing)
        assert [row["register_id"] for row in rows] == shown
        assert sorted(shown) == sorted([fleet.registers["nevsky-1"], fleet.registers["nevsky-2"]])

    run(engine, session)


def test_pagination_splits_long_lists(engine: sa.Engine, fleet: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from collector.web.pages import monitoring

    monkeypatch.setattr(monitoring, "PAGE_SIZE", 4)

    async def session(client: TestClient) -> None:
        first = await fetch(client, "/registers?sort=serial")
        second = await fetch(client, "/registers?sort=serial&page=2")
        assert "Страница 1 из 2" in first and 'href="?sort=serial&amp;page=2"' in first
        ids = re.findall(r'<tr data-register-id="([^"]+)"', first) + re.findall(
            r'<tr data-register-id="([^"]+)"', second
        )
        assert len(ids) == 6 == len(set(ids))

    run(engine, session)


# --- scope -----------------------------------------------------------------------------------------


def test_a_city_scope_does_not_show_the_other_city(engine: sa.Engine, fleet: Any) -> None:
    moscow = Principal(user="москва", scope=Scope.subtrees(fleet.tenant_a, [fleet.nodes["moscow"]]))
    nevsky = fleet.registers["nevsky-1"]

    async def session(client: TestClient) -> None:
        listing = await fetch(client, "/registers")
        assert "Тверская 1" in listing and "Невский" not in listing and "Баумана" not in listing
        counters = counter_values(await fetch(client, "/"))
        assert counters["fn_validity"] == 0 and counters["unreachable"] == 0 and counters["offline"] == 1
        tree = await fetch(client, "/tree")
        assert "Москва" in tree and "Санкт-Петербург" not in tree
        await fetch(client, f"/registers/{nevsky}", status=404)
        alerts = await fetch(client, "/alerts?state=all")
        assert nevsky not in alerts and fleet.registers["tverskaya-1"] in alerts

    run(engine, session, principal=moscow)


def test_another_tenant_sees_only_its_own(engine: sa.Engine, fleet: Any) -> None:
    other = Principal(user="лютик", scope=Scope.tenant(fleet.tenant_b))

    async def session(client: TestClient) -> None:
        listing = await fetch(client, "/registers")
        assert "Найдено касс: <strong data-total>1</strong>" in listing and "Баумана 3" in listing
        assert "Ромашка" not in await fetch(client, "/tree")

    run(engine, session, principal=other)


# --- errors ----------------------------------------------------------------------------------------


def test_bad_filter_and_unknown_register_get_friendly_pages(engine: sa.Engine, fleet: Any) -> None:
    async def session(client: TestClient) -> None:
        bad = await client.get("/registers?severity=bogus")
        assert bad.status == 400 and bad.content_type == "text/html"
        assert "severity" in await bad.text()
        missing = await client.get("/registers/nope")
        assert missing.status == 404 and "Не найдено" in await missing.text()
        await fetch(client, "/registers?page=0", status=400)

    run(engine, session)


def test_a_failing_page_renders_a_friendly_500_and_logs(
    engine: sa.Engine, fleet: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from collector.web.pages import monitoring

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret detail 42")

    monkeypatch.setattr(monitoring.data, "shift_summary", broken)

    async def session(client: TestClient) -> None:
        response = await client.get("/")
        text = await response.text()
        assert response.status == 500 and response.content_type == "text/html"
        assert "Что-то пошло не так" in text and "secret detail" not in text and "Traceback" not in text

    with caplog.at_level(logging.ERROR):
        run(engine, session)
    assert any("secret detail 42" in (record.exc_text or "") for record in caplog.records)


def test_a_broken_template_is_a_500_page_not_a_leak(
    engine: sa.Engine, fleet: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collector.web.pages import render as render_module

    real = render_module.aiohttp_jinja2.render_template

    def render_with_typo(template: str, *args: Any, **kwargs: Any) -> Any:
        if template == "tree.html":
            template = "no-such-template.html"
        return real(template, *args, **kwargs)

    monkeypatch.setattr(render_module.aiohttp_jinja2, "render_template", render_with_typo)

    async def session(client: TestClient) -> None:
        text = await fetch(client, "/tree", status=500)
        assert "no-such-template" not in text and "Что-то пошло не так" in text

    run(engine, session)


def test_static_files_are_public_but_pages_need_credentials(engine: sa.Engine, fleet: Any) -> None:
    async def session(client: TestClient) -> None:
        assert (await client.get("/static/app.js")).status == 200
        assert (await client.get("/")).status == 401
        authorised = await client.get("/", headers={"Authorization": "Bearer pages-test-token-0123456789"})
        assert authorised.status == 200

    run(engine, session, authenticator=StaticTokenAuth("pages-test-token-0123456789"))


# --- alert actions ---------------------------------------------------------------------------------


def csrf_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert found is not None
    return found.group(1)


def load_alert(engine: sa.Engine, alert_id: int) -> Any:
    with engine.connect() as conn:
        return repo.get_alert(conn, Scope.admin(), alert_id)


def test_acknowledge_needs_a_valid_csrf_token(engine: sa.Engine, fleet: Any) -> None:
    alert_id = fleet.alerts["tverskaya-1:ofd_backlog"]

    async def session(client: TestClient) -> None:
        refused = await client.post(
            f"/alerts/{alert_id}/ack", data={"csrf_token": "f" * 64}, allow_redirects=False
        )
        assert refused.status == 403
        assert not load_alert(engine, alert_id).acknowledged
        token = csrf_token(await fetch(client, "/alerts"))
        done = await client.post(
            f"/alerts/{alert_id}/ack",
            data={"csrf_token": token, "next": "/alerts?rule=ofd_backlog"},
            allow_redirects=False,
        )
        assert done.status == 303 and done.headers["Location"] == "/alerts?rule=ofd_backlog&done=ack"
        stored = load_alert(engine, alert_id)
        assert stored.acknowledged and stored.acked_by == "оператор"
        page = await fetch(client, done.headers["Location"])
        assert "Алерт подтверждён." in page and "подтверждён (оператор)" in page

    run(engine, session)


def test_bulk_acknowledge_comment_and_silence_announce_on_the_hub(engine: sa.Engine, fleet: Any) -> None:
    hub = EventHub()
    ids = [fleet.alerts["arbat:agent_offline"], fleet.alerts["nevsky-1:fn_validity"]]
    target = fleet.alerts["kazan:fn_memory"]

    async def session(client: TestClient) -> None:
        assert client.app[EVENT_HUB_KEY] is hub
        token = csrf_token(await fetch(client, "/alerts"))
        bulk = await client.post(
            "/alerts/ack",
            data=[("csrf_token", token), *[("ids", str(i)) for i in ids]],
            allow_redirects=False,
        )
        assert bulk.status == 303 and bulk.headers["Location"] in (
            "/alerts?done=ack%3A2",
            "/alerts?done=ack:2",
        )
        comment = await client.post(
            f"/alerts/{target}/comment",
            data={"csrf_token": token, "text": "  заказали ФН  "},
            allow_redirects=False,
        )
        assert comment.status == 303
        silence = await client.post(
            f"/alerts/{target}/silence",
            data={"csrf_token": token, "until": "2026-11-28T18:30"},
            allow_redirects=False,
        )
        assert silence.status == 303

    run(engine, session, hub=hub)
    assert all(load_alert(engine, alert_id).acknowledged for alert_id in ids)
    with engine.connect() as conn:
        assert [c.text for c in repo.list_comments(conn, target)] == ["заказали ФН"]

    async def shown(client: TestClient) -> None:
        assert (
            "Комментарии (1)" in (page := await fetch(client, "/alerts"))
            and "оператор:</span> заказали ФН" in page
        )

    run(engine, shown)
    # 18:30 on the tenant's (Moscow) wall clock is 15:30 UTC.
    assert load_alert(engine, target).silenced_until == datetime(2026, 11, 28, 15, 30, tzinfo=UTC)
    announced = hub.recent()
    assert [n.kind for n in announced] == ["alert"] * 4
    assert {n.register_id for n in announced[:2]} == {fleet.registers["arbat"], fleet.registers["nevsky-1"]}
    assert announced[2].tenant_id == fleet.tenant_b


def test_actions_refuse_out_of_scope_alerts_and_foreign_redirects(engine: sa.Engine, fleet: Any) -> None:
    moscow = Principal(user="москва", scope=Scope.subtrees(fleet.tenant_a, [fleet.nodes["moscow"]]))
    foreign = fleet.alerts["nevsky-1:fn_validity"]
    own = fleet.alerts["tverskaya-2:paper_out"]

    async def session(client: TestClient) -> None:
        token = csrf_token(await fetch(client, "/alerts"))
        hidden = await client.post(
            f"/alerts/{foreign}/ack", data={"csrf_token": token}, allow_redirects=False
        )
        assert hidden.status == 404
        redirected = await client.post(
            f"/alerts/{own}/ack",
            data={"csrf_token": token, "next": "//evil.example/x"},
            allow_redirects=False,
        )
        assert redirected.status == 303 and redirected.headers["Location"] == "/alerts?done=ack"
        empty = await client.post("/alerts/ack", data={"csrf_token": token}, allow_redirects=False)
        assert empty.status == 400

    run(engine, session, principal=moscow)
    assert not load_alert(engine, foreign).acknowledged
    assert load_alert(engine, own).acknowledged
