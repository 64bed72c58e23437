"""The account pages over HTTP: log in/out, sign-up with an optional КЭП order, e-mail
confirmation, password reset and invitations — Russian errors beside their fields, CSRF on
every form, nothing half-applied, the browser sent to the login page and back, and the
administration link only for those with rights.

The app is built exactly as ``create_app`` builds it, with ``add_account_pages`` called right
after ``add_page_routes`` (patched in until the lead wires it; the call is idempotent after).
"""

from __future__ import annotations

import random
import re
import sys
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parents[2]))
sys.path.insert(0, str(Path(__file__).parents[2] / "security"))
import accounts_testkit as accounts_kit
import security_testkit as kit

from collector.accounts.audit import Actor
from collector.accounts.groups import find_group
from collector.accounts.schema import kep_orders, sessions, users
from collector.accounts.web_auth import SESSION_COOKIE
from collector.storage.engine import begin_write
from collector.web.shared.accounts import ACCOUNTS_WEB_KEY, form_token
from collector.web.shared.csrf import SEED_COOKIE

engine = accounts_kit.engine  # a migrated database per backend for the module
_TOKEN = re.compile(r'name="csrf_token" value="([^"]*)"')


client = pytest.fixture(kit.fresh_site, name="client")


def public_form(client: kit.Client, path: str) -> tuple[str, dict[str, str]]:
    """The anonymous form's token and the seed cookie it is bound to."""
    reply = client.call("GET", path)
    assert reply.status == 200, reply.text
    seed = kit.cookie_value(kit.set_cookies(reply)[SEED_COOKIE])
    found = _TOKEN.search(reply.text)
    assert found and found.group(1)
    return found.group(1), {SEED_COOKIE: seed}


def post_public(client: kit.Client, path: str, data: dict[str, str], form_path: str | None = None) -> kit.Reply:
    token, cookies = public_form(client, form_path or path)
    return client.call("POST", path, data={**data, "csrf_token": token}, cookies=cookies)


def log_in(client: kit.Client, email: str, password: str = kit.PASSWORD, next_path: str = "") -> kit.Reply:
    return post_public(client, "/login", {"email": email, "password": password, "next": next_path})


def session_of(reply: kit.Reply) -> dict[str, str]:
    return {SESSION_COOKIE: kit.cookie_value(kit.set_cookies(reply)[SESSION_COOKIE])}


def field_error(html: str, field_id: str) -> str:
    """The error paragraph that belongs to one input (``aria-describedby`` → ``…-error``)."""
    found = re.search(rf'<p class="field-error" id="{field_id}-error">([^<]*)</p>', html)
    return found.group(1) if found else ""


def new_email(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@signup.test"


def signup_data(**changes: str) -> dict[str, str]:
    base = {"email": new_email("owner"), "password": "a long enough passphrase", "company": "Новая Касса",
            "inn": accounts_kit.make_inn()}
    return {**base, **changes}


# --- login and logout ----------------------------------------------------------------------------


def test_the_login_form_needs_its_token(client: kit.Client) -> None:
    page = client.call("GET", "/login")
    assert page.status == 200 and "Вход" in page.text and 'lang="ru"' in page.text
    seed_line = kit.set_cookies(page)[SEED_COOKIE]
    assert "HttpOnly" in seed_line and "SameSite=Strict" in seed_line
    email = client.world.emails["owner_a"]
    forged = client.call("POST", "/login", data={"email": email, "password": kit.PASSWORD})
    assert forged.status == 403 and "Форма устарела" in forged.text
    assert SESSION_COOKIE not in kit.set_cookies(forged)


def test_login_sets_a_hardened_session_and_returns_only_to_this_site(client: kit.Client) -> None:
    email = client.world.emails["owner_a"]
    wrong = log_in(client, email, "not the password")
    assert wrong.status == 401 and "Неверный e-mail или пароль" in wrong.text
    good = log_in(client, email, next_path="/alerts")
    assert good.status == 303 and good.headers["Location"] == "/alerts"
    line = kit.set_cookies(good)[SESSION_COOKIE]
    assert "HttpOnly" in line and "SameSite=Lax" in line
    dashboard = client.call("GET", "/", cookies=session_of(good))
    assert dashboard.status == 200 and email in dashboard.text
    evil = log_in(client, email, next_path="//evil.example/steal")
    assert evil.headers["Location"] == "/"


def test_logout_ends_the_session_and_needs_the_form_token(client: kit.Client, engine: sa.Engine) -> None:
    cookies = session_of(log_in(client, client.world.emails["viewer"]))
    refused = client.call("POST", "/logout", data={"csrf_token": "wrong"}, cookies=cookies)
    assert refused.status == 403
    out = client.call("POST", "/logout", data={"csrf_token": form_token(cookies[SESSION_COOKIE])}, cookies=cookies)
    assert out.status == 303 and out.headers["Location"] == "/login?done=logged-out"
    assert client.call("GET", "/", cookies=cookies).status == 401
    with engine.connect() as conn:
        user = client.world.users["viewer"]
        live = conn.execute(sa.select(sa.func.count()).select_from(sessions).where(
            sessions.c.user_id == user, sessions.c.revoked_at.is_(None))).scalar_one()
    assert live == 0


def test_a_browser_is_sent_to_the_login_page_and_machines_get_401(client: kit.Client) -> None:
    browser = client.call("GET", "/alerts?state=all", headers={"Accept": "text/html,application/xhtml+xml"})
    assert browser.status == 303
    location = urlsplit(browser.headers["Location"])
    assert location.path == "/login" and parse_qs(location.query) == {"next": ["/alerts?state=all"]}
    assert client.call("GET", "/alerts").status == 401
    assert client.call("GET", "/api/v1/registers", headers={"Accept": "text/html"}).status == 401


def test_the_administration_link_is_only_for_those_with_rights(client: kit.Client) -> None:
    owner = client.call("GET", "/", cookies=session_of(log_in(client, client.world.emails["owner_a"])))
    viewer = client.call("GET", "/", cookies=session_of(log_in(client, client.world.emails["viewer"])))
    assert 'href="/admin"' in owner.text and "Выйти" in owner.text
    assert 'href="/admin"' not in viewer.text and "Выйти" in viewer.text


# --- sign-up -------------------------------------------------------------------------------------


def test_sign_up_errors_stand_beside_their_fields_and_nothing_is_created(client: kit.Client, engine: sa.Engine) -> None:
    data = signup_data(email="not-an-address", password="short", inn="1234567890", company=" ")
    reply = post_public(client, "/signup", data)
    assert reply.status == 422
    assert "e-mail" in field_error(reply.text, "su-email")
    assert "10 символов" in field_error(reply.text, "su-password")
    assert "ИНН" in field_error(reply.text, "su-inn")
    assert "название компании" in field_error(reply.text, "su-company")
    assert 'value="not-an-address"' in reply.text and "short" not in reply.text  # the password is never echoed
    assert client.mailer.sent == []


def test_a_taken_inn_is_reported_on_the_inn_field(client: kit.Client, engine: sa.Engine) -> None:
    first = signup_data()
    assert post_public(client, "/signup", first).status == 303
    again = post_public(client, "/signup", signup_data(inn=first["inn"]))
    assert again.status == 409 and "уже зарегистрирована" in field_error(again.text, "su-inn")
    taken = post_public(client, "/signup", signup_data(email=first["email"]))
    assert taken.status == 409 and "уже есть учётная запись" in field_error(taken.text, "su-email")
    assert len(client.mailer.sent) == 1  # only the first sign-up mailed


def test_sign_up_with_a_kep_order_is_one_change(client: kit.Client, engine: sa.Engine) -> None:
    person_inn = kit.make_person_inn(random.Random(7))
    kep_fields = {"kep": "1", "kep_subject": "employee", "kep_full_name": "Петрова Анна", "kep_position": "Бухгалтер",
                  "kep_inn": person_inn, "kep_email": "petrova@signup.test"}
    missing_snils = post_public(client, "/signup", signup_data(**kep_fields))
    assert missing_snils.status == 422 and "СНИЛС" in field_error(missing_snils.text, "su-kep-snils")
    data = signup_data(**kep_fields, kep_snils="112-233-445 95")
    done = post_public(client, "/signup", data)
    assert done.status == 303 and done.headers["Location"] == "/login?done=signed-up-kep"
    with engine.connect() as conn:
        tenant = conn.execute(sa.select(users.c.tenant_id).where(users.c.email == data["email"])).scalar_one()
        order = conn.execute(sa.select(kep_orders).where(kep_orders.c.tenant_id == tenant)).one()
    assert (order.subject, order.snils, order.state) == ("employee", "11223344595", "requested")
    mail = client.mailer.sent[-1]
    assert mail.to == data["email"] and "https://kassa.test/confirm?token=" in mail.text


def test_confirm_shows_a_button_and_the_post_uses_the_link_once(client: kit.Client, engine: sa.Engine) -> None:
    data = signup_data()
    post_public(client, "/signup", data)
    token = client.mailer.last_token(data["email"])
    unconfirmed = log_in(client, data["email"], data["password"])
    assert unconfirmed.status == 403 and "не подтверждён" in unconfirmed.text
    shown = client.call("GET", f"/confirm?token={token}")
    assert shown.status == 200 and "Подтвердить адрес" in shown.text
    confirmed = post_public(client, "/confirm", {"token": token}, form_path=f"/confirm?token={token}")
    assert confirmed.status == 303 and confirmed.headers["Location"] == "/login?done=confirmed"
    again = post_public(client, "/confirm", {"token": token}, form_path=f"/confirm?token={token}")
    assert again.status == 400 and "недействительна" in again.text
    assert log_in(client, data["email"], data["password"]).status == 303


# --- password reset and invitations --------------------------------------------------------------


def test_password_reset_through_the_mailed_link(client: kit.Client) -> None:
    email = client.world.emails["viewer"]
    unknown = post_public(client, "/password-reset", {"email": new_email("nobody")})
    known = post_public(client, "/password-reset", {"email": email})
    assert unknown.status == known.status == 303
    assert unknown.headers["Location"] == known.headers["Location"] == "/password-reset?done=sent"
    link = re.search(r"https://kassa.test(/reset\?token=\S+)", client.mailer.sent[-1].text)
    assert link is not None
    landing = client.call("GET", link.group(1))
    assert landing.status == 303 and landing.headers["Location"].startswith("/password-reset/confirm?token=")
    form_path = landing.headers["Location"]
    token = client.mailer.last_token(email)
    mismatch = post_public(client, "/password-reset/confirm",
                           {"token": token, "password": "a new passphrase", "password_again": "something else"},
                           form_path=form_path)
    assert mismatch.status == 422 and "не совпадают" in field_error(mismatch.text, "new-password-again")
    changed = post_public(client, "/password-reset/confirm",
                          {"token": token, "password": "a new passphrase", "password_again": "a new passphrase"},
                          form_path=form_path)
    assert changed.status == 303 and changed.headers["Location"] == "/login?done=reset"
    assert log_in(client, email).status == 401
    assert log_in(client, email, "a new passphrase").status == 303


def test_an_invitation_creates_the_account_with_a_password(client: kit.Client, engine: sa.Engine) -> None:
    world = client.world
    invitee = new_email("invitee")
    service = client.app[ACCOUNTS_WEB_KEY].service
    with begin_write(engine) as conn:
        group = find_group(conn, world.tenant_a, "Группа А")
        assert group is not None
        service.invite(conn, Actor.user(conn, world.users["owner_a"]), world.tenant_a, group, invitee, at=kit.T0)
    landing = client.call("GET", f"/invite?token={client.mailer.last_token(invitee)}")
    form_path = landing.headers["Location"]
    assert form_path.startswith("/invitations/accept?token=")
    token = client.mailer.last_token(invitee)
    needs_password = post_public(client, "/invitations/accept", {"token": token, "full_name": "Новый Сотрудник"},
                                 form_path=form_path)
    assert needs_password.status == 422 and "придумайте пароль" in field_error(needs_password.text, "inv-password")
    joined = post_public(client, "/invitations/accept",
                         {"token": token, "full_name": "Новый Сотрудник", "password": "an invited passphrase"},
                         form_path=form_path)
    assert joined.status == 303 and joined.headers["Location"] == "/login?done=joined"
    assert log_in(client, invitee, "an invited passphrase").status == 303
