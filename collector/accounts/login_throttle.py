"""Login throttling per (e-mail, client address), with an exponential wait instead of a lock.

Locking an account after N failures let anyone lock anyone out, and answering "locked" only for
existing accounts told which e-mails exist. Here a pair's first ``free_failures`` failures cost
nothing; each later one doubles the wait before that pair may try again (``base_delay`` up to
``max_delay``). The owner, from any other address, is never held back; and the pair is keyed by
the e-mail as typed, so a known and an unknown address are throttled alike. A success clears the
pair; a pair idle for ``memory`` starts afresh. The per-address limit across all e-mails
(``login_failures``) stays in front of this.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from collector.accounts.schema import login_throttle
from collector.storage.dialect import upsert_insert


@dataclass(frozen=True, slots=True)
class PairThrottle:
    free_failures: int = 3
    base_delay: timedelta = timedelta(seconds=1)
    max_delay: timedelta = timedelta(minutes=15)
    memory: timedelta = timedelta(hours=24)

    def delay_after(self, failures: int) -> timedelta:
        """How long the pair waits after its ``failures``-th consecutive failure."""
        if failures < self.free_failures:
            return timedelta(0)
        doublings = min(failures - self.free_failures, 30)  # 2**30 s is far past any sane cap
        return min(self.base_delay * 2**doublings, self.max_delay)


def seconds_to_wait(conn: sa.Connection, email: str, ip: str, at: datetime) -> int:
    """Whole seconds until the pair may try again; 0 when it may now."""
    retry_at = conn.execute(
        sa.select(login_throttle.c.retry_at).where(login_throttle.c.email == email, login_throttle.c.ip == ip)
    ).scalar_one_or_none()
    if retry_at is None or retry_at <= at:
        return 0
    return max(1, math.ceil((retry_at - at).total_seconds()))


def record_failure(conn: sa.Connection, throttle: PairThrottle, email: str, ip: str, at: datetime) -> int:
    """Count one more failure of the pair (forgotten ones start again at 1); returns the count."""
    conn.execute(sa.delete(login_throttle).where(login_throttle.c.last_failure_at < at - throttle.memory))
    known = conn.execute(
        sa.select(login_throttle.c.failures).where(login_throttle.c.email == email, login_throttle.c.ip == ip)
    ).scalar_one_or_none()
    failures = (known or 0) + 1
    values = {"failures": failures, "last_failure_at": at, "retry_at": at + throttle.delay_after(failures)}
    stmt = upsert_insert(conn, login_throttle).values(email=email, ip=ip, **values)
    conn.execute(stmt.on_conflict_do_update(index_elements=["email", "ip"], set_=values))
    return failures


def clear(conn: sa.Connection, email: str, ip: str) -> None:
    conn.execute(sa.delete(login_throttle).where(login_throttle.c.email == email, login_throttle.c.ip == ip))
