"""Closing a long shift from the register page, in a real (headless Debian) Chromium.

The whole chain runs for real on loopback: a simulated Shtrih register (``sim://``) whose shift
has been open 30 h → the agent runtime (its policy allows the Z-report) → a private Mosquitto →
the collector service (SQLite, accounts login, pages, action dispatcher) → the register page,
logged in as the company owner. The owner has the register page open in one tab; in a second tab
they click «Закрыть смену (Z-отчёт)», read the confirmation naming the register, its store and the
consequence, and confirm. The simulator closes the shift; the first tab, never reloaded, shows
the action done, the shift closed and the «Смена открыта» alert gone.
"""

from __future__ import annotations

import re
import shutil
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from collector.accounts.audit import Actor, list_entries
from collector.accounts.company import DEFAULT_TIME_ZONE
from collector.accounts.tree import create_node
from collector.storage import create_engine_from_url
from collector.storage import repository as repo
from firmware_sim.clock import ManualClock
from firmware_sim.hosts import install_sim_url_handler, register_sim, unregister_sim
from firmware_sim.model import RegisterModel
from firmware_sim.shtrih import ShtrihDevice

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # live_chain
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "collector"))
from live_chain import OWNER_PASSWORD, running_chain, sign_up_owner
from netkit import free_port, wait_for

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow, pytest.mark.timeout(90)]

OWNER_EMAIL = "owner@actions-live.test"
AGENT_ID = "agent-actions-live"
REGISTER_ID = "kkt-live-actions"


@dataclass
class Chain:
    base_url: str
    engine: sa.Engine
    tenant_id: int
    model: RegisterModel

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"


def seed_company(engine: sa.Engine) -> int:
    at = datetime.now(UTC)
    with engine.begin() as conn:
        owner = sign_up_owner(conn, OWNER_EMAIL, "Ромашка Действия", at)
        store = create_node(conn, Actor.cli(), owner.tenant_id, parent_id=owner.root_node_id, kind="store",
                            name="Тверская 1", at=at)
        repo.enroll_agent(conn, AGENT_ID, tenant_id=owner.tenant_id, node_id=store, enrolled_at=at)
    return owner.tenant_id


@pytest.fixture
def chain(mqtt_broker: Any, tmp_path: Path, migrated_template: Path) -> Iterator[Chain]:
    db_path = tmp_path / "actions.db"
    shutil.copyfile(migrated_template, db_path)
    db_url = f"sqlite:///{db_path}"
    engine = create_engine_from_url(db_url)
    tenant_id = seed_company(engine)
    web_port = free_port()
    # A Moscow register (its clock reads the company's local time) whose shift opened 30 h ago.
    now = datetime.now(ZoneInfo(DEFAULT_TIME_ZONE)).replace(tzinfo=None, microsecond=0)
    model = RegisterModel(clock=ManualClock(now))
    model.open_shift(at=now - timedelta(hours=30))
    name = f"actions-{uuid.uuid4().hex[:8]}"
    install_sim_url_handler()
    register_sim(name, ShtrihDevice(model))
    agent = {
        "agent_id": AGENT_ID,
        "devices": [{"protocol": "shtrih", "url": f"sim://{name}", "poll_interval": 0.3, "register_id": REGISTER_ID}],
        "actions": {"allow": ["check_now", "x_report", "close_shift"]},
    }
    try:
        with running_chain(mqtt_broker.url, db_url, web_port, "collector-actions-browser", agent, tmp_path):
            yield Chain(f"http://127.0.0.1:{web_port}", engine, tenant_id, model)
    finally:
        unregister_sim(name)
        engine.dispose()


def shift_alert_active(chain: Chain) -> bool:
    with chain.engine.connect() as conn:
        alert = repo.load_alert(conn, REGISTER_ID, "shift_too_long")
    return alert is not None and alert.status == "active"


def test_the_owner_closes_a_long_shift_and_sees_the_alert_clear_live(
    chain: Chain, page: Any, screenshots: Path
) -> None:
    from playwright.sync_api import expect

    wait_for(lambda: shift_alert_active(chain), 20, "the 30-hour shift's alert to be raised")
    page.goto(chain.url("/"))
    page.wait_for_url(re.compile(r"/login\?next="))
    page.fill("#login-email", OWNER_EMAIL)
    page.fill("#login-password", OWNER_PASSWORD)
    page.click('form[aria-label="Вход"] button[type="submit"]')
    page.wait_for_url(chain.url("/"))

    # Tab one: the register page, left open and never reloaded.
    page.goto(chain.url(f"/registers/{REGISTER_ID}"))
    page.wait_for_selector('#live-status[data-state="open"]', timeout=10_000)
    active = page.locator("#register-alerts ul.alert-list:not(.past)")
    expect(active).to_contain_text("Смена открыта")
    page.evaluate("window.liveTestMarker = 'set before the action'")
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None)

    # Tab two: the same owner takes the action.
    other = page.context.new_page()
    other.goto(chain.url(f"/registers/{REGISTER_ID}"))
    other.click('a[data-action="close_shift"]')
    other.wait_for_url(chain.url(f"/registers/{REGISTER_ID}/actions/close_shift"))
    expect(other.locator("#action-consequence")).to_contain_text(
        f"Будет снят Z-отчёт: смена № {chain.model.shift_number} закроется, касса напечатает отчёт")
    expect(other.locator("#action-confirm")).to_contain_text("Тверская 1")
    other.screenshot(path=str(screenshots / "register-action-confirm.png"), full_page=True)
    other.click("#action-submit")
    other.wait_for_url(re.compile(r"done=action-requested"))

    latest = page.locator("#action-history li").first
    expect(latest).to_have_attribute("data-status", "done", timeout=20_000)
    expect(latest).to_contain_text("выполнено")
    expect(active.locator("li", has_text="Смена открыта")).to_have_count(0, timeout=15_000)
    expect(page.locator("#register-alerts ul.past")).to_contain_text("Смена открыта")
    expect(page.locator("#cards dt:text-is('Состояние') + dd")).to_contain_text("закрыт")
    assert page.evaluate("window.liveTestMarker") == "set before the action", "the page was reloaded"
    assert navigations == [], f"the page navigated instead of updating in place: {navigations}"
    page.screenshot(path=str(screenshots / "register-action-done.png"), full_page=True)

    assert not chain.model.shift_open  # the simulated register really printed the Z-report
    with chain.engine.connect() as conn:
        actions = [(e.action, e.actor) for e in list_entries(conn, chain.tenant_id, target_type="register")]
    assert actions[:2] == [("register_action.done", f"agent {AGENT_ID}"), ("register_action.request", OWNER_EMAIL)]
