"""The company's audit log in the JSON API, newest first, for company-wide user managers."""

from __future__ import annotations

import sqlalchemy as sa
from aiohttp import web
from pydantic import AwareDatetime, BaseModel, Field

from collector.accounts import audit
from collector.accounts.rights import Permission, authorize
from collector.web.routing import (
    API,
    Operation,
    parse_query,
)
from collector.web.shared.accounts import Caller, answer_as_caller
from collector.web.shared.paging import Page, Paged, next_link


class AuditQuery(Page):
    target_type: str | None = Field(None, min_length=1, max_length=30)
    target_id: str | None = Field(None, min_length=1, max_length=100)
    limit: int = Field(100, ge=1, le=1000)


class AuditEntryOut(BaseModel):
    id: int
    at: AwareDatetime
    actor: str
    action: str
    target_type: str
    target_id: str
    details: dict[str, object]


class AuditList(Paged):
    items: list[AuditEntryOut]


async def audit_log(request: web.Request) -> web.Response:
    query = parse_query(request, AuditQuery)

    def work(conn: sa.Connection, who: Caller) -> AuditList:
        # The log names every user and change in the company: company-wide user managers only.
        authorize(conn, who.actor, who.tenant_id, Permission.MANAGE_USERS, None)
        entries = audit.list_entries(
            conn, who.tenant_id, target_type=query.target_type, target_id=query.target_id, limit=query.limit,
            offset=query.offset,
        )
        items = [AuditEntryOut.model_validate(e, from_attributes=True) for e in entries]
        return AuditList(items=items, next=next_link(request, query, len(items)))

    return await answer_as_caller(request, work, write=False)


OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", f"{API}/audit", audit_log, "listAudit", "The company's audit log, newest first",
              "accounts", AuditList, query=AuditQuery, errors=(400, 403)),
)
