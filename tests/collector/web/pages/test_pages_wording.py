"""What a Russian shop manager reads: no raw identifiers (ФН warning bits, protocol ids), a backlog
count that cannot be read as seconds, «Отключить уведомления» instead of «тишина», and one word —
«Подтвердить» — for acknowledging."""

from __future__ import annotations

import asyncio
import re
import sys
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
