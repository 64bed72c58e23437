"""Account pages: log in and out, sign up (with an optional КЭП order), confirm the e-mail,
reset a password, accept an invitation (``navigation.add_account_pages`` mounts them with the
administration pages).

Every flow calls the same ``AccountService`` / ``kep`` functions as the JSON API
(``api.users``) inside ``run_in_transaction`` (one transaction, e-mails only after the commit),
so a failed sign-up leaves nothing behind and mails nothing. Fields are checked first with
Russian messages shown next to the field; what only the library can tell (a taken ИНН, a used
link) is translated from its refusal.

The anonymous forms carry a signed double-submit token bound to a ``SameSite=Strict`` cookie
(``CookieCsrf``; a login form without it could log a victim into an attacker's account); the
logged-in forms carry the session's form token (``SessionCsrf``), checked by ``SessionAuth``.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from collector.accounts import kep
from collector.accounts.audit import Actor
from collector.accounts.errors import AccountsError
from collector.accounts.sessions import NewSession, revoke_session
from collector.accounts.web_auth import SESSION_COOKIE
from collector.web.pages.render import PageError, page, render
from collector.web.pages.support import (
    RU_REFUSALS,
    FieldErrors,
    check_email,
    check_inn_field,
    check_new_password,
    check_text,
    form_fields,
    kep_applicant,
    refusal_text,
    safe_next,
    see_other,
)
from collector.web.problems import Problem
from collector.web.routing import ENGINE_KEY, now
from collector.web.shared.accounts import (
    ACCOUNTS_WEB_KEY,
    as_problem,
    client_address,
    run_in_transaction,
    throttle,
)
from collector.web.shared.csrf import CSRF_FIELD, CookieCsrf

# Every web process must agree on the anonymous forms' token, so the key is fixed; what protects
# the form is that another site can neither read nor set the HttpOnly, SameSite=Strict seed cookie.
PUBLIC_FORM_KEY = hashlib.sha256(b"kassa-monitor anonymous form token").digest()
PUBLIC_CSRF_KEY = web.AppKey("public_form_csrf", CookieCsrf)
STALE_FORM = "Форма устарела или пришла с другого сайта. Обновите страницу и повторите."

# --- refusals in Russian -------------------------------------------------------------------------


# --- forms ---------------------------------------------------------------------------------------


async def public_form(request: web.Request) -> dict[str, str]:
    fields = await form_fields(request)
    if not request.app[PUBLIC_CSRF_KEY].verify(request, fields.get(CSRF_FIELD)):
        raise PageError(403, STALE_FORM)
    return fields


def render_public(request: web.Request, template: str, context: dict[str, Any], *, status: int = 200) -> web.Response:
    guard = request.app[PUBLIC_CSRF_KEY]
    response = render(request, template, {"form_token": guard.token(request), **context}, status=status)
    guard.bind(request, response)
    return response


# --- log in and out ------------------------------------------------------------------------------

_DONE = {
    "signed-up": "Учётная запись создана. Мы отправили письмо со ссылкой: подтвердите адрес и войдите.",
    "signed-up-kep": "Учётная запись создана, заявка на КЭП принята. Подтвердите адрес по ссылке из письма и войдите.",
    "confirmed": "Адрес подтверждён. Теперь можно войти.",
    "reset": "Пароль изменён, все прежние входы завершены. Войдите с новым паролем.",
    "joined": "Приглашение принято. Войдите, чтобы продолжить.",
    "logged-out": "Вы вышли.",
}


@page
async def login_page(request: web.Request) -> web.StreamResponse:
    done = _DONE.get(request.query.get("done", ""), "")
    return render_public(request, "account_login.html", {"email": "", "error": "", "done": done,
                                                         "next": request.query.get("next", "")})


def _set_session_cookie(request: web.Request, response: web.StreamResponse, session: NewSession) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        session.token,
        max_age=int((session.expires_at - now(request)).total_seconds()),
        path="/",
        secure=request.app[ACCOUNTS_WEB_KEY].cookie_secure,
        httponly=True,
        samesite="Lax",
    )


@page
async def login_submit(request: web.Request) -> web.StreamResponse:
    fields = await public_form(request)
    email, target = fields.get("email", "").strip(), fields.get("next", "")
    accounts = request.app[ACCOUNTS_WEB_KEY]
    try:
        throttle(request, "login")
        # The session presented before login (if any) is revoked, as in the API: no fixation.
        session = await asyncio.to_thread(
            accounts.service.login,
            request.app[ENGINE_KEY],
            email=email,
            password=fields.get("password", ""),
            ip=client_address(request),
            at=now(request),
            previous_session=request.cookies.get(SESSION_COOKIE),
        )
    except (AccountsError, Problem) as exc:
        problem = exc if isinstance(exc, Problem) else as_problem(exc, request)
        context = {"email": email, "error": refusal_text(problem), "done": "", "next": target}
        return render_public(request, "account_login.html", context, status=problem.body.status)
    response = web.HTTPSeeOther(safe_next(target, "/"))
    _set_session_cookie(request, response, session)
    response.headers["Cache-Control"] = "no-store"
    raise response


@page
async def logout_submit(request: web.Request) -> web.StreamResponse:
    # A private route: the auth middleware has checked the session and its form token already.
    cookie, at = request.cookies.get(SESSION_COOKIE), now(request)
    if cookie:
        await run_in_transaction(request, lambda conn: revoke_session(conn, cookie, at=at))
    response = see_other("/login", done="logged-out")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


# --- sign-up -------------------------------------------------------------------------------------

SIGNUP_FIELDS = ("email", "company", "inn", "kep", "kep_subject", "kep_full_name", "kep_position", "kep_inn",
                 "kep_snils", "kep_email", "kep_phone")


def _signup_context(values: Mapping[str, str], errors: FieldErrors, error: str = "") -> dict[str, Any]:
    shown = {name: values.get(name, "") for name in SIGNUP_FIELDS}
    shown["kep_subject"] = shown["kep_subject"] or "head"
    return {"values": shown, "errors": errors, "error": error}


@page
async def signup_page(request: web.Request) -> web.StreamResponse:
    return render_public(request, "account_signup.html", _signup_context({}, {}))


@page
async def signup_submit(request: web.Request) -> web.StreamResponse:
    values = await public_form(request)
    errors: FieldErrors = {}
    email = check_email(values.get("email", ""), errors)
    password = values.get("password", "")
    check_new_password(password, errors)
    company = check_text(values.get("company", ""), errors, "company", "название компании")
    inn = check_inn_field(values.get("inn", ""), errors, "inn", person=None)
    applicant = kep_applicant(values, errors)
    if errors:
        return render_public(request, "account_signup.html", _signup_context(values, errors), status=422)
    service, at = request.app[ACCOUNTS_WEB_KEY].service, now(request)

    def work(conn: sa.Connection) -> None:
        made = service.sign_up(conn, email=email, password=password, company=company, inn=inn, at=at)
        if applicant is not None:  # the same transaction: no company without its order, or vice versa
            kep.create_order(conn, Actor.user(conn, made.user_id), made.tenant_id, applicant, at=at)

    try:
        throttle(request, "sign-up")
        await run_in_transaction(request, work)
    except Problem as problem:
        if "ИНН" in problem.body.detail and problem.body.status == 409:
            errors["inn"] = "Компания с этим ИНН уже зарегистрирована. Попросите её владельца пригласить вас."
        elif "already has an account" in problem.body.detail:
            errors["email"] = "На этот адрес уже есть учётная запись. Войдите или восстановите пароль."
        context = _signup_context(values, errors, "" if errors else refusal_text(problem))
        return render_public(request, "account_signup.html", context, status=problem.body.status)
    raise see_other("/login", done="signed-up-kep" if applicant else "signed-up")


# --- links from e-mails --------------------------------------------------------------------------


def _token(values: Mapping[str, str]) -> str:
    token = values.get("token", "").strip()
    return token if 10 <= len(token) <= 200 else ""


@page
async def confirm_page(request: web.Request) -> web.StreamResponse:
    # A GET only shows the button: mail scanners open links, and must not use up the token.
    return render_public(request, "account_confirm.html", {"token": _token(request.query), "error": ""})


@page
async def confirm_submit(request: web.Request) -> web.StreamResponse:
    token = _token(await public_form(request))
    service, at = request.app[ACCOUNTS_WEB_KEY].service, now(request)
    try:
        if not token:
            raise as_problem(AccountsError("no token"), request) from None
        await run_in_transaction(request, lambda conn: service.confirm_email(conn, token, at=at))
    except Problem:
        error = RU_REFUSALS["link-invalid"]
        return render_public(request, "account_confirm.html", {"token": "", "error": error}, status=400)
    raise see_other("/login", done="confirmed")


@page
async def reset_request_page(request: web.Request) -> web.StreamResponse:
    sent = request.query.get("done") == "sent"
    return render_public(request, "account_reset.html", {"sent": sent, "email": "", "errors": {}, "error": ""})


@page
async def reset_request_submit(request: web.Request) -> web.StreamResponse:
    values = await public_form(request)
    errors: FieldErrors = {}
    email = check_email(values.get("email", ""), errors)
    context = {"sent": False, "email": email, "errors": errors, "error": ""}
    if errors:
        return render_public(request, "account_reset.html", context, status=422)
    service, at = request.app[ACCOUNTS_WEB_KEY].service, now(request)
    try:
        throttle(request, "password-reset")
        await run_in_transaction(request, lambda conn: service.request_password_reset(conn, email, at=at))
    except Problem as problem:
        return render_public(request, "account_reset.html", {**context, "error": refusal_text(problem)},
                             status=problem.body.status)
    raise see_other("/password-reset", done="sent")  # the same answer whether or not the address exists


@page
async def reset_confirm_page(request: web.Request) -> web.StreamResponse:
    return render_public(request, "account_reset_confirm.html", {"token": _token(request.query), "errors": {}, "error": ""})


@page
async def reset_confirm_submit(request: web.Request) -> web.StreamResponse:
    values = await public_form(request)
    token, password = _token(values), values.get("password", "")
    errors: FieldErrors = {}
    check_new_password(password, errors)
    if "password" not in errors and values.get("password_again", "") != password:
        errors["password_again"] = "Пароли не совпадают."
    context = {"token": token, "errors": errors, "error": ""}
    if errors:
        return render_public(request, "account_reset_confirm.html", context, status=422)
    service, at = request.app[ACCOUNTS_WEB_KEY].service, now(request)
    try:
        throttle(request, "password-reset")
        if not token:
            raise as_problem(AccountsError("no token"), request) from None
        await run_in_transaction(request, lambda conn: service.reset_password(conn, token, password, at=at))
    except Problem as problem:
        link_bad = problem.body.status == 400
        context["error"] = RU_REFUSALS["link-invalid"] if link_bad else refusal_text(problem)
        return render_public(request, "account_reset_confirm.html", context, status=problem.body.status)
    raise see_other("/login", done="reset")


@page
async def invitation_page(request: web.Request) -> web.StreamResponse:
    context = {"token": _token(request.query), "full_name": "", "errors": {}, "error": ""}
    return render_public(request, "account_invitation.html", context)


@page
async def invitation_submit(request: web.Request) -> web.StreamResponse:
    values = await public_form(request)
    token, password = _token(values), values.get("password", "")
    full_name = " ".join(values.get("full_name", "").split())[:200]
    errors: FieldErrors = {}
    if password:
        check_new_password(password, errors)
    context = {"token": token, "full_name": full_name, "errors": errors, "error": ""}
    if errors:
        return render_public(request, "account_invitation.html", context, status=422)
    service, at = request.app[ACCOUNTS_WEB_KEY].service, now(request)

    def work(conn: sa.Connection) -> int:
        return service.accept_invitation(conn, token, password=password or None, at=at, full_name=full_name)

    try:
        throttle(request, "invitation")
        if not token:
            raise as_problem(AccountsError("no token"), request) from None
        await run_in_transaction(request, work)
    except Problem as problem:
        if problem.body.status == 422 and not password:  # a new address: the account needs a password
            errors["password"] = "У вас ещё нет учётной записи: придумайте пароль."
        elif problem.body.status == 400:
            context["error"] = RU_REFUSALS["link-invalid"]
        else:
            context["error"] = refusal_text(problem)
        return render_public(request, "account_invitation.html", context, status=problem.body.status)
    raise see_other("/login", done="joined")


async def mailed_reset_link(request: web.Request) -> web.StreamResponse:
    """``/reset?token=`` as ``AccountService`` writes it in the e-mail."""
    raise see_other("/password-reset/confirm", token=_token(request.query))


async def mailed_invitation_link(request: web.Request) -> web.StreamResponse:
    """``/invite?token=`` as ``AccountService`` writes it in the e-mail."""
    raise see_other("/invitations/accept", token=_token(request.query))


# --- navigation and the way to the login page ----------------------------------------------------


# --- mounting ------------------------------------------------------------------------------------

PUBLIC_PAGES: tuple[tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]], str], ...] = (
    ("GET", "/login", login_page, "page-account-login"),
    ("POST", "/login", login_submit, "account-login"),
    ("GET", "/signup", signup_page, "page-account-signup"),
    ("POST", "/signup", signup_submit, "account-signup"),
    ("GET", "/confirm", confirm_page, "page-account-confirm"),
    ("POST", "/confirm", confirm_submit, "account-confirm"),
    ("GET", "/password-reset", reset_request_page, "page-account-reset"),
    ("POST", "/password-reset", reset_request_submit, "account-reset"),
    ("GET", "/password-reset/confirm", reset_confirm_page, "page-account-reset-confirm"),
    ("POST", "/password-reset/confirm", reset_confirm_submit, "account-reset-confirm"),
    ("GET", "/invitations/accept", invitation_page, "page-account-invitation"),
    ("POST", "/invitations/accept", invitation_submit, "account-invitation"),
    ("GET", "/reset", mailed_reset_link, "account-mailed-reset"),
    ("GET", "/invite", mailed_invitation_link, "account-mailed-invitation"),
)


