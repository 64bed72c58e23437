"""An accountant's sections: OFD contracts (edit and CSV import) and КЭП orders, certificates and the КЭП alert."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from collector.accounts import contracts, kep, kep_alerts, kep_documents, signed_requests
from collector.accounts.certificates import MAX_CERTIFICATE_BYTES, parse_certificate
from collector.accounts.csvrows import ImportReport
from collector.accounts.errors import InvalidInput, NotFound
from collector.accounts.rights import (
    Permission,
    authorize,
    scope_for,
)
from collector.accounts.schema import kep_certificates
from collector.alerts.ofd_operators import OFD_OPERATORS
from collector.storage.contracts import load_contracts
from collector.storage.schema import nodes, registers
from collector.storage.scope import register_visible
from collector.web.pages.render import PageError, page
from collector.web.pages.support import (
    KEP_STATES,
    REPORT_KEY,
    SECTION_PATHS,
    FieldErrors,
    Handler,
    Invalid,
    as_caller,
    change,
    checked_form,
    covering,
    kep_applicant,
    need,
    run_import,
    section_render,
    section_with_error,
    uploaded_file,
)
from collector.web.routing import int_path_param, now
from collector.web.shared.account_actions import company_kep_orders
from collector.web.shared.accounts import (
    Caller,
    require_visible,
)

# --- contracts -----------------------------------------------------------------------------------

CONTRACTS_SHOWN = 500


@page
async def contracts_admin(request: web.Request) -> web.StreamResponse:
    report = request.get(REPORT_KEY)

    def work(conn: sa.Connection, who: Caller) -> dict[str, Any]:
        need(bool(covering(conn, who.user_id, Permission.EDIT_CONTRACTS)),
             f"{who.actor.label} may not edit OFD contracts anywhere")
        scope = scope_for(conn, who.user_id, Permission.EDIT_CONTRACTS)
        found = conn.execute(
            sa.select(registers.c.register_id, nodes.c.name.label("store"))
            .select_from(registers.outerjoin(nodes, nodes.c.id == registers.c.node_id))
            .where(register_visible(scope)).order_by(nodes.c.path, registers.c.register_id).limit(CONTRACTS_SHOWN)
        ).all()
        known = load_contracts(conn, [r.register_id for r in found])
        return {"items": [{"register_id": r.register_id, "store": r.store, "contract": known.get(r.register_id)}
                          for r in found], "limit": CONTRACTS_SHOWN, "operators": OFD_OPERATORS}

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
    try:
        ofd = contracts.parse_ofd(fields.get("ofd"))
    except InvalidInput:
        raise Invalid(form, "Выберите ОФД из списка.") from None
    return contracts.ContractChange(activated == "yes", paid_until, tariff or None, ofd)


@page
async def save_contract(request: web.Request) -> web.StreamResponse:
    register_id = request.match_info["register_id"]
    fields, at = await checked_form(request), now(request)
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
        need(bool(covering(conn, who.user_id, Permission.EDIT_CONTRACTS)),
             f"{who.actor.label} may not edit OFD contracts anywhere")

    def run(conn: sa.Connection, who: Caller, text: str, dry_run: bool) -> ImportReport:
        return contracts.import_contracts_csv(conn, who.actor, who.tenant_id, text, at=at, dry_run=dry_run)

    return await run_import(request, contracts_admin, "import", check, run)


# --- КЭП -----------------------------------------------------------------------------------------


@page
async def kep_admin(request: web.Request) -> web.StreamResponse:
    at = now(request)

    def work(conn: sa.Connection, who: Caller) -> dict[str, Any]:
        orders = company_kep_orders(conn, who)  # checks KEP_ORDERS on the company
        certificates = conn.execute(
            sa.select(kep_certificates).where(kep_certificates.c.tenant_id == who.tenant_id)
            .order_by(kep_certificates.c.valid_until.desc())
        ).all()
        ids = [o.id for o in orders.items]
        asked = {o.id: kep_documents.requested(conn, who.tenant_id, o.id) for o in orders.items}
        uploads = kep_documents.documents(conn, who.tenant_id, ids)
        missing = {i: [k for k in asked[i] if k not in {d.kind for d in uploads[i]}] for i in ids}
        return {"orders": orders.items, "asked": asked, "uploads": uploads, "missing": missing,
                "certificates": certificates, "validity": kep.has_valid_kep(conn, who.tenant_id, at),
                "open_order": kep.open_order(conn, who.tenant_id),
                "submitted": signed_requests.submitted(conn, who.tenant_id, limit=50),
                "kep_alerts": kep_alerts.company_alerts(conn, who.actor, who.tenant_id)}

    context = await as_caller(request, work)
    values = request.get(KEP_VALUES_KEY, {})
    return section_render(request, "admin_kep.html", {
        **context, "states": KEP_STATES, "values": values, "errors": request.get(KEP_ERRORS_KEY, {}),
        "document_kinds": kep_documents.DOCUMENT_KINDS, "document_limit_mb": kep_documents.MAX_DOCUMENT_BYTES // 2**20,
    })


KEP_VALUES_KEY = web.RequestKey("admin_kep_values", dict)
KEP_ERRORS_KEY = web.RequestKey("admin_kep_errors", dict)


@page
async def create_kep_order(request: web.Request) -> web.StreamResponse:
    fields, at = dict(await checked_form(request)), now(request)
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
    await checked_form(request)  # checks the form token; the form has no fields
    at = now(request)

    def work(conn: sa.Connection, who: Caller) -> None:
        try:
            kep_alerts.acknowledge(conn, who.actor, who.tenant_id, alert_id, at=at)
        except NotFound:
            raise PageError(404, "Такой тревоги нет.") from None

    return await change(request, kep_admin, "kep-alert", work, "kep-alert-acked")


ISSUER_ONLY = ("Выпустить сертификат, запросить документы или отклонить заявку может только удостоверяющий "
               "центр (сотрудники сервиса), а не пользователь компании. Состояние заявки видно на этой странице.")


@page
async def move_kep_order(request: web.Request) -> web.StreamResponse:
    """The customer's one move: the requested documents are sent (every one uploaded)."""
    order_id = int_path_param(request, "order_id")
    fields, at = await checked_form(request), now(request)
    form = f"order-{order_id}"

    def work(conn: sa.Connection, who: Caller) -> None:
        authorize(conn, who.actor, who.tenant_id, Permission.KEP_ORDERS, None)
        current = kep.order_state(conn, who.tenant_id, order_id)  # 404 for another company's order
        try:
            to = kep.KepState(fields.get("to", ""))
        except ValueError:
            raise Invalid(form, "Выберите, что сделать с заявкой.") from None
        if to in kep.ISSUER_MOVES:
            raise PageError(403, ISSUER_ONLY)
        if to not in kep.TRANSITIONS[current]:
            raise Invalid(form, f"Из состояния «{KEP_STATES[current]}» нельзя перейти в «{KEP_STATES[to]}».")
        missing = kep_documents.missing(conn, who.tenant_id, order_id)
        if missing:
            titles = "; ".join(kep_documents.DOCUMENT_KINDS[kind] for kind in missing)
            raise Invalid(form, f"Сначала загрузите все запрошенные документы. Не хватает: {titles}.")
        kep.advance(conn, who.actor, who.tenant_id, order_id, to, at=at)

    return await change(request, kep_admin, form, work, "order-moved")


@page
async def upload_kep_document(request: web.Request) -> web.StreamResponse:
    order_id = int_path_param(request, "order_id")
    fields, at = await checked_form(request), now(request)
    form = f"order-{order_id}"

    def order_of_the_company(conn: sa.Connection, who: Caller) -> None:  # rights first, then the file
        authorize(conn, who.actor, who.tenant_id, Permission.KEP_ORDERS, None)
        kep.order_state(conn, who.tenant_id, order_id)  # 404 for another company's order

    await as_caller(request, order_of_the_company)
    try:
        filename, data = await uploaded_file(request, "document", form, kep_documents.MAX_DOCUMENT_BYTES)
        if not data:
            raise Invalid(form, "Выберите файл документа (PDF, JPEG или PNG).")
    except Invalid as invalid:
        return await section_with_error(request, kep_admin, invalid.form, invalid.message)

    def work(conn: sa.Connection, who: Caller) -> None:
        try:
            kep_documents.add_document(conn, who.actor, who.tenant_id, order_id, fields.get("kind", ""), filename,
                                       data, at=at)
        except InvalidInput as refused:
            raise Invalid(form, str(refused)) from None

    return await change(request, kep_admin, form, work, "document-uploaded")


@page
async def enter_kep_certificate(request: web.Request) -> web.StreamResponse:
    """A certificate the company already has: its .cer file, checked against the company's ИНН."""
    await checked_form(request)
    at = now(request)
    await as_caller(request, lambda conn, who: authorize(conn, who.actor, who.tenant_id, Permission.KEP_ORDERS, None))
    try:
        _, data = await uploaded_file(request, "certificate", "certificate", MAX_CERTIFICATE_BYTES)
    except Invalid as invalid:
        return await section_with_error(request, kep_admin, invalid.form, invalid.message)

    def work(conn: sa.Connection, who: Caller) -> None:
        authorize(conn, who.actor, who.tenant_id, Permission.KEP_ORDERS, None)
        try:
            kep.enter_certificate(conn, who.actor, who.tenant_id, parse_certificate(data), at=at)
        except InvalidInput as refused:
            raise Invalid("certificate", str(refused)) from None

    return await change(request, kep_admin, "certificate", work, "certificate-entered")


SECTION_PATHS[contracts_admin] = "/admin/contracts"
SECTION_PATHS[kep_admin] = "/admin/kep"

ROUTES: tuple[tuple[str, str, Handler, str], ...] = (
    ("GET", "/admin/contracts", contracts_admin, "page-admin-contracts"),
    ("POST", "/admin/contracts/import", import_contracts, "admin-contracts-csv"),
    ("POST", "/admin/contracts/{register_id}", save_contract, "admin-contract-save"),
    ("GET", "/admin/kep", kep_admin, "page-admin-kep"),
    ("POST", "/admin/kep", create_kep_order, "admin-kep-create"),
    ("POST", "/admin/kep/{order_id}/transition", move_kep_order, "admin-kep-move"),
    ("POST", "/admin/kep/{order_id}/documents", upload_kep_document, "admin-kep-document"),
    ("POST", "/admin/kep/certificates", enter_kep_certificate, "admin-kep-certificate"),
    ("POST", "/admin/kep/alerts/{company_alert_id}/ack", acknowledge_kep_alert, "admin-kep-alert-ack"),
)
