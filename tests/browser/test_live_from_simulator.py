"""A live page update caused by the simulated register itself, in a real (headless Debian) Chromium.

The whole chain runs for real on loopback: the shipped ``paper-out`` scenario on a simulated
Shtrih register (``sim://``) → the agent runtime polling it → a private Mosquitto → the collector
service (SQLite, accounts login) → ``/events/stream`` → the register's page in Chromium, logged
in as the company owner. The register's clock is manual, so paper runs out exactly when the test
moves it past the scenario's ``+30s`` action, after the page's SSE connection is open; the page
must then show "нет бумаги" and the paper_out alert without being reloaded.
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

from collector.accounts.audit import Actor
from collector.accounts.company import DEFAULT_TIME_ZONE
from collector.accounts.tree import create_node
from collector.storage import create_engine_from_url
from collector.storage import repository as repo
from collector.storage.schema import registers
from firmware_sim.clock import ManualClock
from firmware_sim.hosts import install_sim_url_handler, register_sim, unregister_sim
from firmware_sim.model import RegisterModel
from firmware_sim.scenario import ScenarioRunner, load_scenario
from firmware_sim.shtrih import ShtrihDevice

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # live_chain
from live_chain import OWNER_PASSWORD, running_chain, sign_up_owner
from netkit import free_port, wait_for

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow, pytest.mark.timeout(90)]

OWNER_EMAIL = "owner@live-sim.test"
AGENT_ID = "agent-tverskaya"
# The shipped scenario's timeline: paper runs out 30 register-seconds after start.
PAPER_OUT_AFTER = timedelta(seconds=30)


@dataclass
class SimulatedRegister:
    model: RegisterModel
    clock: ManualClock
    runner: ScenarioRunner
    url: str

    @property
    def register_id(self) -> str:
        return f"shtrih-{self.model.serial}"

    def run_timeline_to(self, elapsed: timedelta) -> list[str]:
        """Move the register clock and apply what the scenario has due, under the lock the
        device's feeds take (the agent polls it from its own thread)."""
        with self.runner.lock:
            self.clock.advance(elapsed - self.runner.elapsed())
            return self.runner.tick()


@dataclass
class LiveChain:
    base_url: str
    engine: sa.Engine
    store_id: int
    register: SimulatedRegister

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"


def seed_company(engine: sa.Engine) -> int:
    """An owner (confirmed through the link the sign-up mails) and a store the agent is bound to."""
    at = datetime.now(UTC)
    with engine.begin() as conn:
        owner = sign_up_owner(conn, OWNER_EMAIL, "Ромашка Live", at)
        cli = Actor.cli()
        t = owner.tenant_id
        city = create_node(conn, cli, t, parent_id=owner.root_node_id, kind="city", name="Москва", at=at)
        store = create_node(conn, cli, t, parent_id=city, kind="store", name="Тверская 1", at=at)
        # Enrolled with its store: every register it reports lands under that node.
        repo.enroll_agent(conn, AGENT_ID, tenant_id=t, node_id=store, enrolled_at=at)
    return store


@pytest.fixture
def simulated_register() -> Iterator[SimulatedRegister]:
    # The register's clock reads the company's local time (a Moscow register), so the clock-skew
    # rule stays quiet; it is manual, so the scenario moves only when the test says.
    clock = ManualClock(datetime.now(ZoneInfo(DEFAULT_TIME_ZONE)).replace(tzinfo=None, microsecond=0))
    scenario = load_scenario("paper-out")
    model = scenario.build(clock)
    runner = ScenarioRunner(scenario, model)
    name = f"live-{uuid.uuid4().hex[:8]}"
    install_sim_url_handler()
    register_sim(name, runner.guard(ShtrihDevice(model)))
    try:
        yield SimulatedRegister(model, clock, runner, f"sim://{name}")
    finally:
        unregister_sim(name)


@pytest.fixture
def live_chain(
    mqtt_broker: Any, simulated_register: SimulatedRegister, tmp_path: Path, migrated_template: Path
) -> Iterator[LiveChain]:
    """Collector service (pages, accounts login) + agent polling the simulator, both on the
    private broker; stopped in reverse order whatever the test did."""
    db_path = tmp_path / "live.db"
    shutil.copyfile(migrated_template, db_path)
    db_url = f"sqlite:///{db_path}"
    engine = create_engine_from_url(db_url)
    store_id = seed_company(engine)
    web_port = free_port()
    agent = {"agent_id": AGENT_ID, "devices": [{"protocol": "shtrih", "url": simulated_register.url, "poll_interval": 0.2}]}
    try:
        with running_chain(mqtt_broker.url, db_url, web_port, "collector-live-browser", agent, tmp_path):
            yield LiveChain(f"http://127.0.0.1:{web_port}", engine, store_id, simulated_register)
    finally:
        engine.dispose()


def stored_under_store(chain: LiveChain) -> bool:
    with chain.engine.connect() as conn:
        node_id = conn.execute(
            sa.select(registers.c.node_id).where(registers.c.register_id == chain.register.register_id)
        ).scalar_one_or_none()
    return node_id == chain.store_id


def log_in(page: Any, chain: LiveChain) -> None:
    page.goto(chain.url("/"))
    page.wait_for_url(re.compile(r"/login\?next="))
    page.fill("#login-email", OWNER_EMAIL)
    page.fill("#login-password", OWNER_PASSWORD)
    page.click('form[aria-label="Вход"] button[type="submit"]')
    page.wait_for_url(chain.url("/"))


def test_paper_running_out_in_the_simulator_shows_live_on_the_register_page(
    live_chain: LiveChain, page: Any, screenshots: Path
) -> None:
    # Imported here: the browser fixture is what skips (or fails under CI) without Playwright.
    from playwright.sync_api import expect

    chain, register = live_chain, live_chain.register
    wait_for(lambda: stored_under_store(chain), 15, f"{register.register_id} stored under the agent's store")
    log_in(page, chain)
    page.goto(chain.url(f"/registers/{register.register_id}"))
    page.wait_for_selector('#live-status[data-state="open"]', timeout=10_000)

    paper = page.locator("#cards dt:text-is('Бумага') + dd")
    alerts = page.locator("#register-alerts")
    badge = page.locator("#register-severity")
    assert paper.inner_text() == "есть"
    assert "Нет бумаги" not in alerts.inner_text()
    assert "предупреждение" not in badge.inner_text()
    # Anything that replaces the document (reload, navigation) loses this marker and is recorded.
    page.evaluate("window.liveTestMarker = 'set before the simulator changed'")
    navigations: list[str] = []
    page.on(
        "framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None
    )

    happened = register.run_timeline_to(PAPER_OUT_AFTER)
    assert happened == ["paper out"] and register.model.paper_present is False

    try:
        # expect(), not wait_for_function: the pages' CSP refuses the eval the latter needs.
        expect(paper).to_have_text("нет бумаги", timeout=15_000)
        expect(alerts).to_contain_text("Нет бумаги", timeout=15_000)
    except AssertionError:
        pytest.fail(
            "the page did not show paper out within 15 s of the simulator running out of paper: "
            f"paper={paper.inner_text()!r}, alerts={alerts.inner_text()!r}, "
            f"live={page.locator('#live-status').get_attribute('data-state')!r}, "
            f"SSE notices={page.locator('body').get_attribute('data-live-events')!r}"
        )
    assert paper.inner_text() == "нет бумаги"
    # The heading's badge follows once the alert is evaluated (it arrives with the alert's notice).
    expect(badge).to_contain_text("предупреждение", timeout=10_000)
    assert "В кассе закончилась бумага" in alerts.inner_text()  # the paper_out rule's message
    assert page.evaluate("window.liveTestMarker") == "set before the simulator changed", (
        "the page was reloaded"
    )
    assert navigations == [], f"the page navigated instead of updating in place: {navigations}"
    assert int(page.locator("body").get_attribute("data-live-events") or 0) >= 1
    assert int(page.locator("body").get_attribute("data-refreshed") or 0) >= 1
    with chain.engine.connect() as conn:
        alert = repo.load_alert(conn, register.register_id, "paper_out")
    assert alert is not None and (alert.status, alert.severity) == ("active", "warning")
    page.screenshot(path=str(screenshots / "register-live-paper-out.png"), full_page=True)
