"""What the pages share, and imports no page module: checked forms (the form token, field
checks with Russian messages, a safe ``next``), refusals in Russian, the administration sections
a user may open; for the administration sections, running work as the logged-in caller, a change
that re-renders its section with the refusal beside the form or redirects back on success, and
the CSV upload/report helpers of the import forms. Sections register their path in
``SECTION_PATHS`` so ``change`` knows where to send the browser back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import unquote, urlencode, urlsplit

import sqlalchemy as sa
from aiohttp import web
from aiohttp.web_request import FileField

from collector.accounts import kep
from collector.accounts.csvrows import MAX_IMPORT_BYTES, ImportReport
from collector.accounts.errors import InvalidInput, PermissionDenied
from collector.accounts.inn import InvalidNumber, check_inn, check_snils
from collector.accounts.passwords import MIN_PASSWORD_LENGTH, WeakPassword, check_password_policy
from collector.accounts.rights import (
    ROLE_PERMISSIONS,
    Permission,
    Role,
    permissions_at,
    scope_for,
    user_grants,
)
from collector.accounts.schema import users
from collector.accounts.service import normalise_email
from collector.storage.schema import nodes
from collector.storage.scope import node_visible
from collector.web.pages.render import CSRF_KEY, PageError, render
from collector.web.problems import Problem
from collector.web.shared.accounts import (
    ACCOUNTS_WEB_KEY,
    Caller,
    account_user_id,
    caller,
    run_in_transaction,
)
from collector.web.shared.csrf import CSRF_FIELD

ResultT = TypeVar("ResultT")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ROLE_TITLES = {Role.OWNER: "владелец", Role.ADMIN: "администратор", Role.OPERATOR: "оператор",
               Role.ACCOUNTANT: "бухгалтер", Role.VIEWER: "наблюдатель"}
KEP_STATES = {"requested": "заявка принята", "documents_requested": "запрошены документы",
              "documents_received": "документы получены", "issued": "выпущена", "rejected": "отклонена"}
SEVERITY_FLOORS = ("info", "warning", "major", "critical", "blocked")


class Invalid(Exception):
    """Input the change cannot accept: ``form`` names the form, the message goes beside it."""

    def __init__(self, form: str, message: str) -> None:
        super().__init__(message)
        self.form = form
        self.message = message


# --- running work as the caller ------------------------------------------------------------------


async def as_caller(
    request: web.Request, work: Callable[[sa.Connection, Caller], ResultT], *, write: bool = False
) -> ResultT:
    """``work`` for the logged-in account in one transaction; refusals of rights become pages."""
    try:
        user_id = account_user_id(request)
        return await run_in_transaction(request, lambda conn: work(conn, caller(conn, user_id)), write=write)
    except Problem as problem:
        if problem.body.status in (401, 403, 404, 503):
            raise PageError(problem.body.status, refusal_text(problem)) from None
        raise


async def change(
    request: web.Request,
    section: Handler,
    form: str,
    work: Callable[[sa.Connection, Caller], object],
    done: str,
) -> web.StreamResponse:
    """Apply one change, then back to the section; a refusal of the input re-renders it beside ``form``."""
    try:
        await as_caller(request, work, write=True)
    except Invalid as invalid:
        return await section_with_error(request, section, invalid.form, invalid.message)
    except Problem as problem:  # 409/422 from the accounts library: nothing was written
        return await section_with_error(request, section, form, refusal_text(problem))
    raise web.HTTPSeeOther(f"{SECTION_PATHS[section]}?done={done}")


ERROR_KEY = web.RequestKey("admin_form_error", tuple)


async def section_with_error(request: web.Request, section: Handler, form: str, message: str) -> web.StreamResponse:
    request[ERROR_KEY] = (form, message)
    return await section(request)


def section_render(request: web.Request, template: str, context: dict[str, Any]) -> web.Response:
    form, message = request.get(ERROR_KEY, ("", ""))
    done = request.query.get("done", "") if not message else ""
    return render(request, template, {"form_error": {form: message} if message else {}, "done": done, **context})


def need(allowed: bool, what: str) -> None:
    if not allowed:
        raise PermissionDenied(what)


def covering(conn: sa.Connection, user_id: int, permission: Permission) -> list[str]:
    """Tree paths under which the user holds ``permission``."""
    return [g.node_path for g in user_grants(conn, user_id) if permission in ROLE_PERMISSIONS[g.role]]


def nodes_with(conn: sa.Connection, who: Caller, permission: Permission) -> list[sa.Row[Any]]:
    scope = scope_for(conn, who.user_id, permission)
    return list(conn.execute(
        sa.select(nodes.c.id, nodes.c.parent_id, nodes.c.kind, nodes.c.name, nodes.c.path)
        .where(node_visible(scope, nodes), nodes.c.tenant_id == who.tenant_id)
        .order_by(nodes.c.path)
    ))


def int_field(fields: Mapping[str, str], name: str, form: str, what: str) -> int:
    text = fields.get(name, "").strip()
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise Invalid(form, f"Выберите {what}.")
    return int(text)



def tenant_users(conn: sa.Connection, who: Caller) -> list[sa.Row[Any]]:
    return list(conn.execute(
        sa.select(users.c.id, users.c.email, users.c.full_name, users.c.confirmed_at, users.c.disabled)
        .where(users.c.tenant_id == who.tenant_id).order_by(users.c.email)
    ))



REPORT_KEY = web.RequestKey("admin_import_report", dict)


async def uploaded_file(request: web.Request, name: str, form: str, limit: int) -> tuple[str, bytes]:
    """The file posted in field ``name``: (its file name, its bytes); empty bytes when none was chosen.
    A file over ``limit`` is refused beside ``form`` without reading the rest."""
    upload = (await request.post()).get(name)
    if not isinstance(upload, FileField):
        return "", b""
    raw = upload.file.read(limit + 1)
    if len(raw) > limit:
        raise Invalid(form, f"Файл больше {limit // (1024 * 1024) or 1} МБ: уменьшите или разделите его.")
    # Some clients percent-encode a non-ASCII file name (aiohttp's own does); browsers send UTF-8.
    return unquote(upload.filename or ""), raw


async def csv_upload(request: web.Request, form: str) -> tuple[dict[str, str], str]:
    """The import form: the CSV as an uploaded file or pasted text (UTF-8, within the import limit)."""
    fields = dict(await checked_form(request))
    text = fields.get("csv_text", "")
    _, raw = await uploaded_file(request, "csv_file", form, MAX_IMPORT_BYTES)
    if raw:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Invalid(form, "Файл не в UTF-8. В Excel сохраните как «CSV UTF-8».") from None
    if not text.strip():
        raise Invalid(form, "Выберите CSV-файл или вставьте его текст.")
    return fields, text


def import_report_context(report: ImportReport, dry_run: bool) -> dict[str, Any]:
    return {"dry_run": dry_run, "applied": report.applied, "errors": report.errors, "changes": report.changes}


async def run_import(
    request: web.Request, section: Handler, form: str, check: Callable[[sa.Connection, Caller], None],
    run: Callable[[sa.Connection, Caller, str, bool], ImportReport],
) -> web.StreamResponse:
    """Rights first, then the file; a dry run or a file with errors is reported by line and changes nothing."""
    await checked_form(request)
    await as_caller(request, lambda conn, who: check(conn, who))
    try:
        fields, text = await csv_upload(request, form)
    except Invalid as invalid:
        return await section_with_error(request, section, invalid.form, invalid.message)
    dry_run = bool(fields.get("dry_run"))
    report = await as_caller(request, lambda conn, who: run(conn, who, text, dry_run), write=not dry_run)
    request[REPORT_KEY] = import_report_context(report, dry_run)
    return await section(request)



# Filled by each section module: the page a change returns to.
SECTION_PATHS: dict[Handler, str] = {}


def safe_next(target: str | None, fallback: str) -> str:
    """Only a path on this site: never a scheme, host or protocol-relative ``//`` (open redirect)."""
    if not target:
        return fallback
    parts = urlsplit(target)
    if (
        parts.scheme
        or parts.netloc
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
    ):
        return fallback
    return target


async def checked_form(request: web.Request) -> Mapping[str, str]:
    form = await request.post()
    fields = {key: value for key, value in form.items() if isinstance(value, str)}
    if not request.app[CSRF_KEY].verify(request, fields.get(CSRF_FIELD)):
        raise PageError(403, "Форма устарела или пришла с другого сайта. Обновите страницу и повторите.")
    return fields


FieldErrors = dict[str, str]


RU_REFUSALS = {
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
    if problem.ru:
        return problem.ru
    slug = problem.body.type.rsplit(":", 1)[-1]
    if slug in RU_REFUSALS:
        return RU_REFUSALS[slug]
    prefix = _RU_PREFIXES.get(slug, "Запрос не выполнен")
    return f"{prefix} ({problem.body.detail})."


async def form_fields(request: web.Request) -> dict[str, str]:
    """The posted text fields, stripped of nothing (passwords keep their spaces)."""
    form = await request.post()
    return {key: value for key, value in form.items() if isinstance(value, str)}


def collector_url(request: web.Request) -> str:
    """The public URL this collector is configured with (its e-mails link to it): what an agent enrolls against."""
    return request.app[ACCOUNTS_WEB_KEY].service.settings.base_url.rstrip("/")


def enroll_command(request: web.Request, token: str) -> str:
    """The installer's whole command on the register's computer (``--collector`` is required)."""
    return f"kassa-agent enroll --collector {collector_url(request)} --token {token}"


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
