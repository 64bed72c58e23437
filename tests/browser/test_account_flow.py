"""The account flow in a real (headless Debian) Chromium: sign-up → the confirmation link from the
app's mail outbox → login → dashboard → the owner builds two cities in the tree editor → the city
manager sees only their city (in administration, only their agents) → logout. Accounts authentication exactly
as ``create_app`` sets it up, with the account pages mounted by ``add_account_pages``."""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from collector.accounts.rights import Role
from collector.accounts.schema import users
from collector.accounts.service import AccountService, AccountSettings
from collector.storage import create_engine_from_url
from collector.storage.engine import begin_write
from collector.storage.schema import nodes
from collector.web import WebSettings, create_app
from collector.web.pages.navigation import add_account_pages

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "collector"))
import accounts_testkit as accounts_kit  # noqa: E402

pytestmark = pytest.mark.timeout(90)
PASSWORD = "a browser passphrase"
# Elements that stick out past the right edge of the window (a phone must never scroll sideways).
OVERFLOWING = """[...document.querySelectorAll('body *')]
  .filter(el => el.getBoundingClientRect().right > window.innerWidth + 1 || el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX === 'visible')
  .slice(0, 5).map(el => el.tagName + '.' + el.className + '#' + el.id)"""


def _harness() -> Any:
    """This folder's conftest as a module, for its loopback server thread and port picker."""
    spec = importlib.util.spec_from_file_location("account_flow_browser_harness", HERE / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


@dataclass
class AccountSite:
    base_url: str
    engine: sa.Engine
    mailer: accounts_kit.RecordingMailer

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"


@pytest.fixture
def account_site(tmp_path: Path, migrated_template: Path) -> Iterator[AccountSite]:
    harness = _harness()
    shutil.copyfile(migrated_template, tmp_path / "accounts.db")
    engine = create_engine_from_url(f"sqlite:///{tmp_path}/accounts.db")
    port = harness.free_port()
    base = f"http://127.0.0.1:{port}"
    mailer = accounts_kit.RecordingMailer()
    service = AccountService(mailer, accounts_kit.FAST_PASSWORDS, AccountSettings(base_url=base))
    app = create_app(WebSettings(web_auth="accounts", cookie_secure=False, public_url=base), engine=engine,
                     account_service=service)
    add_account_pages(app)  # a no-op once create_app mounts them itself
    server = harness._ServerThread(app, port)
    server.start()
    try:
        yield AccountSite(base, engine, mailer)
    finally:
        server.stop()
        engine.dispose()


def _seed_registers_and_manager(site: AccountSite, email: str, manager: str) -> None:
    """What agents and an invitation would bring: one register per city, a manager of Москва."""
    with begin_write(site.engine) as conn:
        tenant = conn.execute(sa.select(users.c.tenant_id).where(users.c.email == email)).scalar_one()
        city = dict(conn.execute(sa.select(nodes.c.name, nodes.c.id).where(nodes.c.tenant_id == tenant)).all())
        accounts_kit.add_register(conn, tenant, city["Москва"], "kkt-moscow-1")
        accounts_kit.add_register(conn, tenant, city["Петербург"], "kkt-piter-1")
        accounts_kit.user_with_role(conn, tenant, manager, Role.OPERATOR, city["Москва"])


def _log_in(page: Any, email: str, password: str) -> None:
    page.fill("#login-email", email)
    page.fill("#login-password", password)
    page.click('form[aria-label="Вход"] button[type="submit"]')


def shoot(page: Any, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def test_sign_up_confirm_log_in_and_a_city_manager_sees_only_their_city(
    account_site: AccountSite, page: Any, screenshots: Path
) -> None:
    site, email, manager = account_site, "owner@flow.test", "moscow.manager@flow.test"
    page.goto(site.url("/"))
    page.wait_for_url(re.compile(r"/login\?next=(/|%2F)$"))
    page.click("text=Зарегистрировать компанию")
    page.fill("#su-email", email)
    page.fill("#su-password", PASSWORD)
    page.fill("#su-company", "Ромашка Браузер")
    page.fill("#su-inn", "1234567890")  # a wrong control digit: the error stands beside the field
    page.click('form[aria-label="Регистрация"] button[type="submit"]')
    assert "контрольной цифрой" in page.locator("#su-inn-error").inner_text()
    shoot(page, screenshots, "signup")
    page.fill("#su-password", PASSWORD)  # never echoed back
    page.fill("#su-inn", accounts_kit.make_inn())
    page.click('form[aria-label="Регистрация"] button[type="submit"]')
    page.wait_for_url(re.compile(r"/login\?done=signed-up$"))
    _log_in(page, email, PASSWORD)  # before confirming: refused, and says why
    assert "не подтверждён" in page.locator(".form-error").inner_text()

    link = re.search(r"(/confirm\?token=\S+)", site.mailer.sent[-1].text)
    assert link is not None and site.mailer.sent[-1].to == email
    page.goto(site.url(link.group(1)))
    page.click("text=Подтвердить адрес")
    page.wait_for_url(re.compile(r"/login\?done=confirmed$"))
    _log_in(page, email, PASSWORD)
    page.wait_for_url(site.url("/"))
    assert page.locator("h1").first.is_visible()
    page.click("nav >> text=Управление")
    page.click("text=Структура компании")
    for name in ("Москва", "Петербург"):
        page.select_option("#new-kind", "city")
        page.fill("#new-name", name)
        page.click('#create-node button[type="submit"]')
        page.wait_for_selector("#done-message")
    shoot(page, screenshots, "admin-tree")
    page.set_viewport_size({"width": 375, "height": 800})  # a phone: nothing may need sideways scrolling
    for path in ("/admin/tree", "/admin/users", "/admin/kep", "/admin/contracts", "/signup"):
        page.goto(site.url(path))
        wide = page.evaluate(OVERFLOWING)
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert not wide and width[0] <= width[1], f"{path}: {wide} {width}"
    page.goto(site.url("/admin/users"))
    shoot(page, screenshots, "admin-users-phone")
    page.set_viewport_size({"width": 1280, "height": 800})
    page.click("text=Выйти")
    page.wait_for_url(re.compile(r"/login\?done=logged-out$"))

    _seed_registers_and_manager(site, email, manager)
    _log_in(page, manager, accounts_kit.PASSWORD)
    page.wait_for_url(site.url("/"))
    page.click("nav >> text=Управление")  # an operator may enroll agents in their city, and only that
    sections = page.locator(".admin-sections").inner_text()
    assert "Агенты" in sections and "Структура компании" not in sections and "Пользователи" not in sections
    page.click("text=Агенты и токены подключения")
    assert "Петербург" not in page.locator("main").inner_text()
    page.goto(site.url("/registers"))
    listed = page.locator("main").inner_text()
    assert "kkt-moscow-1" in listed and "kkt-piter-1" not in listed
    page.goto(site.url("/tree"))
    tree = page.locator("main").inner_text()
    assert "Москва" in tree and "Петербург" not in tree
    page.goto(site.url("/registers/kkt-piter-1"))
    assert "вне вашей зоны доступа" in page.locator("main").inner_text()
    page.click("text=Выйти")
    page.wait_for_url(re.compile(r"/login\?done=logged-out$"))
    page.goto(site.url("/registers"))
    page.wait_for_url(re.compile(r"/login\?next="))
