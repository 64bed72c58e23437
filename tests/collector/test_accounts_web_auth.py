"""The web ``Authenticator`` of accounts: API tokens and session cookies (with CSRF on unsafe
methods) become a ``Principal`` scoped by the user's grants."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import sqlalchemy as sa
from aiohttp.test_utils import make_mocked_request

from collector.accounts.audit import Actor
from collector.accounts.rights import Role
from collector.accounts.sessions import create_api_token
from collector.accounts.tree import create_node
from collector.accounts.web_auth import CSRF_HEADER, SESSION_COOKIE, USER_ID_KEY, AccountsAuth
from collector.storage import Scope

sys.path.insert(0, str(Path(__file__).parent))
import accounts_testkit as kit
from accounts_testkit import *  # noqa: F403  (the shared fixtures: conn, engine, mailer, service, world)

T0 = kit.T0


def _request(method: str = "GET", headers: dict[str, str] | None = None, cookie: str | None = None):
    all_headers = dict(headers or {})
    if cookie is not None:
        all_headers["Cookie"] = f"{SESSION_COOKIE}={cookie}"
    return make_mocked_request(method, "/api/v1/registers", headers=all_headers)


def test_tokens_and_sessions_resolve_to_grant_scopes(engine: sa.Engine, service) -> None:
    owner_email = f"web-{kit.make_inn()}@x.test"
    with engine.begin() as c:
        made = service.sign_up(
            c, email=owner_email, password=kit.PASSWORD, company="W", inn=kit.make_inn(), at=T0
        )
        service.confirm_email(c, service.mailer.last_token(owner_email), at=T0)
        city = create_node(
            c, Actor.cli(), made.tenant_id, parent_id=made.root_node_id, kind="city", name="Тула", at=T0
        )
        viewer = kit.user_with_role(c, made.tenant_id, f"v-{owner_email}", Role.VIEWER, city)
        token = create_api_token(c, viewer, "t", at=T0).token
    auth = AccountsAuth(engine, clock=lambda: T0)

    request = _request(headers={"Authorization": f"Bearer {token}"})
    principal = asyncio.run(auth.authenticate(request))
    assert principal is not None and principal.user == f"v-{owner_email}"
    assert principal.scope == Scope.subtrees(made.tenant_id, [city])
    assert principal.action_scope == Scope.subtrees(made.tenant_id, [])  # a viewer acts nowhere
    assert request[USER_ID_KEY] == viewer
    assert asyncio.run(auth.authenticate(_request(headers={"Authorization": "Bearer km_00_wrong"}))) is None

    session = service.login(engine, email=owner_email, password=kit.PASSWORD, ip="10.9.0.1", at=T0)
    owner = asyncio.run(auth.authenticate(_request(cookie=session.token)))
    assert owner is not None and owner.scope == owner.action_scope == Scope.tenant(made.tenant_id)
    assert asyncio.run(auth.authenticate(_request("POST", cookie=session.token))) is None  # no CSRF header
    forged = {CSRF_HEADER: "forged"}
    assert asyncio.run(auth.authenticate(_request("POST", forged, cookie=session.token))) is None
    good = {CSRF_HEADER: session.csrf_secret}
    assert asyncio.run(auth.authenticate(_request("POST", good, cookie=session.token))) is not None
    assert asyncio.run(auth.authenticate(_request())) is None
