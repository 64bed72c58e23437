"""Contract and КЭП endpoints: the OFD contract of a register (read, set, CSV import), КЭП orders
and their workflow, the company's КЭП validity, and the actions that legally need a КЭП.

The FNS application is recorded as an intent in the audit log (sending it to the ФНС is not part
of v1); without a valid КЭП it is refused with 409 and a message that says what to do.
"""

from __future__ import annotations

import sqlalchemy as sa
from aiohttp import web

from collector.accounts import contracts, kep, kep_alerts, signed_requests
from collector.accounts.errors import PermissionDenied
from collector.accounts.rights import Permission, authorize, scope_for
from collector.accounts.schema import kep_orders
from collector.web.accounts_models import (
    CompanyAlertList,
    CompanyAlertOut,
    ContractBody,
    ContractOut,
    Created,
    FnsApplicationBody,
    FnsApplicationOut,
    ImportQuery,
    ImportReportOut,
    KepOrderBody,
    KepOrderList,
    KepOrderOut,
    KepOut,
    OfdDocumentBody,
    OfdDocumentOut,
    TransitionBody,
)
from collector.web.accounts_support import Caller, answer_as_caller, require_visible
from collector.web.company_api import read_csv, report_out
from collector.web.paging import Page, repaged
from collector.web.routing import Operation, int_path_param, now, parse_body, parse_query

API = "/api/v1"


def _contract_out(conn: sa.Connection, who: Caller, register_id: str) -> ContractOut:
    row = contracts.get_contract(conn, who.actor, who.tenant_id, register_id)
    if row is None:
        return ContractOut(register_id=register_id, activated=None, paid_until=None, tariff=None, updated_at=None)
    return ContractOut(register_id=register_id, activated=row.activated, paid_until=row.paid_until,
                       tariff=row.tariff, updated_at=row.updated_at)


async def get_contract(request: web.Request) -> web.Response:
    register_id = request.match_info["register_id"]

    def work(conn: sa.Connection, who: Caller) -> ContractOut:
        require_visible(conn, who, register_id)
        return _contract_out(conn, who, register_id)

    return await answer_as_caller(request, work, write=False)


async def put_contract(request: web.Request) -> web.Response:
    register_id = request.match_info["register_id"]
    body, at = await parse_body(request, ContractBody), now(request)

    def work(conn: sa.Connection, who: Caller) -> ContractOut:
        require_visible(conn, who, register_id)
        change = contracts.ContractChange(body.activated, body.paid_until, body.tariff)
        contracts.set_contract(conn, who.actor, who.tenant_id, register_id, change, at=at)
        return _contract_out(conn, who, register_id)

    return await answer_as_caller(request, work)


async def import_contracts(request: web.Request) -> web.Response:
    query = parse_query(request, ImportQuery)
    text, at = await read_csv(request), now(request)

    def work(conn: sa.Connection, who: Caller) -> ImportReportOut:
        # Each line is checked against the register's grants; someone who may edit no contract at
        # all is refused outright rather than handed a report full of refusals.
        if scope_for(conn, who.user_id, Permission.EDIT_CONTRACTS).node_ids == frozenset():
            raise PermissionDenied(f"{who.actor.label} may not edit OFD contracts anywhere")
        report = contracts.import_contracts_csv(conn, who.actor, who.tenant_id, text, at=at, dry_run=query.dry_run)
        return report_out(report, query.dry_run)

    return await answer_as_caller(request, work)


# --- КЭП -----------------------------------------------------------------------------------------


def _orders(conn: sa.Connection, who: Caller) -> KepOrderList:
    authorize(conn, who.actor, who.tenant_id, Permission.KEP_ORDERS, None)  # applicants' personal data
    rows = conn.execute(
        sa.select(kep_orders).where(kep_orders.c.tenant_id == who.tenant_id).order_by(kep_orders.c.id.desc())
    )
    return KepOrderList(items=[KepOrderOut.model_validate(r, from_attributes=True) for r in rows])


async def list_kep_orders(request: web.Request) -> web.Response:
    page = parse_query(request, Page)
    return await answer_as_caller(request, lambda conn, who: repaged(request, page, _orders(conn, who)), write=False)


def applicant_of(body: KepOrderBody) -> kep.KepApplicant:
    return kep.KepApplicant(
        kep.KepSubject(body.subject), body.full_name, body.position, body.inn, body.snils, body.email, body.phone
    )


async def create_kep_order(request: web.Request) -> web.Response:
    body, at = await parse_body(request, KepOrderBody), now(request)

    def work(conn: sa.Connection, who: Caller) -> Created:
        return Created(id=kep.create_order(conn, who.actor, who.tenant_id, applicant_of(body), at=at))

    return await answer_as_caller(request, work, status=201)


async def transition_kep_order(request: web.Request) -> web.Response:
    order_id = int_path_param(request, "order_id")
    body, at = await parse_body(request, TransitionBody), now(request)
    cert = body.certificate
    issued = None if cert is None else kep.IssuedCertificate(cert.serial, cert.owner_name, cert.valid_until)

    def work(conn: sa.Connection, who: Caller) -> KepOrderOut:
        kep.advance(conn, who.actor, who.tenant_id, order_id, kep.KepState(body.to), at=at, note=body.note,
                    certificate=issued)
        row = conn.execute(sa.select(kep_orders).where(kep_orders.c.id == order_id)).one()
        return KepOrderOut.model_validate(row, from_attributes=True)

    return await answer_as_caller(request, work)


async def kep_validity(request: web.Request) -> web.Response:
    at = now(request)

    def work(conn: sa.Connection, who: Caller) -> KepOut:
        check = kep.has_valid_kep(conn, who.tenant_id, at)
        return KepOut(valid=check.ok, message=check.message, serial=check.serial, valid_until=check.valid_until)

    return await answer_as_caller(request, work, write=False)


def _company_alert_out(alert: kep_alerts.CompanyAlert) -> CompanyAlertOut:
    return CompanyAlertOut.model_validate(alert, from_attributes=True)


async def list_company_alerts(request: web.Request) -> web.Response:
    page = parse_query(request, Page)

    def work(conn: sa.Connection, who: Caller) -> CompanyAlertList:
        alerts = [_company_alert_out(a) for a in kep_alerts.company_alerts(conn, who.actor, who.tenant_id)]
        return repaged(request, page, CompanyAlertList(items=alerts))

    return await answer_as_caller(request, work, write=False)


async def acknowledge_company_alert(request: web.Request) -> web.Response:
    alert_id, at = int_path_param(request, "company_alert_id"), now(request)

    def work(conn: sa.Connection, who: Caller) -> CompanyAlertOut:
        return _company_alert_out(kep_alerts.acknowledge(conn, who.actor, who.tenant_id, alert_id, at=at))

    return await answer_as_caller(request, work)


async def fns_application(request: web.Request) -> web.Response:
    register_id = request.match_info["register_id"]
    body, at = await parse_body(request, FnsApplicationBody), now(request)

    def work(conn: sa.Connection, who: Caller) -> FnsApplicationOut:
        require_visible(conn, who, register_id)
        check = signed_requests.apply_to_fns(conn, who.actor, who.tenant_id, register_id,
                                             signed_requests.FnsApplication(body.kind), body.note, at=at)
        return FnsApplicationOut(register_id=register_id, kind=body.kind, recorded=True,
                                 message=f"recorded in the audit log, to be signed with {check.message}")

    return await answer_as_caller(request, work, status=201)


async def ofd_document(request: web.Request) -> web.Response:
    body, at = await parse_body(request, OfdDocumentBody), now(request)

    def work(conn: sa.Connection, who: Caller) -> OfdDocumentOut:
        if body.register_id is not None:
            require_visible(conn, who, body.register_id)
        check = signed_requests.send_to_ofd(conn, who.actor, who.tenant_id, signed_requests.OfdDocument(body.kind),
                                            body.note, at=at, register_id=body.register_id)
        return OfdDocumentOut(kind=body.kind, register_id=body.register_id, recorded=True,
                              message=f"recorded in the audit log, to be signed with {check.message}")

    return await answer_as_caller(request, work, status=201)


_REGISTER_ID = {"register_id": str}

OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", f"{API}/registers/{{register_id}}/contract", get_contract, "getContract",
              "The register's OFD contract (nulls when unknown)", "contracts", ContractOut,
              path_params=_REGISTER_ID, errors=(403, 404)),
    Operation("PUT", f"{API}/registers/{{register_id}}/contract", put_contract, "setContract",
              "Set the register's OFD contract", "contracts", ContractOut, body=ContractBody,
              path_params=_REGISTER_ID, errors=(403, 404, 415, 422)),
    Operation("POST", f"{API}/contracts/import", import_contracts, "importContracts",
              "OFD contracts from CSV (text/csv body); dry_run reports by line and changes nothing", "contracts",
              ImportReportOut, query=ImportQuery, errors=(403, 413, 415, 422)),
    Operation("GET", f"{API}/kep-orders", list_kep_orders, "listKepOrders", "The company's КЭП orders", "kep",
              KepOrderList, query=Page, errors=(400, 403)),
    Operation("POST", f"{API}/kep-orders", create_kep_order, "createKepOrder", "Order a КЭП", "kep", Created,
              body=KepOrderBody, status=201, errors=(403, 415, 422)),
    Operation("POST", f"{API}/kep-orders/{{order_id}}/transition", transition_kep_order, "transitionKepOrder",
              "Move a КЭП order along its workflow (issued: with the certificate)", "kep", KepOrderOut,
              body=TransitionBody, path_params={"order_id": int}, errors=(403, 404, 415, 422)),
    Operation("GET", f"{API}/kep", kep_validity, "getKepValidity", "Whether the company has a valid КЭП now",
              "kep", KepOut, errors=(403,)),
    Operation("GET", f"{API}/company/alerts", list_company_alerts, "listCompanyAlerts",
              "Company-level alerts (the КЭП running out), for those who handle КЭП", "kep", CompanyAlertList,
              query=Page, errors=(400, 403)),
    Operation("POST", f"{API}/company/alerts/{{company_alert_id}}/ack", acknowledge_company_alert, "acknowledgeCompanyAlert",
              "Acknowledge a company-level alert", "kep", CompanyAlertOut, path_params={"company_alert_id": int},
              errors=(403, 404, 422)),
    Operation("POST", f"{API}/ofd-documents", ofd_document, "ofdDocument",
              "An e-document to the OFD (needs a valid КЭП; recorded as an intent in the audit log)", "kep",
              OfdDocumentOut, body=OfdDocumentBody, status=201, errors=(403, 404, 409, 415, 422)),
    Operation("POST", f"{API}/registers/{{register_id}}/fns-application", fns_application, "fnsApplication",
              "Apply to the ФНС about a register (needs a valid КЭП; recorded as an intent in the audit log)",
              "kep", FnsApplicationOut, body=FnsApplicationBody, path_params=_REGISTER_ID, status=201,
              errors=(403, 404, 409, 415, 422)),
)
