"""What a Russian shop manager reads: no raw identifiers (ФН warning bits, protocol ids), a backlog
count that cannot be read as seconds, «Отключить уведомления» instead of «тишина», and one word —
«Подтвердить» — for acknowledging."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer

from collector.storage.scope import Scope
from collector.web import Principal
from collector.web.i18n import labels
from protocol.kkt.fn import FnWarning

sys.path.insert(0, str(Path(__file__).parents[2]))
import pages_testkit as kit

engine = kit.module_engine
fleet = kit.seeded_fleet
TEMPLATES = Path(__file__).parents[4] / "collector" / "web" / "templates"


def pages(engine: sa.Engine, *paths: str) -> list[str]:
    app = kit.build_app(engine, authenticator=kit.FixedPrincipal(Principal(user="ops", scope=Scope.admin())),
                        clock=lambda: kit.FIXED_NOW)

    async def go() -> list[str]:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            found = []
            for path in paths:
                response = await client.get(path)
                assert response.status == 200, path
                found.append(await response.text())
            return found

    return asyncio.run(go())


def test_every_fn_warning_and_protocol_has_a_russian_label() -> None:
    ru = labels("ru")
    for flag in FnWarning:
        assert flag.name and ru.fn_warning(flag.name) != flag.name and re.search("[а-я]", ru.fn_warning(flag.name))
    assert (ru.protocol("shtrih"), ru.protocol("atol")) == ("Штрих-М", "АТОЛ")


def test_the_pages_show_labels_not_identifiers(engine: sa.Engine, fleet: kit.PagesFleet) -> None:
    register, listing = pages(engine, f"/registers/{fleet.registers['kazan']}", "/registers")
    assert "память ФН почти заполнена (90 %)" in register and "MEMORY_ALMOST_FULL" not in register
    assert "(atol)" not in register and "АТОЛ" in register
    # «51 с 16.11.2026» read as «51 seconds»: the count and the oldest document are now apart.
    assert re.search(r"\d+ шт\., самый старый от \d\d\.\d\d\.\d{4}", listing)
    assert not re.search(r">\d+ с \d\d\.\d\d", listing)


def test_one_word_for_acknowledging_and_no_silence_jargon() -> None:
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text(encoding="utf-8")
        assert not re.search(r"Принять\b(?! приглашение)|>принято|тишин|Тишин|заглуш", text), template.name


def test_the_history_says_what_period_it_really_covers(engine: sa.Engine, fleet: kit.PagesFleet) -> None:
    (page,) = pages(engine, f"/registers/{fleet.registers['tverskaya-1']}")
    # Ten points an hour apart, the last 3 hours ago: nine hours of data, not «7 days».
    assert "История за 7 дней" not in page and "Данные есть только за 9 ч" in page
    heading = re.search(r'<h2 id="chart-title">История с ([\d.: ]+) по ([\d.: ]+)</h2>', page)
    assert heading is not None
    first = (kit.FIXED_NOW - timedelta(hours=12)).astimezone(kit.MOSCOW).strftime("%d.%m.%Y %H:%M")
    assert heading.group(1) == first  # in the company's zone, like the rest of the page
    chart = json.loads(page.split('id="history-data">')[1].split("</script>")[0])
    assert chart[0]["local"] == first  # app.js labels the axis with these, not the browser's zone
