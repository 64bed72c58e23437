"""Actions that legally need the company's КЭП: an application to the ФНС about a register and
an e-document to the OFD. Both are recorded as intents in the audit log (sending is not part of
v1); without a valid КЭП they are refused with 409 and a message that says what to do."""

from __future__ import annotations

from typing import Literal

import sqlalchemy as sa
from aiohttp import web
from pydantic import BaseModel, Field

from collector.accounts import signed_requests
from collector.web.api.models import InputModel
from collector.web.routing import (
    API,
    Operation,
    now,
    parse_body,
)
from collector.web.shared.accounts import Caller, answer_as_caller, require_visible


class FnsApplicationBody(InputModel):
    kind: Literal["registration", "registration_change", "fn_replacement", "deregistration"]
    note: str = Field("", max_length=2000)
    confirm_deregistration: bool = Field(False, description="must be true for a deregistration (снятие с учёта)")


class OfdDocumentBody(InputModel):
    kind: Literal["contract", "connection", "act"] = Field(
        description="contract (договор), connection (заявление на подключение ККТ), act (акт оказанных услуг)"
    )
    register_id: str | None = Field(None, min_length=1, max_length=100, description="the register it concerns, if one")
    note: str = Field("", max_length=2000)


class OfdDocumentOut(BaseModel):
    kind: str
    register_id: str | None
    recorded: bool
    message: str


class FnsApplicationOut(BaseModel):
    register_id: str
    kind: str
    recorded: bool
    message: str


async def fns_application(request: web.Request) -> web.Response:
    register_id = request.match_info["register_id"]
    body, at = await parse_body(request, FnsApplicationBody), now(request)

    def work(conn: sa.Connection, who: Caller) -> FnsApplicationOut:
        require_visible(conn, who, register_id)
        check = signed_requests.apply_to_fns(conn, who.actor, who.tenant_id, register_id,
                                             signed_requests.FnsApplication(body.kind), body.note, at=at,
                                             confirmed=body.confirm_deregistration)
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
    Operation("POST", f"{API}/ofd-documents", ofd_document, "ofdDocument",
              "An e-document to the OFD (needs a valid КЭП; recorded as an intent in the audit log)", "kep",
              OfdDocumentOut, body=OfdDocumentBody, status=201, errors=(403, 404, 409, 415, 422)),
    Operation("POST", f"{API}/registers/{{register_id}}/fns-application", fns_application, "fnsApplication",
              "Apply to the ФНС about a register (needs a valid КЭП; recorded as an intent in the audit log)",
              "kep", FnsApplicationOut, body=FnsApplicationBody, path_params=_REGISTER_ID, status=201,
              errors=(403, 404, 409, 415, 422)),
)
