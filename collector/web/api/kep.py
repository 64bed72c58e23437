"""КЭП in the JSON API: orders and their workflow, the company's КЭП validity, and the
company-level alerts (the КЭП running out) with their acknowledgement. What needs a valid КЭП
is in ``actions``."""

from __future__ import annotations

from typing import Any, Literal

import sqlalchemy as sa
from aiohttp import web
from pydantic import AwareDatetime, BaseModel, Field

from collector.accounts import kep, kep_alerts, kep_documents
from collector.accounts.audit import Actor
from collector.accounts.schema import kep_orders
from collector.web.api.models import Created, Email, InputModel, Name
from collector.web.auth import require_admin
from collector.web.problems import not_found
from collector.web.routing import (
    API,
    Operation,
    int_path_param,
    json_response,
    now,
    parse_body,
    parse_query,
)
from collector.web.shared.account_actions import (
    KepOrderList,
    KepOrderOut,
    company_kep_orders,
)
from collector.web.shared.accounts import Caller, answer_as_caller, run_in_transaction
from collector.web.shared.paging import Page, Paged, repaged


class KepOrderBody(InputModel):
    subject: Literal["head", "employee"] = "head"
    full_name: str = Name
    position: str = Name
    inn: str = Field(min_length=10, max_length=12, description="the person's ИНН (12 digits)")
    snils: str | None = Field(None, max_length=14)
    email: str = Email
    phone: str = Field("", max_length=30)


class CertificateBody(InputModel):
    serial: str = Field(min_length=1, max_length=100)
    owner_name: str = Name
    valid_until: AwareDatetime


class TransitionBody(InputModel):
    to: Literal["documents_requested", "documents_received", "issued", "rejected"]
    note: str = Field("", max_length=2000)
    certificate: CertificateBody | None = None
    documents: list[str] = Field(
        default_factory=list, max_length=20,
        description=f"for documents_requested: what the customer must upload ({', '.join(kep_documents.DOCUMENT_KINDS)})",
    )


class KepOut(BaseModel):
    valid: bool
    message: str
    serial: str | None
    valid_until: AwareDatetime | None


class CompanyAlertOut(BaseModel):
    """A company-level alert (today: the КЭП running out); the same lifecycle as register alerts."""

    id: int
    rule: str
    occurrence: int
    severity: str
    status: Literal["active", "cleared"]
    acknowledged: bool
    acked_by: str | None
    acked_at: AwareDatetime | None
    started_at: AwareDatetime
    updated_at: AwareDatetime
    cleared_at: AwareDatetime | None
    message: str
    fix: str | None = Field(description="what to do, in Russian")
    details: dict[str, Any]


class CompanyAlertList(Paged):
    items: list[CompanyAlertOut]




# --- КЭП -----------------------------------------------------------------------------------------


async def list_kep_orders(request: web.Request) -> web.Response:
    page = parse_query(request, Page)
    return await answer_as_caller(
        request, lambda conn, who: repaged(request, page, company_kep_orders(conn, who)), write=False
    )


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
    """The КЭП issuer's integration: the collector operator's credential, never a company's user
    (who sees the status on the КЭП page and uploads the requested documents there)."""
    issuer = Actor(user_id=None, label=f"issuer:{require_admin(request).user}")
    order_id = int_path_param(request, "order_id")
    body, at = await parse_body(request, TransitionBody), now(request)
    cert = body.certificate
    issued = None if cert is None else kep.IssuedCertificate(cert.serial, cert.owner_name, cert.valid_until)

    def work(conn: sa.Connection) -> KepOrderOut:
        tenant_id = conn.execute(sa.select(kep_orders.c.tenant_id).where(kep_orders.c.id == order_id)).scalar_one_or_none()
        if tenant_id is None:
            raise not_found(f"КЭП order {order_id}")
        kep.advance(conn, issuer, tenant_id, order_id, kep.KepState(body.to), at=at, note=body.note,
                    certificate=issued, documents=body.documents)
        row = conn.execute(sa.select(kep_orders).where(kep_orders.c.id == order_id)).one()
        return KepOrderOut.model_validate(row, from_attributes=True)

    return json_response(await run_in_transaction(request, work))


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


OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", f"{API}/kep-orders", list_kep_orders, "listKepOrders", "The company's КЭП orders", "kep",
              KepOrderList, query=Page, errors=(400, 403)),
    Operation("POST", f"{API}/kep-orders", create_kep_order, "createKepOrder", "Order a КЭП", "kep", Created,
              body=KepOrderBody, status=201, errors=(403, 415, 422)),
    Operation("POST", f"{API}/kep-orders/{{order_id}}/transition", transition_kep_order, "transitionKepOrder",
              "The КЭП issuer moves an order along its workflow (request documents, issue with the certificate, "
              "reject); the collector operator's credential only, like ``kassa-collector kep``", "kep", KepOrderOut,
              body=TransitionBody, path_params={"order_id": int}, errors=(403, 404, 415, 422)),
    Operation("GET", f"{API}/kep", kep_validity, "getKepValidity", "Whether the company has a valid КЭП now",
              "kep", KepOut, errors=(403,)),
    Operation("GET", f"{API}/company/alerts", list_company_alerts, "listCompanyAlerts",
              "Company-level alerts (the КЭП running out), for those who handle КЭП", "kep", CompanyAlertList,
              query=Page, errors=(400, 403)),
    Operation("POST", f"{API}/company/alerts/{{company_alert_id}}/ack", acknowledge_company_alert, "acknowledgeCompanyAlert",
              "Acknowledge a company-level alert", "kep", CompanyAlertOut, path_params={"company_alert_id": int},
              errors=(403, 404, 422)),
)
