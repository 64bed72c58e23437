"""The company of the JSON API: its settings (time zone, alert threshold overrides), owner only."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from aiohttp import web
from pydantic import BaseModel, Field

from collector.accounts import company
from collector.accounts.schema import tenant_profiles
from collector.alerts.thresholds import Thresholds
from collector.storage.schema import tenants
from collector.web.api.models import InputModel
from collector.web.problems import Problem
from collector.web.routing import (
    API,
    Operation,
    now,
    parse_body,
)
from collector.web.shared.accounts import Caller, answer_as_caller
from collector.web.shared.zones import forget_tenant_zone


class TenantOut(BaseModel):
    id: int
    name: str
    inn: str | None
    root_node_id: int | None
    time_zone: str = Field(description="IANA zone the pages show instants in, e.g. Europe/Moscow")
    alert_thresholds: dict[str, Any] = Field(
        default_factory=dict, description="the company's overrides of the alert thresholds (empty: the defaults)"
    )


class CompanyPatch(InputModel):
    time_zone: str | None = Field(
        None, min_length=1, max_length=64, description="an IANA zone name, e.g. Asia/Vladivostok"
    )
    alert_thresholds: dict[str, Any] | None = Field(
        None,
        description="replaces the overrides: names of the thresholds (e.g. ofd_backlog_warning), durations as "
        "seconds or ISO 8601 (\"PT2H\"); {} restores the defaults",
    )


def tenant_out(conn: sa.Connection, tenant_id: int) -> TenantOut:
    row = conn.execute(
        sa.select(tenants.c.name, tenant_profiles.c.inn, tenant_profiles.c.root_node_id)
        .outerjoin(tenant_profiles, tenant_profiles.c.tenant_id == tenants.c.id)
        .where(tenants.c.id == tenant_id)
    ).one()
    return TenantOut(id=tenant_id, name=row.name, inn=row.inn, root_node_id=row.root_node_id,
                     time_zone=company.time_zone_name(conn, tenant_id),
                     alert_thresholds=company.alert_threshold_overrides(conn, tenant_id))


async def update_company(request: web.Request) -> web.Response:
    body, at = await parse_body(request, CompanyPatch), now(request)

    if body.time_zone is None and body.alert_thresholds is None:
        raise Problem(422, "invalid-body", "Invalid request body", "give time_zone, alert_thresholds or both")

    def work(conn: sa.Connection, who: Caller) -> TenantOut:
        if body.time_zone is not None:
            company.set_time_zone(conn, who.actor, who.tenant_id, body.time_zone, at=at)
        if body.alert_thresholds is not None:  # checked against the catalogue defaults
            company.set_alert_thresholds(conn, who.actor, who.tenant_id, body.alert_thresholds, base=Thresholds(), at=at)
        return tenant_out(conn, who.tenant_id)

    response = await answer_as_caller(request, work)
    forget_tenant_zone(request)
    return response


OPERATIONS: tuple[Operation, ...] = (
    Operation("PATCH", f"{API}/company", update_company, "updateCompany",
              "Company settings (owner only): the time zone pages show instants in, and alert threshold overrides",
              "accounts", TenantOut,
              body=CompanyPatch, errors=(403, 422)),
)
