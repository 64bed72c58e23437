"""What the notifier works on: an alert notice from the engine, a receiver, and an outgoing group.

These are plain frozen dataclasses on purpose: the alert engine (``collector.alerts``) builds
``AlertNotice`` from its own records, so this package does not import it and can be tested alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Lowest to highest; "blocked" means the register already refuses fiscal documents.
SEVERITIES: tuple[str, ...] = ("info", "warning", "major", "critical", "blocked")
NoticeStatus = Literal["firing", "resolved"]
Channel = Literal["webhook", "email"]
GroupReason = Literal["first", "update", "repeat"]


class NotifyConfigError(ValueError):
    """A notice, receiver or quiet-hours window that cannot be used as given."""


def severity_rank(severity: str) -> int:
    try:
        return SEVERITIES.index(severity)
    except ValueError:
        raise NotifyConfigError(f"unknown severity {severity!r}; expected one of {SEVERITIES}") from None


def _require_aware(value: datetime | None, what: str) -> None:
    if value is not None and value.utcoffset() is None:
        raise NotifyConfigError(f"{what} must be timezone-aware")


# The group a company-level alert (no register: the КЭП running out) travels in, beside the stores.
COMPANY_GROUP = "company"


@dataclass(frozen=True)
class AlertNotice:
    """One alert's current state, as the engine reports it to the notifier.

    A company-level alert has ``register_id == ""``, ``store_node_id == COMPANY_GROUP`` and the
    company's name as ``store_name``; the rights hook decides who hears about it by company rights.
    """

    tenant_id: str
    store_node_id: str
    store_name: str
    register_id: str
    register_serial: str
    rule: str
    severity: str
    status: NoticeStatus
    message: str
    blocks_at: datetime | None = None  # aware; when the register stops accepting documents
    url: str | None = None  # link to the register page in our own web UI
    fix: str | None = None  # what to do, in Russian (collector.alerts.fixes), for the person who acts

    def __post_init__(self) -> None:
        severity_rank(self.severity)
        if self.status not in ("firing", "resolved"):
            raise NotifyConfigError(f"unknown notice status {self.status!r}")
        _require_aware(self.blocks_at, "blocks_at")

    @property
    def about_company(self) -> bool:
        return not self.register_id

    @property
    def alert_key(self) -> tuple[str, str]:
        """The engine keeps one alert per (register, rule); a later notice replaces an earlier one."""
        return (self.register_id, self.rule)


@dataclass(frozen=True)
class QuietHours:
    """A nightly window in the receiver's local time when only ``floor`` and above still page.

    ``start`` may be later than ``end`` (22:00–08:00 wraps midnight); ``start == end`` is an
    empty window, not a whole day, so a mis-set form never silences a receiver completely.
    """

    start: time
    end: time
    floor: str = "critical"

    def __post_init__(self) -> None:
        severity_rank(self.floor)

    def contains(self, local: time) -> bool:
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


@dataclass(frozen=True)
class Receiver:
    """Where one subscriber's notifications go: a user's mailbox or an integration's webhook."""

    receiver_id: str
    tenant_id: str
    channel: Channel
    address: str  # e-mail address or https URL
    timezone: str = "Europe/Moscow"  # the tenant's zone: quiet hours and rendered times use it
    secret: str | None = None  # HMAC key, webhook only
    quiet_hours: QuietHours | None = None
    principal_id: str | None = None  # the user/integration whose grants the rights hook checks
    zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.channel not in ("webhook", "email"):
            raise NotifyConfigError(f"unknown channel {self.channel!r}")
        if self.channel == "webhook":
            if not self.secret:
                raise NotifyConfigError(f"webhook receiver {self.receiver_id} needs a signing secret")
            if not self.address.startswith(("https://", "http://")):
                raise NotifyConfigError(f"webhook receiver {self.receiver_id} needs an http(s) URL")
        elif "@" not in self.address or any(c in self.address for c in "\r\n,;"):
            # One mailbox per receiver: rights are checked per person, so no lists.
            raise NotifyConfigError(f"e-mail receiver {self.receiver_id} needs one plain address")
        try:
            object.__setattr__(self, "zone", ZoneInfo(self.timezone))
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise NotifyConfigError(f"unknown time zone {self.timezone!r}") from exc

    def pages_now(self, severity: str, now: datetime) -> bool:
        """False while quiet hours hold back alerts below the floor."""
        if self.quiet_hours is None:
            return True
        local = now.astimezone(self.zone).time()
        if not self.quiet_hours.contains(local):
            return True
        return severity_rank(severity) >= severity_rank(self.quiet_hours.floor)


@dataclass(frozen=True)
class GroupKey:
    tenant_id: str
    store_node_id: str
    receiver_id: str

    def __str__(self) -> str:
        return f"{self.tenant_id}/{self.store_node_id}/{self.receiver_id}"


@dataclass(frozen=True)
class NotificationGroup:
    """One message for one receiver about one store: every visible alert of that store at ``at``."""

    key: GroupKey
    receiver: Receiver
    store_name: str
    reason: GroupReason
    at: datetime
    firing: tuple[AlertNotice, ...]  # most severe and soonest-blocking first
    resolved: tuple[AlertNotice, ...]
    new: frozenset[tuple[str, str]] = frozenset()  # alert keys not in the previous message

    @property
    def highest_severity(self) -> str:
        notices = self.firing or self.resolved
        return max((n.severity for n in notices), key=severity_rank)

    @property
    def register_count(self) -> int:
        return len({n.register_id for n in (*self.firing, *self.resolved)})


def blocks_in(notice: AlertNotice, now: datetime) -> timedelta | None:
    return None if notice.blocks_at is None else notice.blocks_at - now
