"""Administration pages, each within the caller's rights: the tree editor with CSV import, users,
groups, grants and "why does X see Y", OFD contracts, КЭП orders, agents with enrollment tokens,
and notification receivers.

Every change calls the same accounts, enrollment and notification functions as the JSON API
(``company_api``, ``contracts_api``, ``enrollment_ops``, ``notify_api``), in one transaction, so a
refused change leaves nothing half-applied. Rights come first: a node or register outside the
caller's view is a 404 page, a missing permission a 403 page. Input the change cannot accept
re-renders the section (200, like the page itself) with the message beside the form that caused
it; a success redirects back (POST/redirect/GET), except a new enrollment token or webhook
secret, which is shown once on the answer itself and never put in a URL.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Any, TypeVar

import sqlalchemy as sa
from aiohttp import web
from aiohttp.web_request import FileField

from collector.accounts import company, contracts, groups, kep, kep_alerts, tree
from collector.accounts.csvrows import MAX_IMPORT_BYTES, ImportReport
from collector.accounts.errors import InvalidInput, NotFound, PermissionDenied
from collector.accounts.rights import (
    ROLE_PERMISSIONS,
    Permission,
    Role,
    authorize,
    explain,
    scope_for,
    user_grants,
)
from collector.accounts.schema import audit_log, kep_certificates, users
from collector.accounts.tree_import import import_tree_csv
from collector.enrollment.errors import EnrollmentError
from collector.enrollment.http import ENROLLMENT_SERVICE_KEY
from collector.storage.contracts import load_contracts
from collector.storage.schema import agents, nodes, registers
from collector.storage.scope import node_visible, register_visible
from collector.web import company_api, contracts_api, enrollment_ops
from collector.web.accounts_support import (
    ACCOUNTS_WEB_KEY,
    Caller,
    account_user_id,
    caller,
    require_visible,
    run_in_transaction,
)
from collector.web.pages.account_views import FieldErrors, admin_sections, kep_applicant, refusal_text
from collector.web.pages.render import PageError, page, render
from collector.web.pages.views import _checked_form
from collector.web.problems import Problem
from collector.web.routing import ENGINE_KEY, int_path_param, now

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


def _covering(conn: sa.Connection, user_id: int, permission: Permission) -> list[str]:
    """Tree paths under which the user holds ``permission``."""
    return [g.node_path for g in user_grants(conn, user_id) if permission in ROLE_PERMISSIONS[g.role]]


def _nodes_with(conn: sa.Connection, who: Caller, permission: Permission) -> list[sa.Row[Any]]:
    scope = scope_for(conn, who.user_id, permission)
    return list(conn.execute(
        sa.select(nodes.c.id, nodes.c.parent_id, nodes.c.kind, nodes.c.name, nodes.c.path)
        .where(node_visible(scope, nodes), nodes.c.tenant_id == who.tenant_id)
        .order_by(nodes.c.path)
    ))


def _int_field(fields: Mapping[str, str], name: str, form: str, what: str) -> int:
    text = fields.get(name, "").strip()
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise Invalid(form, f"Выберите {what}.")
    return int(text)


# --- index and "why" -----------------------------------------------------------------------------


@page
async def admin_index(request: web.Request) -> web.StreamResponse:
    sections = await as_caller(request, lambda conn, who: admin_sections(conn, who.user_id))
    return render(request, "admin_index.html", {"sections": sections})


@page
async def why_page(request: web.Request) -> web.StreamResponse:
    register_id = request.query.get("register", "").strip()[:100]
    subject_text = request.query.get("user", "").strip()

    def work(conn: sa.Connection, who: Caller) -> dict[str, Any]:
        may_ask_for_others = bool(_covering(conn, who.user_id, Permission.MANAGE_GRANTS))
        colleagues = _tenant_users(conn, who) if may_ask_for_others else []
        context: dict[str, Any] = {"register": register_id, "subject": subject_text, "colleagues": colleagues,
                                   "answer": None}
        if not register_id:
            return context
        require_visible(conn, who, register_id)  # 404 for what the asker cannot see
        if subject_text and not (subject_text.isascii() and subject_text.isdigit() and len(subject_text) < 18):
            raise NotFound(f"user {subject_text!r} not found")
        subject = int(subject_text) if subject_text else who.user_id
        if subject != who.user_id:  # a colleague's view: for those who manage grants there
            if subject not in {u.id for u in colleagues}:
                raise NotFound(f"user {subject} not found")
            authorize(conn, who.actor, who.tenant_id, Permission.MANAGE_GRANTS, register_id)
        found = explain(conn, subject, register_id)
        context["answer"] = {"visible": found.visible, "grants": found.grants}
        return context

    return render(request, "admin_why.html", {**await as_caller(request, work), "role_titles": ROLE_TITLES})


def _tenant_users(conn: sa.Connection, who: Caller) -> list[sa.Row[Any]]:
    return list(conn.execute(
        sa.select(users.c.id, users.c.email, users.c.full_name, users.c.confirmed_at, users.c.disabled)
        .where(users.c.tenant_id == who.tenant_id).order_by(users.c.email)
    ))


# --- tree ----------------------------------------------------------------------------------------


@page
async def tree_admin(request: web.Request) -> web.StreamResponse:
    report = request.get(REPORT_KEY)

    def work(conn: sa.Connection, who: Caller) -> dict[str, Any]:
        editable = _covering(conn, who.user_id, Permission.MANAGE_TREE)
        need(bool(editable), f"{who.actor.label} may not edit the tree anywhere")
        visible = conn.execute(
            sa.select(nodes.c.id, nodes.c.parent_id, nodes.c.kind, nodes.c.name, nodes.c.path)
            .where(node_visible(scope_for(conn, who.user_id), nodes)).order_by(nodes.c.path)
        ).all()
        rows = [{"node": n, "depth": len([part for part in n.path.split("/") if part]) - 1,
                 "editable": any(n.path.startswith(p) for p in editable)} for n in visible]
        return {"rows": rows, "levels": tree.levels(conn, who.tenant_id),
                "targets": [r["node"] for r in rows if r["editable"]]}

    context = await as_caller(request, work)
    return section_render(request, "admin_tree.html", {**context, "report": report})


@page
async def create_node(request: web.Request) -> web.StreamResponse:
    fields, at = await _checked_form(request), now(request)

    def work(conn: sa.Connection, who: Caller) -> None:
        parent_id = _int_field(fields, "parent_id", "create", "родительский узел")
        require_visible(conn, who, parent_id)
        authorize(conn, who.actor, who.tenant_id, Permission.MANAGE_TREE, parent_id)
        name = " ".join(fields.get("name", "").split())
        if not name:
            raise Invalid("create", "Укажите название узла.")
        tree.create_node(conn, who.actor, who.tenant_id, parent_id=parent_id, kind=fields.get("kind", ""),
                         name=name, at=at)

    return await change(request, tree_admin, "create", work, "node-created")


@page
async def update_node(request: web.Request) -> web.StreamResponse:
    node_id = int_path_param(request, "node_id")
    fields, at = await _checked_form(request), now(request)
    form = f"node-{node_id}"

    def work(conn: sa.Connection, who: Caller) -> None:
        require_visible(conn, who, node_id)
        authorize(conn, who.actor, who.tenant_id, Permission.MANAGE_TREE, node_id)
        current = tree.get_node(conn, who.tenant_id, node_id)
        parent_text, name = fields.get("parent_id", "").strip(), " ".join(fields.get("name", "").split())
        if parent_text and parent_text != str(current.parent_id):  # both in one transaction, as in the API
            new_parent = _int_field(fields, "parent_id", form, "новый родительский узел")
            require_visible(conn, who, new_parent)
            tree.move_node(conn, who.actor, who.tenant_id, node_id, new_parent, at=at)
        if name and name != current.name:
            tree.rename_node(conn, who.actor, who.tenant_id, node_id, name, at=at)
        elif not name:
            raise Invalid(form, "Название не может быть пустым.")

    return await change(request, tree_admin, form, work, "node-saved")


@page
async def delete_node(request: web.Request) -> web.StreamResponse:
    node_id = int_path_param(request, "node_id")
    await _checked_form(request)
    at = now(request)

    def work(conn: sa.Connection, who: Caller) -> None:
        require_visible(conn, who, node_id)
        tree.delete_node(conn, who.actor, who.tenant_id, node_id, at=at)

    return await change(request, tree_admin, f"node-{node_id}", work, "node-deleted")


REPORT_KEY = web.RequestKey("admin_import_report", dict)


async def _csv_upload(request: web.Request, form: str) -> tuple[dict[str, str], str]:
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


def _report(report: ImportReport, dry_run: bool) -> dict[str, Any]:
    return {"dry_run": dry_run, "applied": report.applied, "errors": report.errors, "changes": report.changes}


async def _import(
    request: web.Request, section: Handler, form: str, check: Callable[[sa.Connection, Caller], None],
    run: Callable[[sa.Connection, Caller, str, bool], ImportReport],
) -> web.StreamResponse:
    """Rights first, then the file; a dry run or a file with errors is reported by line and changes nothing."""
    await _checked_form(request)
    await as_caller(request, lambda conn, who: check(conn, who))
    try:
        fields, text = await _csv_upload(request, form)
    except Invalid as invalid:
        return await section_with_error(request, section, invalid.form, invalid.message)
    dry_run = bool(fields.get("dry_run"))
    report = await as_caller(request, lambda conn, who: run(conn, who, text, dry_run), write=not dry_run)
    request[REPORT_KEY] = _report(report, dry_run)
    return await section(request)


@page
async def import_tree(request: web.Request) -> web.StreamResponse:
    at = now(request)

    def check(conn: sa.Connection, who: Caller) -> None:
        authorize(conn, who.actor, who.tenant_id, Permission.MANAGE_TREE, None)
        authorize(conn, who.actor, who.tenant_id, Permission.MANAGE_REGISTERS, None)

    def run(conn: sa.Connection, who: Caller, text: str, dry_run: bool) -> ImportReport:
        return import_tree_csv(conn, who.actor, who.tenant_id, text, at=at, dry_run=dry_run)

    return await _import(request, tree_admin, "import", check, run)


# --- users, groups, grants, invitations ----------------------------------------------------------


@page
async def users_admin(request: web.Request) -> web.StreamResponse:
    def work(conn: sa.Connection, who: Caller) -> dict[str, Any]:
        listed = company_api._group_list(conn, who)  # checks MANAGE_GROUPS on the company
        return {"groups": listed.items, "people": _tenant_users(conn, who),
                "grant_nodes": _nodes_with(conn, who, Permission.MANAGE_GRANTS)}

    context = await as_caller(request, work)
    return section_render(request, "admin_users.html", {**context, "roles": ROLE_TITLES})


@page
async def create_group(request: web.Request) -> web.StreamResponse:
    fields, at = await _checked_form(request), now(request)

    def work(conn: sa.Connection, who: Caller) -> None:
        authorize(conn, who.actor, who.tenant_id, Permission.MANAGE_GROUPS, None)
        if not fields.get("name", "").strip():
            raise Invalid("group", "Укажите название группы.")
        groups.create_group(conn, who.actor, who.tenant_id, fields["name"], at=at)

    return await change(request, users_admin, "group", work, "group-created")


@page
async def add_member(request: web.Request) -> web.StreamResponse:
    group_id = int_path_param(request, "group_id")
    fields, at = await _checked_form(request), now(request)
    form = f"group-{group_id}"

    def work(conn: sa.Connection, who: Caller) -> None:
        groups.check_may_add_to_group(conn, who.actor, who.tenant_id, group_id)
        member = _int_field(fields, "user_id", form, "пользователя")
        groups.add_member(conn, who.actor, who.tenant_id, group_id, member, at=at)

    return await change(request, users_admin, form, work, "member-added")


@page
async def remove_member(request: web.Request) -> web.StreamResponse:
    group_id, member = int_path_param(request, "group_id"), int_path_param(request, "user_id")
    await _checked_form(request)
    at = now(request)

    def work(conn: sa.Connection, who: Caller) -> None:
        groups.remove_member(conn, who.actor, who.tenant_id, group_id, member, at=at)

    return await change(request, users_admin, f"group-{group_id}", work, "member-removed")


@page
async def create_grant(request: web.Request) -> web.StreamResponse:
    fields, at = await _checked_form(request), now(request)

    def work(conn: sa.Connection, who: Caller) -> None:
        node_id = _int_field(fields, "node_id", "grant", "узел дерева")
        require_visible(conn, who, node_id)
        authorize(conn, who.actor, who.tenant_id, Permission.MANAGE_GRANTS, node_id)
        group_id = _int_field(fields, "group_id", "grant", "группу")
        try:
            role = Role(fields.get("role", ""))
        except ValueError:
            raise Invalid("grant", "Выберите роль.") from None
        groups.grant_role(conn, who.actor, who.tenant_id, group_id, role, node_id, at=at)

    return await change(request, users_admin, "grant", work, "grant-created")


@page
async def delete_grant(request: web.Request) -> web.StreamResponse:
    grant_id = int_path_param(request, "grant_id")
    await _checked_form(request)
    at = now(request)

    def work(conn: sa.Connection, who: Caller) -> None:
        try:
            groups.revoke_grant(conn, who.actor, who.tenant_id, grant_id, at=at)
        except NotFound:
            # Revoked already (another tab, the API): done, not an error. Anything else — including
            # another company's grant — stays a 404; the company's own audit log tells them apart.
            if not _revoked_before(conn, who, grant_id):
                raise

    return await change(request, users_admin, "grant", work, "grant-revoked")


def _revoked_before(conn: sa.Connection, who: Caller, grant_id: int) -> bool:
    entry = conn.execute(
        sa.select(audit_log.c.id).where(
            audit_log.c.tenant_id == who.tenant_id, audit_log.c.action == "grant.revoke",
            audit_log.c.target_type == "grant", audit_log.c.target_id == str(grant_id),
        ).limit(1)
    ).first()
    return entry is not None


@page
async def invite(request: web.Request) -> web.StreamResponse:
    fields, at = await _checked_form(request), now(request)
    service = request.app[ACCOUNTS_WEB_KEY].service

    def work(conn: sa.Connection, who: Caller) -> None:
        authorize(conn, who.actor, who.tenant_id, Permission.MANAGE_USERS, None)
        group_id = _int_field(fields, "group_id", "invite", "группу")
        try:
            service.invite(conn, who.actor, who.tenant_id, group_id, fields.get("email", ""), at=at)
        except InvalidInput:
            raise Invalid("invite", "Введите адрес e-mail, например ivanov@example.ru.") from None

    return await change(request, users_admin, "invite", work, "invited")


# --- contracts -----------------------------------------------------------------------------------

CONTRACTS_SHOWN = 500


@page
async def contracts_admin(request: web.Request) -> web.StreamResponse:
    report = request.get(REPORT_KEY)

    def work(conn: sa.Connection, who: Caller) -> dict[str, Any]:
        need(bool(_covering(conn, who.user_id, Permission.EDIT_CONTRACTS)),
             f"{who.actor.label} may not edit OFD contracts anywhere")
        scope = scope_for(conn, who.user_id, Permission.EDIT_CONTRACTS)
        found = conn.execute(
            sa.select(registers.c.register_id, nodes.c.name.label("store"))
            .select_from(registers.outerjoin(nodes, nodes.c.id == registers.c.node_id))
            .where(register_visible(scope)).order_by(nodes.c.path, registers.c.register_id).limit(CONTRACTS_SHOWN)
        ).all()
        known = load_contracts(conn, [r.register_id for r in found])
        return {"items": [{"register_id": r.register_id, "store": r.store, "contract": known.get(r.register_id)}
                          for r in found], "limit": CONTRACTS_SHOWN}

    context = await as_caller(request, work)
    return section_render(request, "admin_contracts.html", {**context, "report": report})


def _contract_change(fields: Mapping[str, str], form: str) -> contracts.ContractChange:
    activated = fields.get("activated", "")
    if activated not in ("yes", "no"):
        raise Invalid(form, "Укажите, подключена ли услуга ОФД.")
    try:
        paid_until = contracts.parse_paid_until(fields.get("paid_until", ""))
    except InvalidInput:
        raise Invalid(form, "Дата оплаты — например 31.03.2027.") from None
    tariff = fields.get("tariff", "").strip()
    if len(tariff) > contracts.MAX_TARIFF_LENGTH:
        raise Invalid(form, f"Тариф — не длиннее {contracts.MAX_TARIFF_LENGTH} символов.")
    return contracts.ContractChange(activated == "yes", paid_until, tariff or None)


@page
async def save_contract(request: web.Request) -> web.StreamResponse:
    register_id = request.match_info["register_id"]
    fields, at = await _checked_form(request), now(request)
    form = f"contract-{register_id}"

    def work(conn: sa.Connection, who: Caller) -> None:
        require_visible(conn, who, register_id)
        authorize(conn, who.actor, who.tenant_id, Permission.EDIT_CONTRACTS, register_id)
        contracts.set_contract(conn, who.actor, who.tenant_id, register_id, _contract_change(fields, form), at=at)

    return await change(request, contracts_admin, form, work, "contract-saved")


@page
async def import_contracts(request: web.Request) -> web.StreamResponse:
    at = now(request)

    def check(conn: sa.Connection, who: Caller) -> None:
        need(bool(_covering(conn, who.user_id, Permission.EDIT_CONTRACTS)),
             f"{who.actor.label} may not edit OFD contracts anywhere")

    def run(conn: sa.Connection, who: Caller, text: str, dry_run: bool) -> ImportReport:
        return contracts.import_contracts_csv(conn, who.actor, who.tenant_id, text, at=at, dry_run=dry_run)

    return await _import(request, contracts_admin, "import", check, run)


# --- КЭП -----------------------------------------------------------------------------------------


@page
async def kep_admin(request: web.Request) -> web.StreamResponse:
    at = now(request)

    def work(conn: sa.Connection, who: Caller) -> dict[str, Any]:
        orders = contracts_api._orders(conn, who)  # checks KEP_ORDERS on the company
        certificates = conn.execute(
            sa.select(kep_certificates).where(kep_certificates.c.tenant_id == who.tenant_id)
            .order_by(kep_certificates.c.valid_until.desc())
        ).all()
        moves = {o.id: sorted(kep.TRANSITIONS[kep.KepState(o.state)]) for o in orders.items}
        return {"orders": orders.items, "moves": moves, "certificates": certificates,
                "validity": kep.has_valid_kep(conn, who.tenant_id, at),
                "kep_alerts": kep_alerts.company_alerts(conn, who.actor, who.tenant_id)}

    context = await as_caller(request, work)
    values = request.get(KEP_VALUES_KEY, {})
    return section_render(request, "admin_kep.html", {**context, "states": KEP_STATES, "values": values,
                                                      "errors": request.get(KEP_ERRORS_KEY, {})})


KEP_VALUES_KEY = web.RequestKey("admin_kep_values", dict)
KEP_ERRORS_KEY = web.RequestKey("admin_kep_errors", dict)


@page
async def create_kep_order(request: web.Request) -> web.StreamResponse:
    fields, at = dict(await _checked_form(request)), now(request)
    await as_caller(request, lambda conn, who: authorize(conn, who.actor, who.tenant_id, Permission.KEP_ORDERS, None))
    errors: FieldErrors = {}
    applicant = kep_applicant({**fields, "kep": "1"}, errors)
    if errors or applicant is None:
        request[KEP_VALUES_KEY], request[KEP_ERRORS_KEY] = fields, errors
        return await section_with_error(request, kep_admin, "order", "Проверьте поля заявки.")

    def work(conn: sa.Connection, who: Caller) -> None:
        assert applicant is not None
        kep.create_order(conn, who.actor, who.tenant_id, applicant, at=at)

    return await change(request, kep_admin, "order", work, "order-created")


@page
async def acknowledge_kep_alert(request: web.Request) -> web.StreamResponse:
    alert_id = int_path_param(request, "company_alert_id")
    await _checked_form(request)  # checks the form token; the form has no fields
    at = now(request)

    def work(conn: sa.Connection, who: Caller) -> None:
        try:
            kep_alerts.acknowledge(conn, who.actor, who.tenant_id, alert_id, at=at)
        except NotFound:
            raise PageError(404, "Такой тревоги нет.") from None

    return await change(request, kep_admin, "kep-alert", work, "kep-alert-acked")


def _certificate(fields: Mapping[str, str], form: str, zone: tzinfo) -> kep.IssuedCertificate:
    """The form gives a date: the certificate lasts through that day in the company's zone."""
    serial, owner = fields.get("serial", "").strip(), " ".join(fields.get("owner_name", "").split())
    if not serial or not owner:
        raise Invalid(form, "Для выпуска укажите серийный номер и владельца сертификата.")
    try:
        last_day = datetime.strptime(fields.get("valid_until", "").strip(), "%Y-%m-%d")
    except ValueError:
        raise Invalid(form, "Укажите, до какой даты действует сертификат.") from None
    end = (last_day + timedelta(days=1)).replace(tzinfo=zone) - timedelta(seconds=1)
    return kep.IssuedCertificate(serial[:100], owner[:200], end.astimezone(UTC))


@page
async def move_kep_order(request: web.Request) -> web.StreamResponse:
    order_id = int_path_param(request, "order_id")
    fields, at = await _checked_form(request), now(request)
    form = f"order-{order_id}"

    def work(conn: sa.Connection, who: Caller) -> None:
        authorize(conn, who.actor, who.tenant_id, Permission.KEP_ORDERS, None)
        current = kep.order_state(conn, who.tenant_id, order_id)  # 404 for another company's order
        try:
            to = kep.KepState(fields.get("to", ""))
        except ValueError:
            raise Invalid(form, "Выберите новое состояние заявки.") from None
        if to not in kep.TRANSITIONS[current]:
            raise Invalid(form, f"Из состояния «{KEP_STATES[current]}» нельзя перейти в «{KEP_STATES[to]}».")
        note = fields.get("note", "").strip()[:2000]
        if to is kep.KepState.REJECTED and not note:
            raise Invalid(form, "Укажите причину отказа.")
        zone = company.tenant_zone(conn, who.tenant_id)
        certificate = _certificate(fields, form, zone) if to is kep.KepState.ISSUED else None
        kep.advance(conn, who.actor, who.tenant_id, order_id, to, at=at, note=note, certificate=certificate)

    return await change(request, kep_admin, form, work, "order-moved")


# --- agents and enrollment tokens ----------------------------------------------------------------

NEW_TOKEN_KEY = web.RequestKey("admin_new_token", dict)


@page
async def agents_admin(request: web.Request) -> web.StreamResponse:
    def work(conn: sa.Connection, who: Caller) -> dict[str, Any]:
        stores = _nodes_with(conn, who, Permission.ENROLL)
        need(bool(stores), f"{who.actor.label} may not enroll agents anywhere")
        placed = {n.id: n.name for n in stores}
        rows = conn.execute(
            sa.select(agents).where(agents.c.tenant_id == who.tenant_id, agents.c.node_id.in_(list(placed)))
            .order_by(agents.c.agent_id)
        ).all()
        store_level = next((lv.name for lv in tree.levels(conn, who.tenant_id) if lv.holds_registers), None)
        return {"agents": rows, "places": placed, "stores": [n for n in stores if n.kind == store_level]}

    context = await as_caller(request, work)
    enabled = ENROLLMENT_SERVICE_KEY in request.app
    return section_render(request, "admin_agents.html",
                          {**context, "enabled": enabled, "new_token": request.get(NEW_TOKEN_KEY)})


def _enrollment_on(request: web.Request) -> None:
    if ENROLLMENT_SERVICE_KEY not in request.app:
        raise PageError(503, "Подключение агентов не настроено на этом коллекторе.")


async def _enrollment_checked(request: web.Request, target: int | str) -> Any:
    try:
        return await enrollment_ops._checked_actor(request, target)  # the API's own ENROLL check
    except Problem as problem:
        raise PageError(problem.body.status, refusal_text(problem)) from None


@page
async def create_enrollment_token(request: web.Request) -> web.StreamResponse:
    fields = await _checked_form(request)
    _enrollment_on(request)
    try:
        node_id = _int_field(fields, "node_id", "token", "магазин")
        hours_text = fields.get("ttl_hours", "").strip() or "24"
        if not hours_text.isdigit() or not 1 <= int(hours_text) <= 24 * 7:
            raise Invalid("token", "Срок действия — от 1 до 168 часов.")
    except Invalid as invalid:
        return await section_with_error(request, agents_admin, invalid.form, invalid.message)
    actor, _ = await _enrollment_checked(request, node_id)
    service = request.app[ENROLLMENT_SERVICE_KEY]
    try:
        issued = await asyncio.to_thread(service.create_token, node_id, created_by=actor.label,
                                         ttl=timedelta(hours=int(hours_text)))
    except (EnrollmentError, ValueError) as exc:
        return await section_with_error(request, agents_admin, "token", f"Токен не создан ({exc}).")
    await asyncio.to_thread(enrollment_ops._audit, request.app[ENGINE_KEY], actor, issued.tenant_id,
                            "enrollment.token_create", node_id,
                            {"token_id": issued.token_id, "expires_at": issued.expires_at.isoformat()}, now(request))
    # Shown once, on this answer only (render sets Cache-Control: no-store); never in a URL.
    request[NEW_TOKEN_KEY] = {"token": issued.token, "expires_at": issued.expires_at, "node_id": node_id}
    return await agents_admin(request)


@page
async def revoke_agent(request: web.Request) -> web.StreamResponse:
    agent_id = request.match_info["agent_id"]
    await _checked_form(request)
    _enrollment_on(request)
    actor, tenant_id = await _enrollment_checked(request, agent_id)
    try:
        await asyncio.to_thread(request.app[ENROLLMENT_SERVICE_KEY].revoke_agent, agent_id)
    except EnrollmentError as exc:
        return await section_with_error(request, agents_admin, f"agent-{agent_id}", f"Не отозван ({exc}).")
    await asyncio.to_thread(enrollment_ops._audit, request.app[ENGINE_KEY], actor, tenant_id,
                            "enrollment.agent_revoke", agent_id, {}, now(request))
    raise web.HTTPSeeOther("/admin/agents?done=agent-revoked")


# --- notification receivers ----------------------------------------------------------------------

NEW_SECRET_KEY = web.RequestKey("admin_new_secret", str)


def _receivers_module() -> Any:
    """``collector.notify.receivers`` when this collector has it and its table; else None."""
    try:
        from collector.notify import receivers
        from collector.notify.schema import notification_receivers
    except ImportError:
        return None
    return receivers, notification_receivers


def _notification_manager(conn: sa.Connection, who: Caller) -> None:
    # The rule of notify_api: receivers decide who hears about what, so company-wide managers only.
    authorize(conn, who.actor, who.tenant_id, Permission.MANAGE_USERS, None)
    authorize(conn, who.actor, who.tenant_id, Permission.MANAGE_GROUPS, None)


@page
async def notifications_admin(request: web.Request) -> web.StreamResponse:
    found = _receivers_module()

    def work(conn: sa.Connection, who: Caller) -> dict[str, Any]:
        _notification_manager(conn, who)
        if found is None or not sa.inspect(conn).has_table(found[1].name):
            return {"configured": False, "receivers": [], "people": []}
        return {"configured": True, "receivers": found[0].list_receivers(conn, who.tenant_id),
                "people": _tenant_users(conn, who), "company_zone": company.time_zone_name(conn, who.tenant_id)}

    context = await as_caller(request, work)
    return section_render(request, "admin_notifications.html",
                          {**context, "floors": SEVERITY_FLOORS, "new_secret": request.get(NEW_SECRET_KEY)})


def _clock_field(fields: Mapping[str, str], name: str) -> time | None:
    text = fields.get(name, "").strip()
    if not text:
        return None
    try:
        return time.fromisoformat(text)
    except ValueError:
        raise Invalid("receiver", "Тихие часы — время вида 22:00.") from None


@page
async def create_receiver(request: web.Request) -> web.StreamResponse:
    fields, at = await _checked_form(request), now(request)
    found = _receivers_module()
    if found is None:
        raise PageError(503, "Уведомления не настроены на этом коллекторе.")
    receivers = found[0]
    channel = fields.get("channel", "")
    generated = secrets.token_urlsafe(32) if channel == "webhook" else None  # as notify_api does

    def work(conn: sa.Connection, who: Caller) -> None:
        _notification_manager(conn, who)
        if channel not in ("email", "webhook"):
            raise Invalid("receiver", "Выберите канал: e-mail или вебхук.")
        floor = fields.get("quiet_floor", "") or None
        spec = receivers.ReceiverSpec(
            channel=channel, address=fields.get("address", "").strip()[:500],
            principal_user_id=_int_field(fields, "principal_user_id", "receiver", "пользователя, чьи права действуют"),
            secret=generated, timezone=fields.get("timezone", "").strip() or company.time_zone_name(conn, who.tenant_id),
            quiet_start=_clock_field(fields, "quiet_start"), quiet_end=_clock_field(fields, "quiet_end"),
            quiet_floor=floor if floor in SEVERITY_FLOORS else None,
        )
        try:
            receiver_id = receivers.create_receiver(conn, who.tenant_id, spec, at=at)
        except receivers.ReceiverError as exc:
            raise Invalid("receiver", f"Получатель не добавлен ({exc}).") from None
        from collector.web.notify_api import _audit

        _audit(conn, who, "notification_receiver.create", receiver_id, at, channel=channel, address=spec.address)

    try:
        await as_caller(request, work, write=True)
    except Invalid as invalid:
        return await section_with_error(request, notifications_admin, invalid.form, invalid.message)
    if generated is None:
        raise web.HTTPSeeOther("/admin/notifications?done=receiver-created")
    request[NEW_SECRET_KEY] = generated  # the webhook's signing secret, shown once on this answer
    return await notifications_admin(request)


@page
async def delete_receiver(request: web.Request) -> web.StreamResponse:
    fields, at = await _checked_form(request), now(request)
    found = _receivers_module()
    if found is None:
        raise PageError(503, "Уведомления не настроены на этом коллекторе.")

    def work(conn: sa.Connection, who: Caller) -> bool:
        _notification_manager(conn, who)
        receiver_id = _int_field(fields, "receiver_id", "receivers", "получателя")
        deleted = bool(found[0].delete_receiver(conn, who.tenant_id, receiver_id))
        if deleted:
            from collector.web.notify_api import _audit

            _audit(conn, who, "notification_receiver.delete", receiver_id, at)
        return deleted

    try:
        deleted = await as_caller(request, work, write=True)
    except Invalid as invalid:
        return await section_with_error(request, notifications_admin, invalid.form, invalid.message)
    # Deleting is idempotent: a receiver already gone (or another company's) is simply not there.
    raise web.HTTPSeeOther(f"/admin/notifications?done={'receiver-deleted' if deleted else 'receiver-gone'}")


# --- routes --------------------------------------------------------------------------------------

SECTION_PATHS: dict[Handler, str] = {
    tree_admin: "/admin/tree", users_admin: "/admin/users", contracts_admin: "/admin/contracts",
    kep_admin: "/admin/kep", agents_admin: "/admin/agents", notifications_admin: "/admin/notifications",
}

# Mounted by ``account_views.add_account_pages``; every one is private (the auth middleware runs).
ADMIN_ROUTES: tuple[tuple[str, str, Handler, str], ...] = (
    ("GET", "/admin", admin_index, "page-admin"),
    ("GET", "/admin/why", why_page, "page-admin-why"),
    ("GET", "/admin/tree", tree_admin, "page-admin-tree"),
    ("POST", "/admin/tree/nodes", create_node, "admin-node-create"),
    ("POST", "/admin/tree/nodes/{node_id}", update_node, "admin-node-update"),
    ("POST", "/admin/tree/nodes/{node_id}/delete", delete_node, "admin-node-delete"),
    ("POST", "/admin/tree/import", import_tree, "admin-tree-csv"),
    ("GET", "/admin/users", users_admin, "page-admin-users"),
    ("POST", "/admin/groups", create_group, "admin-group-create"),
    ("POST", "/admin/groups/{group_id}/members", add_member, "admin-member-add"),
    ("POST", "/admin/groups/{group_id}/members/{user_id}/delete", remove_member, "admin-member-remove"),
    ("POST", "/admin/grants", create_grant, "admin-grant-create"),
    ("POST", "/admin/grants/{grant_id}/delete", delete_grant, "admin-grant-delete"),
    ("POST", "/admin/invitations", invite, "admin-invite"),
    ("GET", "/admin/contracts", contracts_admin, "page-admin-contracts"),
    ("POST", "/admin/contracts/import", import_contracts, "admin-contracts-csv"),
    ("POST", "/admin/contracts/{register_id}", save_contract, "admin-contract-save"),
    ("GET", "/admin/kep", kep_admin, "page-admin-kep"),
    ("POST", "/admin/kep", create_kep_order, "admin-kep-create"),
    ("POST", "/admin/kep/{order_id}/transition", move_kep_order, "admin-kep-move"),
    ("POST", "/admin/kep/alerts/{company_alert_id}/ack", acknowledge_kep_alert, "admin-kep-alert-ack"),
    ("GET", "/admin/agents", agents_admin, "page-admin-agents"),
    ("POST", "/admin/agents/tokens", create_enrollment_token, "admin-token-create"),
    ("POST", "/admin/agents/{agent_id}/revoke", revoke_agent, "admin-agent-revoke"),
    ("GET", "/admin/notifications", notifications_admin, "page-admin-notifications"),
    ("POST", "/admin/notifications", create_receiver, "admin-receiver-create"),
    ("POST", "/admin/notifications/delete", delete_receiver, "admin-receiver-delete"),
)
