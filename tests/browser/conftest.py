"""Browser-test harness: Playwright driving the machine's Debian Chromium (never a downloaded
browser), and a collector app with the pages served on a free loopback port from a seeded
SQLite database.

Chromium or Playwright missing: the tests skip locally, and fail under ``CI=true`` (CI must
install the ``chromium`` package and the ``playwright`` test extra).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web

from collector.storage import create_engine_from_url, migrate
from collector.web.pages.sse import EventHub

CHROMIUM = os.environ.get("KASSA_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"


# importlib mode: make the helper shared with the page tests importable.
sys.path.insert(0, str(REPO_ROOT / "tests" / "collector"))
import pages_testkit as kit  # noqa: E402


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: browser tests must run)")
    pytest.skip(reason)


# Module scope, not session: Playwright's sync API keeps an asyncio loop running in this thread
# while it is open, and every later test that calls asyncio.run() would fail under it.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        _unavailable(f"Chromium not found at {CHROMIUM}: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed: pip install playwright (no 'playwright install' needed)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(locale="ru-RU", timezone_id="Europe/Moscow", accept_downloads=True)
    context.set_default_timeout(5_000)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    # Whatever the Content-Security-Policy blocked (an inline script or style) fails the test too.
    opened.on("console", lambda message: errors.append(message.text) if "Content Security Policy" in message.text else None)
    try:
        yield opened
    finally:
        context.close()
    assert not errors, f"JavaScript errors or CSP violations on the page: {errors}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class LiveSite:
    base_url: str
    engine: sa.Engine
    hub: EventHub
    fleet: Any

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"


class _ServerThread:
    """The app on its own event-loop thread, as ``collector.service.WebServer`` runs it."""

    def __init__(self, app: web.Application, port: int) -> None:
        self.app = app
        self.port = port
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="pages-test-server", daemon=True)
        self.runner = web.AppRunner(app, shutdown_timeout=2.0)

    def start(self) -> None:
        self.thread.start()

        async def serve() -> None:
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

        asyncio.run_coroutine_threadsafe(serve(), self.loop).result(timeout=10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated empty database; each test copies it (much faster than migrating again)."""
    path = tmp_path_factory.mktemp("browser-template") / "template.db"
    engine = create_engine_from_url(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()
    return path


@pytest.fixture
def site(tmp_path: Path, migrated_template: Path) -> Iterator[LiveSite]:
    shutil.copyfile(migrated_template, tmp_path / "browser.db")
    engine = create_engine_from_url(f"sqlite:///{tmp_path}/browser.db")
    with engine.begin() as conn:
        fleet = kit.seed_pages_fleet(conn, kit.utc_now())
    hub = EventHub()
    port = free_port()
    server = _ServerThread(kit.build_app(engine, hub=hub, heartbeat_seconds=5.0), port)
    server.start()
    try:
        yield LiveSite(f"http://127.0.0.1:{port}", engine, hub, fleet)
    finally:
        server.stop()
        engine.dispose()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
