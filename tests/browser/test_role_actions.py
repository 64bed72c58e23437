"""Issue 16, "the three roles see only the actions they may take", in a real (headless Debian)
Chromium: owner, operator (granted Москва), accountant and viewer of one company log in through the
login form and walk the dashboard, the tree, the register list, a register page with an active
alert and /alerts. The DOM is checked for the forms and buttons each role is offered, and the
operator acknowledges an alert by clicking «Подтвердить».

The world is the security tests' (``security_testkit.seed_world``: every store's register has an
active alert) on the account flow's live site, plus a valid КЭП so the signed forms can be offered.
"""

from __future__ import annotations

import random
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from collector.accounts import kep
from collector.accounts.audit import Actor
from collector.accounts.certificates import parse_certificate
from collector.accounts.schema import tenant_profiles
from collector.storage.engine import begin_write

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "collector"))
sys.path.insert(0, str(HERE.parent / "collector" / "security"))
import kep_certs  # noqa: E402
import security_testkit as security_kit  # noqa: E402
import test_account_flow as flow  # noqa: E402

pytestmark = pytest.mark.timeout(90)
account_site = flow.account_site  # the accounts-mode app on a loopback port (a fixture)

# Every POST form a page may hold besides the header's «Выйти».
POST_FORMS = 'form[method="post"]:not(.logout)'
ALERT_ACTIONS = ("ack", "comment", "silence")


@dataclass(frozen=True)
class Role:
    """What one user of the world may do, as ``collector.accounts.rights.ROLE_PERMISSIONS`` says."""

    who: str  # key in the world's users
    stores: tuple[str, ...]  # whose registers (and alerts) the user sees
    acts_on_alerts: bool  # «Подтвердить», comment, silence
    fns: bool  # an application to the ФНС (technical staff)
    ofd: bool  # an e-document to the OFD (accountants)
    admin: frozenset[str]  # the administration sections listed (none: no «Управление»)


COMPANY = ("tverskaya", "arbat", "nevsky")
EVERY_SECTION = frozenset({"/admin/tree", "/admin/users", "/admin/contracts", "/admin/kep", "/admin/agents",
                           "/admin/notifications", "/admin/company"})
ROLES = (
    Role("owner_a", COMPANY, acts_on_alerts=True, fns=True, ofd=True, admin=EVERY_SECTION),
    Role("moscow_op", ("tverskaya", "arbat"), acts_on_alerts=True, fns=True, ofd=False,
         admin=frozenset({"/admin/agents"})),
    Role("accountant", COMPANY, acts_on_alerts=False, fns=False, ofd=True,
         admin=frozenset({"/admin/contracts", "/admin/kep"})),
    Role("viewer", COMPANY, acts_on_alerts=False, fns=False, ofd=False, admin=frozenset()),
)
OPERATOR_ACKS = "tverskaya"  # the alert the operator acknowledges by clicking


def enter_valid_kep(engine: sa.Engine, tenant_id: int) -> None:
    """The company's own certificate, valid by the real clock (the pages check it at "now"), entered as
    an owner enters a .cer file: the signed forms may then be offered."""
    at = datetime.now(UTC)
    with begin_write(engine) as conn:
        inn = conn.execute(sa.select(tenant_profiles.c.inn).where(tenant_profiles.c.tenant_id == tenant_id)).scalar_one()
        info = parse_certificate(kep_certs.make_certificate(company_inn=inn, not_before=at - timedelta(days=1)))
        kep.enter_certificate(conn, Actor.cli(), tenant_id, info, at=at)


@pytest.fixture
def world(account_site: Any) -> security_kit.World:
    world = security_kit.seed_world(account_site.engine, random.Random(16))
    enter_valid_kep(account_site.engine, world.tenant_a)
    return world


def post_actions(page: Any) -> set[str]:
    """The targets of the page's POST forms, with register and alert ids replaced by ``{id}``."""
    return {re.sub(r"/(\d+|kkt-[^/]+)/", "/{id}/", action or "")
            for action in page.locator(POST_FORMS).evaluate_all("forms => forms.map(f => f.getAttribute('action'))")}


def check_reading_pages(page: Any, site: Any, world: security_kit.World, role: Role) -> None:
    """Dashboard, tree and list: reading only, for everyone; «Управление» only with an admin section."""
    for path in ("/", "/tree", "/registers"):
        page.goto(site.url(path))
        assert post_actions(page) == set(), (role.who, path)
        assert page.locator('header nav a[href="/admin"]').count() == (1 if role.admin else 0), (role.who, path)
    # The last page walked is the list: exactly the registers the role sees.
    listed = {row.get_attribute("data-register-id") for row in page.locator("table.registers tbody tr").all()}
    assert listed == {world.registers[store] for store in role.stores}, role.who


def check_register_page(page: Any, site: Any, world: security_kit.World, role: Role) -> None:
    from playwright.sync_api import expect  # here: the browser fixture is what skips without Playwright

    register = world.registers["tverskaya"]
    page.goto(site.url(f"/registers/{register}"))
    expect(page.locator(f'#register-alerts li[data-alert-id="{world.alerts["tverskaya"]}"]')).to_be_visible()
    wanted = {"/registers/{id}/fns-application"} if role.fns else set()
    wanted |= {"/registers/{id}/ofd-document"} if role.ofd else set()
    assert post_actions(page) == wanted, role.who
    for name, offered in (("Подать заявление", role.fns), ("Отправить в ОФД", role.ofd)):
        button = page.get_by_role("button", name=name)
        if offered:
            expect(button).to_be_visible()
            expect(button).to_be_enabled()
        else:
            expect(button).to_have_count(0)
    to_actions = page.locator(f'#register-alerts a[href="/alerts?register={register}"]')
    expect(to_actions).to_have_count(1 if role.acts_on_alerts else 0)


def check_alerts_page(page: Any, site: Any, world: security_kit.World, role: Role, acked: set[str]) -> None:
    from playwright.sync_api import expect

    page.goto(site.url("/alerts"))
    rows = page.locator("tr[data-alert-id]")
    shown = {row.get_attribute("data-alert-id") for row in rows.all()}
    assert shown == {str(world.alerts[store]) for store in role.stores}, role.who
    for store in role.stores:
        row = page.locator(f'tr[data-alert-id="{world.alerts[store]}"]')
        ack = row.get_by_role("button", name=re.compile("^Подтвердить"))
        expect(ack).to_have_count(1 if role.acts_on_alerts and store not in acked else 0)
        for action in ("comment", "silence"):
            expect(row.locator(f'form[action$="/{action}"]')).to_have_count(1 if role.acts_on_alerts else 0)
        expect(row.get_by_text("только просмотр")).to_have_count(0 if role.acts_on_alerts else 1)
    if role.acts_on_alerts:  # the comment and silence forms sit behind «Ещё»: open it, they can be used
        row = page.locator(f'tr[data-alert-id="{world.alerts[role.stores[-1]]}"]')
        row.locator("summary").click()
        for name in ("Добавить комментарий", "Отключить уведомления"):
            expect(row.get_by_role("button", name=name)).to_be_visible()
            expect(row.get_by_role("button", name=name)).to_be_enabled()
    expect(page.locator("#bulk-ack")).to_have_count(1 if role.acts_on_alerts else 0)
    expect(page.locator("#select-all")).to_have_count(1 if role.acts_on_alerts else 0)
    kinds = {action.rsplit("/", 1)[-1] for action in post_actions(page)}
    assert kinds == (set(ALERT_ACTIONS) if role.acts_on_alerts else set()), role.who


def acknowledge_by_click(page: Any, world: security_kit.World, store: str) -> None:
    from playwright.sync_api import expect

    row = page.locator(f'tr[data-alert-id="{world.alerts[store]}"]')
    row.get_by_role("button", name=re.compile("^Подтвердить")).click()
    expect(page.locator("#done-message")).to_contain_text("Алерт подтверждён")
    expect(row.locator(".alert-state")).to_contain_text("подтверждён")
    expect(row.get_by_role("button", name=re.compile("^Подтвердить"))).to_have_count(0)


def check_administration(page: Any, site: Any, role: Role) -> None:
    """Exactly the sections a role may open are listed; the accountant's contracts page has its forms."""
    page.goto(site.url("/admin"))
    listed = page.locator(".admin-sections a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert set(listed) == role.admin, role.who
    if role.ofd and not role.fns:  # the accountant: edits the OFD contracts of the registers
        page.goto(site.url("/admin/contracts"))
        assert page.locator('form[action^="/admin/contracts/"] button[type="submit"]').count() >= 1


def test_each_role_sees_only_the_actions_it_may_take(account_site: Any, world: security_kit.World, page: Any) -> None:
    from playwright.sync_api import expect

    site, acked = account_site, set[str]()
    for role in ROLES:
        page.goto(site.url("/login"))
        flow._log_in(page, world.emails[role.who], security_kit.PASSWORD)
        page.wait_for_url(site.url("/"))
        check_reading_pages(page, site, world, role)
        check_register_page(page, site, world, role)
        check_alerts_page(page, site, world, role, acked)
        if role.who == "moscow_op":
            acknowledge_by_click(page, world, OPERATOR_ACKS)
            acked.add(OPERATOR_ACKS)
        check_administration(page, site, role)
        page.get_by_role("button", name="Выйти").click()
        page.wait_for_url(re.compile(r"/login\?done=logged-out$"))
        expect(page.locator("#login-email")).to_be_visible()
