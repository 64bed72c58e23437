"""The pages' ``time_zone_of``: the caller's company zone from ``tenant_profiles``.

Asked on every page render, so answers are remembered for a short while; a changed setting
shows in every web process within ``ttl`` seconds (and at once in the process that changed it,
which calls ``forget``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import tzinfo
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from aiohttp import web

from collector.accounts.company import DEFAULT_TIME_ZONE as DEFAULT_ZONE_NAME
from collector.accounts.company import time_zone_name
from collector.security import PRINCIPAL_KEY, Principal

DEFAULT_TIME_ZONE = ZoneInfo(DEFAULT_ZONE_NAME)  # pages without a company (the operator's view)


class TenantZones:
    def __init__(self, engine: sa.Engine, *, ttl: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._engine = engine
        self._ttl = ttl
        self._clock = clock
        self._known: dict[int, tuple[float, ZoneInfo]] = {}

    def __call__(self, principal: Principal) -> tzinfo:
        tenant_id = principal.scope.tenant_id
        if tenant_id is None:  # the operator's cross-tenant view has no company of its own
            return DEFAULT_TIME_ZONE
        now = self._clock()
        known = self._known.get(tenant_id)
        if known is not None and known[0] > now:
            return known[1]
        with self._engine.connect() as conn:
            zone = ZoneInfo(time_zone_name(conn, tenant_id))
        self._known[tenant_id] = (now + self._ttl, zone)
        return zone

    def forget(self, tenant_id: int) -> None:
        self._known.pop(tenant_id, None)


TENANT_ZONES_KEY = web.AppKey("tenant_zones", TenantZones)


def forget_tenant_zone(request: web.Request) -> None:
    """After the caller's company changed its zone: this process shows the new one at once."""
    zones = request.app.get(TENANT_ZONES_KEY)
    principal = request.get(PRINCIPAL_KEY)
    if zones is not None and principal is not None and principal.scope.tenant_id is not None:
        zones.forget(principal.scope.tenant_id)
