"""A company without registers sees how to get its first one — the tree, an enrollment token, the
installer's command with ``--collector`` — instead of «Блокировка не грозит ни одной кассе»; a user
without those rights is told to wait for the administrator, with no links they could not open."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parents[2]))
sys.path.insert(0, str(Path(__file__).parents[2] / "security"))
import accounts_testkit as accounts_kit
import security_testkit as kit

from collector.accounts.rights import Role
from collector.accounts.service import AccountService, AccountSettings
from collector.accounts.sessions import create_api_token
from collector.storage import begin_write

engine = accounts_kit.engine
client = pytest.fixture(kit.fresh_site, name="client")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_new_company_sees_onboarding_instead_of_an_all_clear(client: kit.Client, engine: sa.Engine) -> None:
    mailer = accounts_kit.RecordingMailer()
    service = AccountService(mailer, accounts_kit.FAST_PASSWORDS, AccountSettings())
    rng = random.Random()
    with begin_write(engine) as conn:
        email = f"new-{rng.randrange(10**9)}@empty.test"
        company = service.sign_up(conn, email=email, password=kit.PASSWORD, company=f"Пустая {email}",
                                  inn=accounts_kit.make_inn(rng), at=kit.T0)
        service.confirm_email(conn, mailer.last_token(email), at=kit.T0)
        owner = create_api_token(conn, company.user_id, "t", at=kit.T0).token
        viewer_id = accounts_kit.user_with_role(conn, company.tenant_id, f"v{email}", Role.VIEWER, company.root_node_id)
        viewer = create_api_token(conn, viewer_id, "t", at=kit.T0).token
    page = client.call("GET", "/", headers=bearer(owner)).text
    assert 'id="onboarding"' in page and "Блокировка не грозит ни одной кассе" not in page
    assert 'href="/admin/tree"' in page and 'href="/admin/agents"' in page
    assert "kassa-agent enroll --collector https://kassa.test --token ТОКЕН" in page
    watcher = client.call("GET", "/", headers=bearer(viewer)).text
    assert 'id="onboarding"' in watcher and "администратор компании подключит кассы" in watcher
    assert 'href="/admin/tree"' not in watcher and 'href="/admin/agents"' not in watcher
    # A company with registers keeps its dashboard.
    assert 'id="onboarding"' not in client.call("GET", "/", who="owner_a").text
