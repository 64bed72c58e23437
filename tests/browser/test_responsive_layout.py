"""Everything that matters is on screen at both ends: on a 390 px phone the «Ближайшие блокировки»
rows are cards showing «Продажи» (cause and countdown) and severity; at 1400 px the register list
shows «Продажи» without scrolling sideways. The chart's axis is in the company's zone even when the
browser is elsewhere. Screenshots go to test-artifacts/screenshots."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from collector.storage.schema import nodes, registers

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1400, "height": 900}


@pytest.fixture
def open_page(browser: Any) -> Iterator[Any]:
    contexts: list[Any] = []

    def opened(viewport: dict[str, int], timezone: str = "Europe/Moscow") -> Any:
        context = browser.new_context(viewport=viewport, locale="ru-RU", timezone_id=timezone)
        context.set_default_timeout(5_000)
        contexts.append(context)
        return context.new_page()

    yield opened
    for context in contexts:
        context.close()


def inside(box: dict[str, float] | None, width: int) -> bool:
    return box is not None and box["width"] > 0 and box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5


def test_the_ranking_is_cards_on_a_phone(site: Any, open_page: Any, screenshots: Path) -> None:
    page = open_page(PHONE)
    page.goto(site.url("/"))
    rows = page.locator("#ranking tbody tr")
    assert rows.count() >= 3
    for index in range(rows.count()):
        row = rows.nth(index)
        for cell in ("sell", "severity"):  # «Продажи» holds the cause and the countdown (or «сейчас не может»)
            target = row.locator(f"td[data-cell='{cell}']")
            assert target.is_visible(), (index, cell)
            assert inside(target.bounding_box(), PHONE["width"]), (index, cell, target.bounding_box())
            assert target.inner_text().strip(), (index, cell)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=str(screenshots / "dashboard-phone-ranking.png"), full_page=True)


def test_the_register_list_shows_time_to_block_at_1400_px(site: Any, open_page: Any, screenshots: Path) -> None:
    with site.engine.begin() as conn:  # as long as the demo's: 16-digit serials, stores in a mall
        conn.execute(sa.update(nodes).values(name=nodes.c.name + " — ТЦ «Европейский», 2 этаж, у эскалатора"))
        conn.execute(sa.update(registers).values(serial="001234560000" + sa.func.substr(registers.c.serial, 7, 4)))
    page = open_page(DESKTOP)
    page.goto(site.url("/registers"))
    header = page.locator("table.registers thead th", has_text="Продажи")
    assert inside(header.bounding_box(), DESKTOP["width"]), header.bounding_box()
    wrap = page.locator("#register-list .table-wrap")
    assert wrap.evaluate("el => el.scrollWidth <= el.clientWidth + 1"), "the list scrolls sideways at 1400 px"
    first = page.locator("table.registers tbody tr").first.locator("td[data-label='Продажи']")
    assert inside(first.bounding_box(), DESKTOP["width"]) and first.inner_text().strip()
    page.screenshot(path=str(screenshots / "registers-1400.png"), full_page=True)


def test_the_chart_axis_is_in_the_company_zone_whatever_the_browser_zone(site: Any, open_page: Any) -> None:
    page = open_page(DESKTOP, timezone="America/New_York")
    page.goto(site.url(f"/registers/{site.fleet.registers['tverskaya-1']}"))
    axis = page.locator("#history-chart svg .axis-from").text_content() or ""  # SVG text: no inner_text
    heading = page.locator("#chart-title").inner_text()
    assert axis and f"с {axis} по" in heading  # «История с 28.11.2026 00:00 по …»: Moscow time, as the heading


# The widest word of each card term against the width the term gets: a word wider than its column
# is broken mid-word («Идентификато р»).
_TOO_NARROW_TERMS = """() => {
  const canvas = document.createElement("canvas").getContext("2d");
  return Array.from(document.querySelectorAll(".card dt")).filter(dt => {
    const style = getComputedStyle(dt);
    canvas.font = style.fontWeight + " " + style.fontSize + " " + style.fontFamily;
    const widest = Math.max(...dt.textContent.split(/\\s+/).map(word => canvas.measureText(word).width));
    return widest > dt.clientWidth + 0.5;
  }).map(dt => dt.textContent.trim());
}"""


@pytest.mark.parametrize("width", [390, 800, 1100, 1400])
def test_card_terms_never_break_mid_word(site: Any, open_page: Any, width: int) -> None:
    page = open_page({"width": width, "height": 900})
    page.goto(site.url(f"/registers/{site.fleet.registers['tverskaya-1']}"))
    assert page.locator(".card dt", has_text="Идентификатор").count() == 1
    assert page.evaluate(_TOO_NARROW_TERMS) == []
    assert page.evaluate("document.documentElement.scrollWidth") <= width
