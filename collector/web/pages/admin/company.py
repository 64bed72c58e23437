"""The company settings page (owner only): the time zone every page shows instants in, the
company's own names for its tree levels, and its own alert thresholds."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from aiohttp import web

from collector.accounts import company, tree
from collector.accounts.errors import InvalidInput
from collector.accounts.rights import Permission, authorize
from collector.alerts.thresholds import Thresholds
from collector.web.pages.render import page
from collector.web.pages.support import (
    SECTION_PATHS,
    Handler,
    Invalid,
    as_caller,
    change,
    checked_form,
    section_render,
)
from collector.web.pages.threshold_form import overrides_from_form, threshold_rows
from collector.web.routing import now
from collector.web.shared.accounts import Caller
from collector.web.shared.zones import forget_tenant_zone


def _offset(at: datetime, zone: str) -> str:
    text = f"{at.astimezone(ZoneInfo(zone)):%z}"  # +0300
    return f"{text[:3]}:{text[3:]}"


def _zone_choices(current: str, at: datetime) -> list[tuple[str, str]]:
    """Russia's zones with their current UTC offset; the company's own zone kept when it is elsewhere."""
    choices = [(name, f"{label}, UTC{_offset(at, name)}") for name, label in company.RUSSIAN_TIME_ZONES]
    if current not in dict(company.RUSSIAN_TIME_ZONES):
        choices.append((current, current))
    return choices


@page
async def company_settings(request: web.Request) -> web.StreamResponse:
    at = now(request)

    def work(conn: sa.Connection, who: Caller) -> dict[str, object]:
        authorize(conn, who.actor, who.tenant_id, Permission.MANAGE_COMPANY, None)
        current = company.time_zone_name(conn, who.tenant_id)
        overrides = company.alert_threshold_overrides(conn, who.tenant_id)
        return {"current_zone": current, "zones": _zone_choices(current, at), "example": at,
                "levels": tree.levels(conn, who.tenant_id), "default_titles": tree.DEFAULT_TITLES,
                "thresholds": threshold_rows(overrides, Thresholds())}

    return section_render(request, "admin_company.html", await as_caller(request, work))


@page
async def save_company_settings(request: web.Request) -> web.StreamResponse:
    fields, at = await checked_form(request), now(request)

    def work(conn: sa.Connection, who: Caller) -> None:
        try:
            company.set_time_zone(conn, who.actor, who.tenant_id, fields.get("time_zone", ""), at=at)
        except InvalidInput:
            raise Invalid("company", "Выберите часовой пояс из списка.") from None

    try:
        return await change(request, company_settings, "company", work, "company-saved")
    finally:
        forget_tenant_zone(request)


@page
async def save_alert_thresholds(request: web.Request) -> web.StreamResponse:
    fields, at = await checked_form(request), now(request)

    def work(conn: sa.Connection, who: Caller) -> None:
        authorize(conn, who.actor, who.tenant_id, Permission.MANAGE_COMPANY, None)  # rights before input
        try:
            overrides = overrides_from_form(fields, company.alert_threshold_overrides(conn, who.tenant_id))
            company.set_alert_thresholds(conn, who.actor, who.tenant_id, overrides, base=Thresholds(), at=at)
        except (ValueError, InvalidInput) as refused:
            raise Invalid("thresholds", str(refused)) from None

    return await change(request, company_settings, "thresholds", work, "thresholds-saved")


@page
async def save_level_titles(request: web.Request) -> web.StreamResponse:
    fields, at = await checked_form(request), now(request)
    titles = {key.removeprefix("level_"): value for key, value in fields.items() if key.startswith("level_")}

    def work(conn: sa.Connection, who: Caller) -> None:
        tree.set_level_titles(conn, who.actor, who.tenant_id, titles, at=at)

    return await change(request, company_settings, "levels", work, "levels-saved")


SECTION_PATHS[company_settings] = "/admin/company"

ROUTES: tuple[tuple[str, str, Handler, str], ...] = (
    ("GET", "/admin/company", company_settings, "page-admin-company"),
    ("POST", "/admin/company", save_company_settings, "admin-company-save"),
    ("POST", "/admin/company/thresholds", save_alert_thresholds, "admin-thresholds-save"),
    ("POST", "/admin/company/levels", save_level_titles, "admin-levels-save"),
)
