"""An accountant's sections: OFD contracts (edit and CSV import) and КЭП orders, certificates and the КЭП alert."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from collector.accounts import company, contracts, kep, kep_alerts
from collector.accounts.csvrows import ImportReport
from collector.accounts.errors import InvalidInput, NotFound
from collector.accounts.rights import (
    Permission,
    authorize,
    scope_for,
)
from collector.accounts.schema import kep_certificates
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
    fields, at = await checked_form(request), now(request)
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


SECTION_PATHS[contracts_admin] = "/admin/contracts"
SECTION_PATHS[kep_admin] = "/admin/kep"

ROUTES: tuple[tuple[str, str, Handler, str], ...] = (
    ("GET", "/admin/contracts", contracts_admin, "page-admin-contracts"),
    ("POST", "/admin/contracts/import", import_contracts, "admin-contracts-csv"),
    ("POST", "/admin/contracts/{register_id}", save_contract, "admin-contract-save"),
    ("GET", "/admin/kep", kep_admin, "page-admin-kep"),
    ("POST", "/admin/kep", create_kep_order, "admin-kep-create"),
    ("POST", "/admin/kep/{order_id}/transition", move_kep_order, "admin-kep-move"),
    ("POST", "/admin/kep/alerts/{company_alert_id}/ack", acknowledge_kep_alert, "admin-kep-alert-ack"),
)
