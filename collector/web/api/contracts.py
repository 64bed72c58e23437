"""OFD contracts of the JSON API: a register's contract (read, set) and the CSV import."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from aiohttp import web
from pydantic import AwareDatetime, BaseModel, Field

from collector.accounts import contracts
from collector.accounts.errors import PermissionDenied
from collector.accounts.rights import Permission, scope_for
from collector.web.api.csv_import import ImportQuery, ImportReportOut, read_csv, report_out
from collector.web.api.models import InputModel
from collector.web.routing import (
    API,
    Operation,
    now,
    parse_body,
    parse_query,
)
from collector.web.shared.accounts import Caller, answer_as_caller, require_visible


class ContractBody(InputModel):
    activated: bool
    paid_until: date | None = None
    tariff: str | None = Field(None, max_length=200)
    ofd: str | None = Field(None, max_length=100, description="the contracted OFD: its key, name or ИНН (e.g. taxcom)")


# Named apart from the register detail's ``ContractOut``: two models of one name would make the
# OpenAPI components carry module paths, which change whenever a module moves.
class RegisterContractOut(BaseModel):
    register_id: str
    activated: bool | None
    paid_until: date | None
    tariff: str | None
    updated_at: AwareDatetime | None
    ofd_operator: str | None = Field(None, description="the contracted OFD's key (collector.alerts.ofd_operators)")


def _contract_out(conn: sa.Connection, who: Caller, register_id: str) -> RegisterContractOut:
    row = contracts.get_contract(conn, who.actor, who.tenant_id, register_id)
    if row is None:
        return RegisterContractOut(register_id=register_id, activated=None, paid_until=None, tariff=None, updated_at=None)
    return RegisterContractOut(register_id=register_id, activated=row.activated, paid_until=row.paid_until,
                       tariff=row.tariff, updated_at=row.updated_at, ofd_operator=row.ofd_operator)


async def get_contract(request: web.Request) -> web.Response:
    register_id = request.match_info["register_id"]

    def work(conn: sa.Connection, who: Caller) -> RegisterContractOut:
        require_visible(conn, who, register_id)
        return _contract_out(conn, who, register_id)

    return await answer_as_caller(request, work, write=False)


async def put_contract(request: web.Request) -> web.Response:
    register_id = request.match_info["register_id"]
    body, at = await parse_body(request, ContractBody), now(request)

    def work(conn: sa.Connection, who: Caller) -> RegisterContractOut:
        require_visible(conn, who, register_id)
        change = contracts.ContractChange(body.activated, body.paid_until, body.tariff, body.ofd)
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


_REGISTER_ID = {"register_id": str}


OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", f"{API}/registers/{{register_id}}/contract", get_contract, "getContract",
              "The register's OFD contract (nulls when unknown)", "contracts", RegisterContractOut,
              path_params=_REGISTER_ID, errors=(403, 404)),
    Operation("PUT", f"{API}/registers/{{register_id}}/contract", put_contract, "setContract",
              "Set the register's OFD contract", "contracts", RegisterContractOut, body=ContractBody,
              path_params=_REGISTER_ID, errors=(403, 404, 415, 422)),
    Operation("POST", f"{API}/contracts/import", import_contracts, "importContracts",
              "OFD contracts from CSV (text/csv body); dry_run reports by line and changes nothing", "contracts",
              ImportReportOut, query=ImportQuery, errors=(403, 413, 415, 422)),
)
