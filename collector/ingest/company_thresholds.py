"""Each company's alert thresholds: the collector's defaults with the company's overrides.

Not its time zone: a register's naive clock runs in its *store's* zone, which in a chain across Russia
is often not the head office's, so the clock rules must not read it in the company's zone.

Read from ``tenant_profiles`` for the companies of each evaluated chunk and kept for ``ttl``
seconds, so a changed setting applies within that time in every collector process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection

import sqlalchemy as sa

from collector.accounts.company import thresholds_in_force
from collector.accounts.schema import tenant_profiles
from collector.alerts.thresholds import Thresholds


class CompanyThresholds:
    def __init__(self, base: Thresholds, *, ttl: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.base = base
        self._ttl = ttl
        self._clock = clock
        self._known: dict[int, tuple[float, Thresholds]] = {}

    def for_tenants(self, conn: sa.Connection, tenant_ids: Collection[int]) -> dict[int, Thresholds]:
        now = self._clock()
        missing = [t for t in set(tenant_ids) if t not in self._known or self._known[t][0] <= now]
        if missing:
            rows = conn.execute(
                sa.select(tenant_profiles.c.tenant_id, tenant_profiles.c.alert_thresholds)
                .where(tenant_profiles.c.tenant_id.in_(missing))
            )
            found = {row.tenant_id: thresholds_in_force(self.base, row.alert_thresholds, row.tenant_id) for row in rows}
            for tenant_id in missing:  # a tenant without a profile (made by the CLI) gets the defaults
                self._known[tenant_id] = (now + self._ttl, found.get(tenant_id, self.base))
        return {t: self._known[t][1] for t in tenant_ids}
