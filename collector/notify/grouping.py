"""``NotificationGrouper``: turns a stream of alert notices into a few messages per store.

Pure: no clock, no I/O. The caller feeds notices with ``add(notice, now)`` and asks
``flush(now)`` what is due. Timers follow Grafana/Alertmanager (market-and-alerts.md §3.4):

* one group per (tenant, store, receiver) — one e-mail per store, not one per register;
* ``group_wait`` after a group's first notice before its first message (collects the burst
  when a whole store drops off the network);
* ``group_interval`` between two messages of a group that carry changes;
* ``repeat_interval`` before repeating an unchanged group that still has firing alerts;
* a resolved alert is reported once, in the next message of its group, then forgotten; one that
  was never reported as firing is dropped quietly (nobody needs "fixed" for a page never sent).

Filters, re-evaluated at every flush because silences and grants change while alerts wait:

* ``can_see(receiver, notice)`` — the rights hook (Zabbix's rule: never notify a receiver about a
  register outside its grants). Receivers of another tenant are never considered at all.
* ``is_silenced(notice, now)`` — silences/maintenance per register or node subtree. A silenced
  firing alert is held and reported if it is still firing when the silence ends; a silenced
  resolution is dropped.
* quiet hours per receiver — alerts below the receiver's floor are held until the window ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum

from collector.notify.notice import (
    AlertNotice,
    GroupKey,
    GroupReason,
    NotificationGroup,
    NotifyConfigError,
    Receiver,
    severity_rank,
)

ReceiversFor = Callable[[str], Iterable[Receiver]]
CanSee = Callable[[Receiver, AlertNotice], bool]
IsSilenced = Callable[[AlertNotice, datetime], bool]
AlertKey = tuple[str, str]


@dataclass(frozen=True)
class GroupTimings:
    group_wait: timedelta = timedelta(seconds=30)
    group_interval: timedelta = timedelta(minutes=5)
    repeat_interval: timedelta = timedelta(hours=4)

    def __post_init__(self) -> None:
        if min(self.group_wait, self.group_interval, self.repeat_interval) < timedelta(0):
            raise NotifyConfigError("grouping timers must not be negative")


class _Fate(Enum):
    SEND = "send"
    HOLD = "hold"  # keep it, it may go out later
    DROP = "drop"  # forget it for this receiver


@dataclass
class _Tracked:
    notice: AlertNotice
    sent: tuple[str, str] | None = None  # (status, severity) last reported to this receiver


@dataclass
class _Group:
    receiver: Receiver
    store_name: str
    opened_at: datetime
    last_sent: datetime | None = None
    alerts: dict[AlertKey, _Tracked] = field(default_factory=dict)


def _never_silenced(notice: AlertNotice, now: datetime) -> bool:
    return False


def _order(notice: AlertNotice) -> tuple[int, float, str, str]:
    # Most severe first, then the soonest block, then a stable order a reader can scan.
    blocks = notice.blocks_at.timestamp() if notice.blocks_at else float("inf")
    return (-severity_rank(notice.severity), blocks, notice.register_serial, notice.rule)


class NotificationGrouper:
    def __init__(
        self,
        receivers_for: ReceiversFor,
        can_see: CanSee,
        is_silenced: IsSilenced = _never_silenced,
        timings: GroupTimings | None = None,
    ) -> None:
        self._receivers_for = receivers_for
        self._can_see = can_see
        self._is_silenced = is_silenced
        self._timings = timings or GroupTimings()
        self._groups: dict[GroupKey, _Group] = {}

    @property
    def pending_groups(self) -> int:
        return len(self._groups)

    def add(self, notice: AlertNotice, now: datetime) -> None:
        for receiver in self._receivers_for(notice.tenant_id):
            if receiver.tenant_id != notice.tenant_id or not self._can_see(receiver, notice):
                continue
            key = GroupKey(notice.tenant_id, notice.store_node_id, receiver.receiver_id)
            group = self._groups.get(key)
            tracked = group.alerts.get(notice.alert_key) if group else None
            if notice.status == "resolved" and (tracked is None or tracked.sent is None):
                # Fired and cleared before anyone was told (or never seen): nothing to report.
                if group is not None and tracked is not None:
                    del group.alerts[notice.alert_key]
                    self._drop_if_empty(key)
                continue
            if group is None:
                group = self._groups[key] = _Group(receiver, notice.store_name, opened_at=now)
            group.store_name = notice.store_name
            if tracked is None:
                group.alerts[notice.alert_key] = _Tracked(notice)
            else:
                tracked.notice = notice

    def flush(self, now: datetime) -> list[NotificationGroup]:
        out: list[NotificationGroup] = []
        current: dict[str, dict[str, Receiver]] = {}  # tenant -> receivers as configured right now
        for key in list(self._groups):
            if key.tenant_id not in current:
                current[key.tenant_id] = {
                    r.receiver_id: r
                    for r in self._receivers_for(key.tenant_id)
                    if r.tenant_id == key.tenant_id
                }
            receiver = current[key.tenant_id].get(key.receiver_id)
            if receiver is None:  # unsubscribed or deleted while its alerts waited
                del self._groups[key]
                continue
            self._groups[key].receiver = receiver  # edits (quiet hours, address) apply at once
            message = self._flush_group(key, self._groups[key], now)
            if message is not None:
                out.append(message)
            self._drop_if_empty(key)
        return out

    def _fate(self, receiver: Receiver, notice: AlertNotice, now: datetime) -> _Fate:
        if not self._can_see(receiver, notice):
            return _Fate.DROP
        if self._is_silenced(notice, now):
            return _Fate.DROP if notice.status == "resolved" else _Fate.HOLD
        return _Fate.SEND if receiver.pages_now(notice.severity, now) else _Fate.HOLD

    def _flush_group(self, key: GroupKey, group: _Group, now: datetime) -> NotificationGroup | None:
        sendable: dict[AlertKey, _Tracked] = {}
        for alert_key, tracked in list(group.alerts.items()):
            fate = self._fate(group.receiver, tracked.notice, now)
            if fate is _Fate.DROP:
                del group.alerts[alert_key]
            elif fate is _Fate.SEND:
                sendable[alert_key] = tracked
        changed = [k for k, t in sendable.items() if (t.notice.status, t.notice.severity) != t.sent]
        reason = self._due(
            group, bool(changed), any(t.notice.status == "firing" for t in sendable.values()), now
        )
        if reason is None:
            return None
        message = NotificationGroup(
            key=key,
            receiver=group.receiver,
            store_name=group.store_name,
            reason=reason,
            at=now,
            firing=tuple(
                sorted((t.notice for t in sendable.values() if t.notice.status == "firing"), key=_order)
            ),
            resolved=tuple(
                sorted((t.notice for t in sendable.values() if t.notice.status == "resolved"), key=_order)
            ),
            new=frozenset(k for k in changed if sendable[k].sent is None),
        )
        group.last_sent = now
        for alert_key, tracked in sendable.items():
            tracked.sent = (tracked.notice.status, tracked.notice.severity)
            if tracked.notice.status == "resolved":
                del group.alerts[alert_key]  # reported once, now forgotten
        return message

    def _due(self, group: _Group, changed: bool, firing: bool, now: datetime) -> GroupReason | None:
        t = self._timings
        if group.last_sent is None:
            return "first" if changed and now >= group.opened_at + t.group_wait else None
        if changed:
            return "update" if now >= group.last_sent + t.group_interval else None
        if firing and now >= group.last_sent + t.repeat_interval:
            return "repeat"
        return None

    def _drop_if_empty(self, key: GroupKey) -> None:
        group = self._groups.get(key)
        if group is not None and not group.alerts:
            del self._groups[key]
