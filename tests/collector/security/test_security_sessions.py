"""Browser sessions and the anonymous account flows over HTTP: sign-up → confirmation → login
with a hardened cookie, CSRF on cookie-authenticated writes, session fixation, logout, brute
force throttling (per e-mail and address: test_security_login_throttle), password reset and
invitations — e-mails only after commit."""

from __future__ import annotations

import random
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import security_testkit as kit

from collector.accounts.rights import Role
from collector.accounts.web_auth import CSRF_HEADER, SESSION_COOKIE
from collector.storage.engine import begin_write
from collector.web.shared.accounts import form_token

SIGNUP = "/api/v1/auth/signup"
LOGIN = "/api/v1/auth/login"


def _new_email(prefix: str) -> str:
    return f"{prefix}-{random.randrange(10**9)}@example.test"


def _login(client: kit.Client, email: str, password: str = kit.PASSWORD, cookie: str | None = None) -> kit.Reply:
    cookies = None if cookie is None else {SESSION_COOKIE: cookie}
    return client.call("POST", LOGIN, json={"email": email, "password": password}, cookies=cookies)


def _session(reply: kit.Reply) -> str:
    return kit.cookie_value(kit.set_cookies(reply)[SESSION_COOKIE])


def _user(engine: Any, world: kit.World, email: str) -> None:
    """A confirmed viewer of company A with the test password."""
    with begin_write(engine) as conn:
        kit.accounts_kit.user_with_role(conn, world.tenant_a, email, Role.VIEWER, world.nodes["root_a"])


def test_sign_up_confirm_and_log_in_with_a_hardened_cookie(make_client: Any) -> None:
    client = make_client(cookie_secure=True)
    email = _new_email("founder")
    body = {"email": email, "password": kit.PASSWORD, "company": "Василёк", "inn": kit.make_inn()}
    created = client.call("POST", SIGNUP, json=body)
    assert created.status == 201, created.text
    assert [mail.to for mail in client.mailer.sent] == [email]  # mailed once the company was committed

    early = _login(client, email)
    assert early.status == 403 and "confirm" in early.json["detail"]
    confirmed = client.call("POST", "/api/v1/auth/confirm", json={"token": client.mailer.last_token(email)})
    assert confirmed.status == 200 and confirmed.json["user_id"] == created.json["user_id"]
    again = client.call("POST", "/api/v1/auth/confirm", json={"token": client.mailer.last_token(email)})
    assert again.status == 400  # single use

    reply = _login(client, email)
    assert reply.status == 200, reply.text
    attributes = {part.strip().split("=")[0].lower() for part in kit.set_cookies(reply)[SESSION_COOKIE].split(";")}
    assert {"httponly", "secure", "samesite", "path"} <= attributes
    assert "samesite=lax" in kit.set_cookies(reply)[SESSION_COOKIE].lower()
    assert reply.headers["Cache-Control"] == "no-store"
    me = client.call("GET", "/api/v1/me", cookies={SESSION_COOKIE: _session(reply)})
    assert me.status == 200
    assert me.json["email"] == email and me.json["tenant"]["name"] == "Василёк"
    assert "manage_company" in me.json["company_permissions"]


def test_the_secure_flag_can_be_turned_off_for_plain_http_localhost(make_client: Any, engine: Any, world: kit.World) -> None:
    email = _new_email("local")
    _user(engine, world, email)
    reply = _login(make_client(cookie_secure=False), email)
    assert reply.status == 200
    assert "secure" not in kit.set_cookies(reply)[SESSION_COOKIE].lower()


def test_a_cookie_authenticated_write_needs_the_csrf_token(client: kit.Client, engine: Any, world: kit.World) -> None:
    email = _new_email("csrf")
    _user(engine, world, email)
    login = _login(client, email)
    session, csrf = _session(login), login.json["csrf_token"]
    cookies = {SESSION_COOKIE: session}

    missing = client.call("POST", "/api/v1/tokens", json={"name": "x"}, cookies=cookies)
    assert missing.status == 403 and "CSRF" in missing.json["title"]
    forged = client.call("POST", "/api/v1/tokens", json={"name": "x"}, cookies=cookies, headers={CSRF_HEADER: "forged"})
    assert forged.status == 403
    assert client.call("GET", "/api/v1/tokens", cookies=cookies).json["items"] == []  # nothing was created
    done = client.call("POST", "/api/v1/tokens", json={"name": "x"}, cookies=cookies, headers={CSRF_HEADER: csrf})
    assert done.status == 201
    # A wrong bearer token stays a 401 whatever cookie rides along.
    wrong = client.call("POST", "/api/v1/tokens", json={"name": "x"}, cookies=cookies,
                        headers={"Authorization": "Bearer km_00_nope"})
    assert wrong.status == 401


def test_a_session_from_before_login_is_not_accepted_after_it(client: kit.Client, engine: Any, world: kit.World) -> None:
    email = _new_email("fixation")
    _user(engine, world, email)
    planted = _session(_login(client, email))  # e.g. a cookie an attacker got into the browser
    fresh = _login(client, email, cookie=planted)
    assert fresh.status == 200
    assert _session(fresh) != planted
    assert client.call("GET", "/api/v1/me", cookies={SESSION_COOKIE: planted}).status == 401
    assert client.call("GET", "/api/v1/me", cookies={SESSION_COOKIE: _session(fresh)}).status == 200
    chosen = _login(client, email, cookie="attacker-chosen-value")
    assert _session(chosen) != "attacker-chosen-value"


def test_logout_ends_the_session(client: kit.Client, engine: Any, world: kit.World) -> None:
    email = _new_email("logout")
    _user(engine, world, email)
    login = _login(client, email)
    cookies = {SESSION_COOKIE: _session(login)}
    out = client.call("POST", "/api/v1/auth/logout", cookies=cookies, headers={CSRF_HEADER: login.json["csrf_token"]})
    assert out.status == 200
    assert kit.cookie_value(kit.set_cookies(out)[SESSION_COOKIE]) in ("", '""')
    assert client.call("GET", "/api/v1/me", cookies=cookies).status == 401


def test_login_guessing_from_one_address_is_throttled(make_client: Any) -> None:
    client = make_client(clock_offset=timedelta(days=1))  # its own window of counted failures
    statuses = [_login(client, _new_email("nobody"), "wrong password 1").status for _ in range(10)]
    assert statuses == [401] * 10
    throttled = _login(client, _new_email("nobody"), "wrong password 1")
    assert throttled.status == 429
    assert int(throttled.headers["Retry-After"]) > 0


def test_sign_up_and_reset_are_throttled_per_address(client: kit.Client) -> None:
    replies = [client.call("POST", "/api/v1/auth/password-reset", json={"email": _new_email("x")}) for _ in range(11)]
    assert [r.status for r in replies] == [202] * 10 + [429]
    assert client.mailer.sent == []  # unknown addresses: the same answer, and no mail
    signups = [client.call("POST", SIGNUP, json={}).status for _ in range(11)]
    assert signups[-1] == 429


def test_password_reset_sets_a_new_password_and_ends_sessions(client: kit.Client, engine: Any, world: kit.World) -> None:
    email = _new_email("reset")
    _user(engine, world, email)
    old = _session(_login(client, email))
    asked = client.call("POST", "/api/v1/auth/password-reset", json={"email": email})
    assert asked.status == 202 and [mail.to for mail in client.mailer.sent] == [email]
    token = client.mailer.last_token(email)
    weak = client.call("POST", "/api/v1/auth/password-reset/confirm", json={"token": token, "password": "short"})
    assert weak.status == 422  # refused before the link is spent
    done = client.call("POST", "/api/v1/auth/password-reset/confirm", json={"token": token, "password": "a brand new passphrase"})
    assert done.status == 200
    assert client.call("GET", "/api/v1/me", cookies={SESSION_COOKIE: old}).status == 401
    assert _login(client, email).status == 401
    assert _login(client, email, "a brand new passphrase").status == 200


def test_an_invitation_brings_a_new_user_into_the_group(make_client: Any, fresh_world: kit.World) -> None:
    client = make_client(on=fresh_world)
    group = int(fresh_world.a["{group_id}"])  # viewer on Тверская
    invitee = _new_email("invitee")
    sent = client.call("POST", "/api/v1/invitations", who="owner_a", json={"group_id": group, "email": invitee})
    assert sent.status == 201 and [mail.to for mail in client.mailer.sent] == [invitee]
    accepted = client.call(
        "POST", "/api/v1/invitations/accept",
        json={"token": client.mailer.last_token(invitee), "password": kit.PASSWORD, "full_name": "Новый Сотрудник"},
    )
    assert accepted.status == 200, accepted.text
    session = _session(_login(client, invitee))
    me = client.call("GET", "/api/v1/me", cookies={SESSION_COOKIE: session}).json
    assert [(g["role"], g["node_id"]) for g in me["grants"]] == [("viewer", fresh_world.nodes["tverskaya"])]
    listed = client.call("GET", "/api/v1/registers", cookies={SESSION_COOKIE: session}).json["items"]
    assert [item["register_id"] for item in listed] == [fresh_world.registers["tverskaya"]]


@pytest.mark.parametrize("bad_order", [{"inn": "123456789012"}, {"email": "no-at-sign"}])
def test_a_failed_sign_up_mails_nothing_and_leaves_nothing(client: kit.Client, bad_order: dict[str, str]) -> None:
    email, inn = _new_email("atomic"), kit.make_inn()
    order = {"full_name": "Петров Пётр", "position": "Директор", "inn": kit.make_person_inn(random.Random()),
             "email": "petrov@kep.test", **bad_order}
    body = {"email": email, "password": kit.PASSWORD, "company": "Одуванчик", "inn": inn, "kep_order": order}
    refused = client.call("POST", SIGNUP, json=body)
    assert refused.status == 422, refused.text
    assert client.mailer.sent == []  # the confirmation was queued, then dropped with the rollback
    retry = client.call("POST", SIGNUP, json={**body, "kep_order": None})
    assert retry.status == 201  # neither the e-mail nor the ИНН was left taken
    assert [mail.to for mail in client.mailer.sent] == [email]


def test_page_forms_work_with_the_session_and_need_its_form_token(make_client: Any, fresh_world: kit.World) -> None:
    client = make_client(on=fresh_world)
    session = _session(_login(client, fresh_world.emails["owner_a"]))
    cookies = {SESSION_COOKIE: session}
    page = client.call("GET", "/alerts", cookies=cookies)
    assert page.status == 200 and form_token(session) in page.text  # the forms carry it
    alert = fresh_world.alerts["tverskaya"]

    missing = client.call("POST", f"/alerts/{alert}/ack", cookies=cookies, data={"next": "/alerts"})
    assert missing.status == 403
    forged = client.call("POST", f"/alerts/{alert}/ack", cookies=cookies, data={"csrf_token": form_token("other")})
    assert forged.status == 403
    done = client.call("POST", f"/alerts/{alert}/ack", cookies=cookies, data={"csrf_token": form_token(session)})
    assert done.status == 303
    acked = client.call("GET", f"/api/v1/alerts/{alert}", cookies=cookies).json
    assert acked["acknowledged"] is True and acked["acked_by"] == fresh_world.emails["owner_a"]
