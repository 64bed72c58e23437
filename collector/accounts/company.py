"""Company-wide settings: the time zone the pages show instants in, and the company's own alert
thresholds (overrides of the catalogue defaults, e.g. a shorter OFD-backlog warning).

A register reports its own wall clock and ФН dates as it sees them; everything the collector
stamps itself (when an alert started, when a state arrived) is an instant, and people read
instants in their head office's zone — a chain in Владивосток does not think in Moscow time.
"""

from __future__ import annotations

import logging
from datetime import datetime
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

import sqlalchemy as sa

from collector.accounts import audit
from collector.accounts.audit import Actor
from collector.accounts.errors import InvalidInput, NotFound
from collector.accounts.rights import Permission, authorize
from collector.accounts.schema import tenant_profiles
from collector.alerts.thresholds import Thresholds

log = logging.getLogger(__name__)

DEFAULT_TIME_ZONE = "Europe/Moscow"

# The eleven zones of Russia (МСК−1 … МСК+9), offered first in forms; any IANA zone is accepted.
RUSSIAN_TIME_ZONES: tuple[tuple[str, str], ...] = (
    ("Europe/Kaliningrad", "Калининград (МСК−1)"),
    ("Europe/Moscow", "Москва (МСК)"),
    ("Europe/Samara", "Самара (МСК+1)"),
    ("Asia/Yekaterinburg", "Екатеринбург (МСК+2)"),
    ("Asia/Omsk", "Омск (МСК+3)"),
    ("Asia/Novosibirsk", "Новосибирск (МСК+4)"),
    ("Asia/Irkutsk", "Иркутск (МСК+5)"),
    ("Asia/Yakutsk", "Якутск (МСК+6)"),
    ("Asia/Vladivostok", "Владивосток (МСК+7)"),
    ("Asia/Magadan", "Магадан (МСК+8)"),
    ("Asia/Kamchatka", "Камчатка (МСК+9)"),
)


@cache
def _known_zones() -> frozenset[str]:
    # Area/City names and UTC; the system database also lists "localtime", "posix/…" and "right/…",
    # which mean the server's own setting or leap-second variants, never a company's zone.
    return frozenset(
        name for name in available_timezones()
        if name == "UTC" or ("/" in name and not name.startswith(("posix/", "right/")))
    )


def check_time_zone(name: str) -> str:
    """An IANA zone name as given (``Asia/Vladivostok``), or ``InvalidInput`` saying what is accepted."""
    cleaned = name.strip()
    if cleaned not in _known_zones():
        raise InvalidInput(
            f"unknown time zone {name!r}: give an IANA name such as Europe/Moscow or Asia/Vladivostok"
        )
    return cleaned


def time_zone_name(conn: sa.Connection, tenant_id: int) -> str:
    """The company's zone; the default for a tenant without a profile (made by the CLI before accounts)."""
    name = conn.execute(
        sa.select(tenant_profiles.c.time_zone).where(tenant_profiles.c.tenant_id == tenant_id)
    ).scalar_one_or_none()
    return name or DEFAULT_TIME_ZONE


def tenant_zone(conn: sa.Connection, tenant_id: int) -> ZoneInfo:
    return ZoneInfo(time_zone_name(conn, tenant_id))


def set_time_zone(conn: sa.Connection, actor: Actor, tenant_id: int, name: str, *, at: datetime) -> str:
    """Change the company's zone (owner only: ``manage_company``); returns the stored name."""
    authorize(conn, actor, tenant_id, Permission.MANAGE_COMPANY, None)
    zone = check_time_zone(name)
    previous = conn.execute(
        sa.select(tenant_profiles.c.time_zone).where(tenant_profiles.c.tenant_id == tenant_id)
    ).scalar_one_or_none()
    if previous is None:
        raise NotFound(f"company {tenant_id} has no profile")
    if previous == zone:
        return zone
    conn.execute(sa.update(tenant_profiles).where(tenant_profiles.c.tenant_id == tenant_id).values(time_zone=zone))
    audit.record(
        conn, actor, tenant_id=tenant_id, action="company.time_zone", target_type="tenant", target_id=tenant_id,
        at=at, details={"from": previous, "to": zone},
    )
    return zone


def alert_threshold_overrides(conn: sa.Connection, tenant_id: int) -> dict[str, Any]:
    stored = conn.execute(
        sa.select(tenant_profiles.c.alert_thresholds).where(tenant_profiles.c.tenant_id == tenant_id)
    ).scalar_one_or_none()
    return dict(stored or {})


def thresholds_in_force(base: Thresholds, overrides: dict[str, Any] | None, tenant_id: int) -> Thresholds:
    """``base`` with the company's overrides; stored overrides that no longer validate (the defaults
    changed under them) are logged and ignored rather than stopping the rules."""
    if not overrides:
        return base
    try:
        return base.merged(dict(overrides))
    except ValueError as exc:
        log.warning("company %s: stored alert thresholds ignored (%s)", tenant_id, exc)
        return base


def set_alert_thresholds(
    conn: sa.Connection, actor: Actor, tenant_id: int, overrides: dict[str, Any], *, base: Thresholds, at: datetime
) -> Thresholds:
    """Replace the company's overrides (``{}`` restores the defaults); returns the thresholds in force.

    Checked against ``base`` (the collector's configured defaults): an unknown name or a ladder out
    of order (a warning later than its major level …) is ``InvalidInput`` naming the field.
    """
    authorize(conn, actor, tenant_id, Permission.MANAGE_COMPANY, None)
    try:
        effective = base.merged(overrides)
    except ValueError as exc:
        raise InvalidInput(f"alert thresholds refused: {exc}") from None
    previous = alert_threshold_overrides(conn, tenant_id)
    updated = conn.execute(
        sa.update(tenant_profiles).where(tenant_profiles.c.tenant_id == tenant_id)
        .values(alert_thresholds=dict(overrides) or None)
    ).rowcount
    if updated != 1:
        raise NotFound(f"company {tenant_id} has no profile")
    audit.record(
        conn, actor, tenant_id=tenant_id, action="company.alert_thresholds", target_type="tenant",
        target_id=tenant_id, at=at, details={"from": previous, "to": dict(overrides)},
    )
    return effective
