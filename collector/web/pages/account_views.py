"""Account pages: log in and out, sign up (with an optional КЭП order), confirm the e-mail,
reset a password, accept an invitation — and ``add_account_pages``, which mounts them with the
administration pages (``admin_views``).

Every flow calls the same ``AccountService`` / ``kep`` functions as the JSON API
(``accounts_api``) inside ``run_in_transaction`` (one transaction, e-mails only after the commit),
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
import warnings
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import aiohttp_jinja2
import sqlalchemy as sa
from aiohttp import web
from aiohttp.web_exceptions import NotAppKeyWarning

from collector.accounts import kep, kep_alerts
from collector.accounts.audit import Actor
from collector.accounts.errors import AccountsError, InvalidInput, NotFound, PermissionDenied
from collector.accounts.inn import InvalidNumber, check_inn, check_snils
from collector.accounts.passwords import MIN_PASSWORD_LENGTH, WeakPassword, check_password_policy
from collector.accounts.rights import ROLE_PERMISSIONS, Permission, permissions_at, user_grants, user_tenant
from collector.accounts.service import normalise_email
from collector.accounts.sessions import NewSession, revoke_session
from collector.accounts.web_auth import SESSION_COOKIE, USER_ID_KEY
from collector.web.accounts_support import (
    ACCOUNTS_WEB_KEY,
    as_problem,
    client_address,
    run_in_transaction,
    throttle,
)
from collector.web.auth import allow_anonymous
from collector.web.pages.csrf import CSRF_FIELD, CookieCsrf
from collector.web.pages.render import CSRF_KEY, PageError, page, render
from collector.web.pages.views import _safe_next
from collector.web.problems import Problem
from collector.web.routing import ENGINE_KEY, now

FieldErrors = dict[str, str]
# Every web process must agree on the anonymous forms' token, so the key is fixed; what protects
# the form is that another site can neither read nor set the HttpOnly, SameSite=Strict seed cookie.
_PUBLIC_FORM_KEY = hashlib.sha256(b"kassa-monitor anonymous form token").digest()
PUBLIC_CSRF_KEY = web.AppKey("public_form_csrf", CookieCsrf)
_MOUNTED_KEY = web.AppKey("account_pages_mounted", bool)
STALE_FORM = "Форма устарела или пришла с другого сайта. Обновите страницу и повторите."
NOT_PAGES = ("/api/", "/events/", "/static/")  # machine clients get the 401 itself

# --- refusals in Russian -------------------------------------------------------------------------

_RU_REFUSALS = {
    "login-failed": "Неверный e-mail или пароль.",
    "locked": "Слишком много неудачных попыток входа с вашего адреса: подождите немного и попробуйте снова.",
    "rate-limited": "Слишком много попыток с вашего адреса. Подождите минуту и повторите.",
    "email-not-confirmed": "Адрес e-mail ещё не подтверждён: откройте ссылку из письма.",
    "link-invalid": "Ссылка недействительна, уже использована или устарела. Запросите новую.",
    "weak-password": f"Пароль должен быть не короче {MIN_PASSWORD_LENGTH} символов.",
    "forbidden": "Недостаточно прав для этого действия.",
    "not-found": "Не найдено или вне вашей зоны доступа.",
    "account-required": "Это действие доступно только пользователю с учётной записью.",
    "kep-required": "Для этого действия нужна действующая КЭП компании.",
    "broker-unavailable": "Брокер MQTT не принял изменение. Повторите позже.",
}
_RU_PREFIXES = {
    "conflict": "Не принято: конфликт с существующими данными",
    "invalid-input": "Не принято: неверные данные",
    "enrollment-refused": "Не принято",
}


def refusal_text(problem: Problem) -> str:
    """A refusal for a person: Russian, with the library's technical detail where it adds facts."""
    slug = problem.body.type.rsplit(":", 1)[-1]
    if slug in _RU_REFUSALS:
        return _RU_REFUSALS[slug]
    prefix = _RU_PREFIXES.get(slug, "Запрос не выполнен")
    return f"{prefix} ({problem.body.detail})."


# --- forms ---------------------------------------------------------------------------------------


async def form_fields(request: web.Request) -> dict[str, str]:
    """The posted text fields, stripped of nothing (passwords keep their spaces)."""
    form = await request.post()
    return {key: value for key, value in form.items() if isinstance(value, str)}


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


def see_other(path: str, **query: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"{path}?{urlencode(query)}" if query else path)


def check_email(value: str, errors: FieldErrors, field: str = "email") -> str:
    try:
        return normalise_email(value)
    except InvalidInput:
        errors[field] = "Введите адрес e-mail, например ivanov@example.ru."
        return value.strip()


def check_new_password(value: str, errors: FieldErrors, field: str = "password") -> None:
    try:
        check_password_policy(value)
    except WeakPassword:
        errors[field] = f"Пароль: от {MIN_PASSWORD_LENGTH} символов, не только пробелы."


def check_text(value: str, errors: FieldErrors, field: str, what: str, limit: int = 200) -> str:
    cleaned = " ".join(value.split())
    if not cleaned:
        errors[field] = f"Укажите {what}."
    elif len(cleaned) > limit:
        errors[field] = f"Не длиннее {limit} символов."
    return cleaned


def check_inn_field(value: str, errors: FieldErrors, field: str, *, person: bool | None) -> str:
    try:
        return check_inn(value.strip(), person=person)
    except InvalidNumber:
        digits = "12 цифр" if person else "10 цифр (организация) или 12 (ИП)"
        errors[field] = f"ИНН — {digits} с верной контрольной цифрой."
        return value.strip()


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
    response = web.HTTPSeeOther(_safe_next(target, "/"))
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


def kep_applicant(values: Mapping[str, str], errors: FieldErrors) -> kep.KepApplicant | None:
    if not values.get("kep"):
        return None
    subject = values.get("kep_subject", "head")
    if subject not in ("head", "employee"):
        errors["kep_subject"] = "Выберите, для кого КЭП."
        subject = "head"
    full_name = check_text(values.get("kep_full_name", ""), errors, "kep_full_name", "фамилию, имя и отчество")
    position = check_text(values.get("kep_position", ""), errors, "kep_position", "должность")
    inn = check_inn_field(values.get("kep_inn", ""), errors, "kep_inn", person=True)
    snils_text = values.get("kep_snils", "").strip()
    snils = None
    if snils_text:
        try:
            snils = check_snils(snils_text)
        except InvalidNumber:
            errors["kep_snils"] = "СНИЛС — 11 цифр (XXX-XXX-XXX YY) с верным контрольным числом."
    elif subject == "employee":
        errors["kep_snils"] = "Для КЭП сотрудника нужен СНИЛС."
    email = check_email(values.get("kep_email", ""), errors, "kep_email")
    phone = values.get("kep_phone", "").strip()
    if len(phone) > 30:
        errors["kep_phone"] = "Не длиннее 30 символов."
    return kep.KepApplicant(kep.KepSubject(subject), full_name, position, inn, snils, email, phone)


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
        error = _RU_REFUSALS["link-invalid"]
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
        context["error"] = _RU_REFUSALS["link-invalid"] if link_bad else refusal_text(problem)
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
            context["error"] = _RU_REFUSALS["link-invalid"]
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


def admin_sections(conn: sa.Connection, user_id: int) -> list[tuple[str, str]]:
    """The administration pages this user may open: (path, title), in the order shown."""
    anywhere: set[Permission] = set()
    for grant in user_grants(conn, user_id):
        anywhere |= ROLE_PERMISSIONS[grant.role]
    company = permissions_at(conn, user_id, None)
    wanted = (
        ("/admin/tree", "Структура компании", Permission.MANAGE_TREE in anywhere),
        ("/admin/users", "Пользователи, группы и права", Permission.MANAGE_GROUPS in company),
        ("/admin/contracts", "Договоры с ОФД", Permission.EDIT_CONTRACTS in anywhere),
        ("/admin/kep", "Заказы КЭП", Permission.KEP_ORDERS in company),
        ("/admin/agents", "Агенты и токены подключения", Permission.ENROLL in anywhere),
        ("/admin/notifications", "Уведомления",
         Permission.MANAGE_USERS in company and Permission.MANAGE_GROUPS in company),
        ("/admin/company", "Настройки компании (часовой пояс)", Permission.MANAGE_COMPANY in company),
    )
    return [(path, title) for path, title, allowed in wanted if allowed]


def _company_banner(conn: sa.Connection, user_id: int) -> list[kep_alerts.CompanyAlert]:
    """Active company-level alerts (the КЭП running out), on every page of those who handle them."""
    try:
        return kep_alerts.company_alerts(conn, Actor.user(conn, user_id), user_tenant(conn, user_id), active_only=True)
    except (PermissionDenied, NotFound):
        return []


@web.middleware
async def account_navigation(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Pages learn whether to link to the administration and to offer a logout button."""
    name = request.match_info.route.name or ""
    user_id = request.get(USER_ID_KEY)
    if request.method == "GET" and name.startswith("page-") and user_id is not None:
        engine = request.app[ENGINE_KEY]

        register_id = request.match_info.get("register_id") if name == "page-register" else None
        at = now(request)

        def navigation() -> tuple[list[tuple[str, str]], list[kep_alerts.CompanyAlert], Any]:
            from collector.web.pages.signed_views import signed_actions  # it imports this module

            with engine.connect() as conn:
                actions = None if register_id is None else signed_actions(conn, user_id, register_id, at)
                return admin_sections(conn, user_id), _company_banner(conn, user_id), actions

        sections, banner, actions = await asyncio.to_thread(navigation)
        extra = {
            "admin_nav": bool(sections),
            "logout_form": bool(request.app[CSRF_KEY].token(request)),
            "company_alerts": banner,
            "signed_actions": actions,
            "signed_done": request.query.get("done", ""),
        }
        with warnings.catch_warnings():  # aiohttp-jinja2's own per-request context slot has a str key
            warnings.simplefilter("ignore", NotAppKeyWarning)
            request[aiohttp_jinja2.REQUEST_CONTEXT_KEY] = extra
    return await handler(request)


@web.middleware
async def redirect_to_login(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A browser (it asks for HTML) that is not logged in is sent to the login page, and back after."""
    wants_page = "text/html" in request.headers.get("Accept", "") and not request.path.startswith(NOT_PAGES)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status == 401 and wants_page:
            raise _to_login(request) from None
        raise
    if response.status == 401 and wants_page:
        raise _to_login(request)
    return response


def _to_login(request: web.Request) -> web.HTTPSeeOther:
    return see_other("/login", next=request.path_qs if request.method == "GET" else "/")


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


def add_account_pages(app: web.Application) -> None:
    """Mount the account and administration pages; call after ``add_page_routes``. Calling it
    again on the same app does nothing (so tests may call it whether or not ``create_app`` did)."""
    from collector.web.pages.admin_views import ADMIN_ROUTES  # admin_views imports this module

    if app.get(_MOUNTED_KEY):
        return
    app[_MOUNTED_KEY] = True
    app[PUBLIC_CSRF_KEY] = CookieCsrf(secret=_PUBLIC_FORM_KEY, secure_cookie=app[ACCOUNTS_WEB_KEY].cookie_secure)
    for method, path, handler, name in (*PUBLIC_PAGES, *ADMIN_ROUTES):
        app.router.add_route(method, path, handler, name=name)
    allow_anonymous(app, *(name for *_, name in PUBLIC_PAGES))
    app.router.add_post("/logout", logout_submit, name="account-logout")
    app.middlewares.insert(0, redirect_to_login)  # outermost: it sees the auth middleware's 401
    app.middlewares.append(account_navigation)  # innermost: after authentication
