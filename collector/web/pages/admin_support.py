"""What every administration section shares: running work as the logged-in caller, a change
that re-renders its section with the refusal beside the form or redirects back on success, and
the CSV upload/report helpers of the import forms. Sections register their path in
``SECTION_PATHS`` so ``change`` knows where to send the browser back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import sqlalchemy as sa
from aiohttp import web
from aiohttp.web_request import FileField

from collector.accounts.csvrows import MAX_IMPORT_BYTES, ImportReport
from collector.accounts.errors import PermissionDenied
from collector.accounts.rights import (
    ROLE_PERMISSIONS,
    Permission,
    Role,
    scope_for,
    user_grants,
)
from collector.accounts.schema import users
from collector.storage.schema import nodes
from collector.storage.scope import node_visible
from collector.web.accounts_support import (
    Caller,
    account_user_id,
    caller,
    run_in_transaction,
)
from collector.web.pages.account_views import refusal_text
from collector.web.pages.render import PageError, render
from collector.web.pages.views import _checked_form
from collector.web.problems import Problem

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


async def csv_upload(request: web.Request, form: str) -> tuple[dict[str, str], str]:
    """The import form: the CSV as an uploaded file or pasted text (UTF-8, within the import limit)."""
    fields = dict(await _checked_form(request))
    upload = (await request.post()).get("csv_file")
    text = fields.get("csv_text", "")
    if isinstance(upload, FileField):
        raw = upload.file.read(MAX_IMPORT_BYTES + 1)
        if raw:
            if len(raw) > MAX_IMPORT_BYTES:
                raise Invalid(form, f"Файл больше {MAX_IMPORT_BYTES // (1024 * 1024)} МБ: разделите его.")
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
    await _checked_form(request)
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
