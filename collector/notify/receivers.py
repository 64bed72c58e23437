"""Receivers and failed deliveries in the database, and the hooks the grouper needs from it.

* CRUD on ``notification_receivers`` (what the web API calls), validated by building the
  ``Receiver`` the dispatcher would use, so a row that is stored can always be delivered to;
* ``ReceiverDirectory`` — the grouper's ``receivers_for``: enabled receivers per tenant, cached and
  re-read every ``refresh`` seconds (edits in the web UI apply within that time, no restart);
* ``silence_check`` — the grouper's ``is_silenced``: a silence on the register or any ancestor
  node (``silences_covering``), or the alert's own "silence until" from the alert page;
* ``DeliveryLog`` — the channels' dead-letter sink, written to ``notification_deliveries``;
* ``RecentAnswers`` — a few seconds of memory for the rights and silence answers.

Hooks run on the notifier's event loop and must never raise into it: a database error is
logged and answered conservatively (keep the last receiver list, treat as not silenced).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Hashable
from dataclasses import dataclass, replace
from datetime import datetime
from datetime import time as clock_time

import sqlalchemy as sa

from collector.accounts.schema import users
from collector.notify.delivery import DeadLetter
from collector.notify.grouping import CanSee, IsSilenced
from collector.notify.notice import AlertNotice, NotifyConfigError, QuietHours, Receiver
from collector.notify.schema import notification_deliveries, notification_receivers
from collector.storage.engine import begin_write
from collector.storage.schema import alerts
from collector.storage.silences import silences_covering

log = logging.getLogger(__name__)

_receivers = notification_receivers
_deliveries = notification_deliveries


class ReceiverError(ValueError):
    """A receiver that cannot be stored as given (bad address, unknown user, other tenant)."""


@dataclass(frozen=True)
class ReceiverSpec:
    """What an administrator sets on a receiver."""

    channel: str
    address: str
    principal_user_id: int | None
    secret: str | None = None
    timezone: str = "Europe/Moscow"
    quiet_start: clock_time | None = None
    quiet_end: clock_time | None = None
    quiet_floor: str | None = None
    enabled: bool = True


@dataclass(frozen=True)
class ReceiverRecord:
    """A stored receiver as listed (the webhook secret itself is never read back out)."""

    id: int
    tenant_id: int
    channel: str
    address: str
    has_secret: bool
    timezone: str
    quiet_start: clock_time | None
    quiet_end: clock_time | None
    quiet_floor: str | None
    principal_user_id: int | None
    enabled: bool
    created_at: datetime


@dataclass(frozen=True)
class DeliveryFailure:
    id: int
    receiver_id: int
    channel: str
    group_key: str
    last_error: str
    attempts: int
    failed_at: datetime


def _quiet_hours(start: clock_time | None, end: clock_time | None, floor: str | None) -> QuietHours | None:
    if start is None and end is None:
        return None
    if start is None or end is None:
        raise NotifyConfigError("quiet hours need both a start and an end")
    return QuietHours(start, end, floor or "critical")


def receiver_from_row(row: sa.RowMapping) -> Receiver:
    """The dispatcher's view of a stored row; raises ``NotifyConfigError`` for an unusable one."""
    principal = row["principal_user_id"]
    return Receiver(
        receiver_id=str(row["id"]),
        tenant_id=str(row["tenant_id"]),
        channel=row["channel"],
        address=row["address"],
        timezone=row["timezone"],
        secret=row["secret"],
        quiet_hours=_quiet_hours(row["quiet_start"], row["quiet_end"], row["quiet_floor"]),
        principal_id=None if principal is None else str(principal),
    )


def _checked_values(conn: sa.Connection, tenant_id: int, spec: ReceiverSpec) -> dict[str, object]:
    values: dict[str, object] = {
        "tenant_id": tenant_id,
        "channel": spec.channel,
        "address": spec.address.strip(),
        "secret": spec.secret if spec.channel == "webhook" else None,
        "timezone": spec.timezone,
        "quiet_start": spec.quiet_start,
        "quiet_end": spec.quiet_end,
        "quiet_floor": spec.quiet_floor if spec.quiet_start is not None else None,
        "principal_user_id": spec.principal_user_id,
        "enabled": spec.enabled,
    }
    try:
        receiver_from_row({"id": 0, **values})  # type: ignore[arg-type]
    except NotifyConfigError as exc:
        raise ReceiverError(str(exc)) from None
    if spec.principal_user_id is not None:
        owner = conn.execute(
            sa.select(users.c.tenant_id).where(users.c.id == spec.principal_user_id)
        ).scalar_one_or_none()
        if owner != tenant_id:  # another tenant's user is reported as missing, like everywhere else
            raise ReceiverError(f"user {spec.principal_user_id} does not exist")
    return values


def create_receiver(conn: sa.Connection, tenant_id: int, spec: ReceiverSpec, *, at: datetime) -> int:
    values = _checked_values(conn, tenant_id, spec)
    stmt = sa.insert(_receivers).values(**values, created_at=at).returning(_receivers.c.id)
    return int(conn.execute(stmt).scalar_one())


def update_receiver(conn: sa.Connection, tenant_id: int, receiver_id: int, spec: ReceiverSpec) -> bool:
    """Replace a receiver's settings; a webhook keeps its secret when ``spec.secret`` is None."""
    stored = _row(conn, tenant_id, receiver_id)
    if stored is None:
        return False
    if spec.channel == "webhook" and spec.secret is None and stored["channel"] == "webhook":
        spec = replace(spec, secret=stored["secret"])
    values = _checked_values(conn, tenant_id, spec)
    conn.execute(
        sa.update(_receivers)
        .where(_receivers.c.id == receiver_id, _receivers.c.tenant_id == tenant_id)
        .values(**values)
    )
    return True


def delete_receiver(conn: sa.Connection, tenant_id: int, receiver_id: int) -> bool:
    result = conn.execute(
        sa.delete(_receivers).where(_receivers.c.id == receiver_id, _receivers.c.tenant_id == tenant_id)
    )
    return result.rowcount > 0


def _record(row: sa.RowMapping) -> ReceiverRecord:
    return ReceiverRecord(
        id=row["id"],
        tenant_id=row["tenant_id"],
        channel=row["channel"],
        address=row["address"],
        has_secret=bool(row["secret"]),
        timezone=row["timezone"],
        quiet_start=row["quiet_start"],
        quiet_end=row["quiet_end"],
        quiet_floor=row["quiet_floor"],
        principal_user_id=row["principal_user_id"],
        enabled=row["enabled"],
        created_at=row["created_at"],
    )


def list_receivers(conn: sa.Connection, tenant_id: int) -> list[ReceiverRecord]:
    rows = conn.execute(sa.select(_receivers).where(_receivers.c.tenant_id == tenant_id).order_by(_receivers.c.id))
    return [_record(r) for r in rows.mappings()]


def _row(conn: sa.Connection, tenant_id: int, receiver_id: int) -> sa.RowMapping | None:
    query = sa.select(_receivers).where(_receivers.c.id == receiver_id, _receivers.c.tenant_id == tenant_id)
    return conn.execute(query).mappings().first()


def get_receiver(conn: sa.Connection, tenant_id: int, receiver_id: int) -> ReceiverRecord | None:
    row = _row(conn, tenant_id, receiver_id)
    return None if row is None else _record(row)


def load_receiver(conn: sa.Connection, tenant_id: int, receiver_id: int) -> Receiver | None:
    """The deliverable ``Receiver`` (with its secret) for a test message."""
    row = _row(conn, tenant_id, receiver_id)
    return None if row is None else receiver_from_row(row)


def webhook_receivers_exist(conn: sa.Connection) -> bool:
    query = sa.select(_receivers.c.id).where(_receivers.c.channel == "webhook", _receivers.c.enabled.is_(True))
    return conn.execute(query.limit(1)).first() is not None


# --- failed deliveries ---------------------------------------------------------------------------


def record_failed_delivery(conn: sa.Connection, letter: DeadLetter) -> bool:
    """Store a dead letter under its receiver's tenant; False when the receiver is gone (or is a test id)."""
    if not letter.receiver_id.isdigit():
        return False
    source = sa.select(
        _receivers.c.tenant_id,
        _receivers.c.id,
        sa.literal(letter.channel, sa.String),
        sa.literal(letter.group_key[:300], sa.String),
        sa.literal(letter.last_error, sa.Text),
        sa.literal(letter.attempts, sa.Integer),
        sa.literal(letter.failed_at, _deliveries.c.failed_at.type),
    ).where(_receivers.c.id == int(letter.receiver_id))
    columns = ["tenant_id", "receiver_id", "channel", "group_key", "last_error", "attempts", "failed_at"]
    # RETURNING, not rowcount: psycopg reports no row count for INSERT … SELECT.
    inserted = conn.execute(sa.insert(_deliveries).from_select(columns, source).returning(_deliveries.c.id))
    return inserted.first() is not None


def recent_failures(conn: sa.Connection, tenant_id: int, *, limit: int = 50, offset: int = 0) -> list[DeliveryFailure]:
    rows = conn.execute(
        sa.select(
            _deliveries.c.id,
            _deliveries.c.receiver_id,
            _deliveries.c.channel,
            _deliveries.c.group_key,
            _deliveries.c.last_error,
            _deliveries.c.attempts,
            _deliveries.c.failed_at,
        )
        .where(_deliveries.c.tenant_id == tenant_id)
        .order_by(_deliveries.c.failed_at.desc(), _deliveries.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [DeliveryFailure(**r) for r in rows.mappings()]


class DeliveryLog:
    """Dead-letter sink of the channels: each failed delivery becomes a row (best effort)."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def __call__(self, letter: DeadLetter) -> None:
        try:
            with begin_write(self._engine) as conn:
                record_failed_delivery(conn, letter)
        except Exception:  # the failure is already logged by the channel; losing the row must not crash
            log.exception("could not store the failed delivery %s to %s", letter.group_key, letter.receiver_id)


# --- grouper hooks -------------------------------------------------------------------------------


class ReceiverDirectory:
    """``receivers_for(tenant_id)``: the tenant's enabled receivers on configured channels, cached."""

    def __init__(
        self,
        engine: sa.Engine,
        *,
        channels: Collection[str] = ("email", "webhook"),
        refresh: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._channels = frozenset(channels)
        self._refresh = refresh
        self._clock = clock
        self._by_tenant: dict[str, list[Receiver]] = {}
        self._loaded_at: float | None = None
        self._warned: set[int] = set()

    def __call__(self, tenant_id: str) -> list[Receiver]:
        if self._loaded_at is None or self._clock() - self._loaded_at >= self._refresh:
            self.reload()
        return list(self._by_tenant.get(tenant_id, ()))

    def reload(self) -> None:
        try:
            with self._engine.connect() as conn:
                rows = list(conn.execute(sa.select(_receivers).where(_receivers.c.enabled.is_(True))).mappings())
        except Exception:  # keep the last good list; try again at the next refresh
            log.exception("could not read notification receivers; keeping the previous list")
            self._loaded_at = self._clock()
            return
        by_tenant: dict[str, list[Receiver]] = {}
        for row in rows:
            receiver = self._usable(row)
            if receiver is not None:
                by_tenant.setdefault(receiver.tenant_id, []).append(receiver)
        self._by_tenant = by_tenant
        self._loaded_at = self._clock()

    def _usable(self, row: sa.RowMapping) -> Receiver | None:
        reason: str | None = None
        receiver: Receiver | None = None
        try:
            receiver = receiver_from_row(row)
        except NotifyConfigError as exc:
            reason = str(exc)
        if receiver is not None and receiver.channel not in self._channels:
            reason, receiver = f"no {receiver.channel} channel is configured (SMTP settings?)", None
        if reason is not None and row["id"] not in self._warned:
            self._warned.add(row["id"])  # once per process, not at every refresh
            log.warning("notification receiver %s is skipped: %s", row["id"], reason)
        return receiver


def silence_check(engine: sa.Engine) -> IsSilenced:
    """``is_silenced(notice, now)``: a maintenance silence covers the register, or the alert itself
    was silenced until later than ``now``."""

    def is_silenced(notice: AlertNotice, now: datetime) -> bool:
        if notice.about_company:  # silences are maintenance windows of registers and stores
            return False
        try:
            with engine.connect() as conn:
                if silences_covering(conn, notice.register_id, now):
                    return True
                until = conn.execute(
                    sa.select(alerts.c.silenced_until).where(
                        alerts.c.register_id == notice.register_id, alerts.c.rule == notice.rule
                    )
                ).scalar_one_or_none()
        except Exception:  # better one message too many than a swallowed alert
            log.exception("could not check silences for %s; notifying", notice.register_id)
            return False
        return until is not None and until > now

    return is_silenced


class RecentAnswers:
    """Remembers yes/no answers for ``ttl`` seconds.

    The grouper re-checks rights and silences for every waiting alert at every flush (each
    ``tick``), which would be two queries per alert per second while a silenced store waits for
    hours; a few seconds of memory cut that to a trickle, and a grant or silence change still
    applies within ``ttl``.
    """

    def __init__(self, ttl: float, *, clock: Callable[[], float] = time.monotonic, max_entries: int = 50_000) -> None:
        self._ttl = ttl
        self._clock = clock
        self._max = max_entries
        self._answers: dict[Hashable, tuple[float, bool]] = {}

    def get(self, key: Hashable, compute: Callable[[], bool]) -> bool:
        now = self._clock()
        known = self._answers.get(key)
        if known is not None and now - known[0] < self._ttl:
            return known[1]
        answer = compute()
        if len(self._answers) >= self._max:
            self._answers = {k: v for k, v in self._answers.items() if now - v[0] < self._ttl}
        self._answers[key] = (now, answer)
        return answer


def remembered_rights(can_see: CanSee, answers: RecentAnswers) -> CanSee:
    def check(receiver: Receiver, notice: AlertNotice) -> bool:
        key = ("rights", receiver.receiver_id, receiver.principal_id, notice.register_id)
        return answers.get(key, lambda: can_see(receiver, notice))

    return check


def remembered_silences(is_silenced: IsSilenced, answers: RecentAnswers) -> IsSilenced:
    def check(notice: AlertNotice, now: datetime) -> bool:
        return answers.get(("silence", notice.register_id, notice.rule), lambda: is_silenced(notice, now))

    return check
