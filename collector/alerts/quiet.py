"""Until when nothing can change for a register whose inputs stay as they are (issue 11).

A register that no rule finds anything wrong with, and that can sell with no threat ahead, only
changes with time when one of the time-driven rules reaches its first level: the agent falls
silent long enough (or its data goes stale: the verdict turns unknown), a register stays
unreachable long enough, the oldest unsent document or the open shift ages to its first
threshold, the ФН's or the OFD contract's time left falls to its first threshold. Every other
rule reads only what a message changes. :func:`quiet_until` is the earliest of those instants;
the periodic sweep need not evaluate the register again before it unless its inputs change.

Each instant is where an age that grows at most as fast as real time reaches its threshold (the
register-clock ages stand still while a poll time lies ahead: later, never earlier). An age on a
register clock taken from the company's zone (no register clock) can jump with the zone's
offset, so such inputs get no quiet period at all.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from collector.alerts.rules import RuleInput
from collector.alerts.rules.clocks import (
    RegisterClock,
    aware_utc,
    contract_time_left,
    fn_time_left,
    oldest_unsent_age,
    shift_age,
)
from collector.alerts.thresholds import Thresholds

_NEVER = datetime.max.replace(tzinfo=UTC)
_ZERO = timedelta(0)


def quiet_until(inp: RuleInput, thr: Thresholds) -> datetime | None:
    """The earliest instant at which a rule or the verdict could change for these inputs; None
    when that cannot be told (then the register is evaluated at every sweep).

    Only for inputs for which ``evaluate_all`` finds no condition and ``sell_verdict`` says there
    is no threat: a condition's details (an age, the time left) change at every evaluation."""
    now = aware_utc(inp.now)
    moments: list[datetime] = []
    seen = inp.agent_last_seen or inp.state_received_at
    if seen is not None and not (inp.agent_online is True and inp.agent_last_seen is None):
        # agent_offline
        moments.append(aware_utc(seen) + min(thr.agent_offline_warning, thr.agent_offline_major))
    last = inp.state_received_at or inp.agent_last_seen
    if last is not None:
        moments.append(aware_utc(last) + thr.agent_offline_warning)  # the verdict: no fresh data
    if inp.agent_online is not False and inp.link_up is False and inp.link_down_since is not None:
        moments.append(aware_utc(inp.link_down_since) + thr.register_unreachable_major)
    backlog = min(
        thr.ofd_backlog_warning, thr.ofd_backlog_major, thr.ofd_backlog_critical, thr.ofd_backlog_blocked
    )
    for aged, first in (
        (oldest_unsent_age(inp), backlog),
        (shift_age(inp), min(thr.shift_warning, thr.shift_critical, thr.shift_blocked)),
    ):
        if aged is not None:
            age, clock = aged
            if not _steady(clock):
                return None
            moments.append(now + (first - age))
    timed = fn_time_left(inp)
    if timed is not None:
        left, clock = timed
        if not _steady(clock):
            return None
        first = max(
            _ZERO,
            thr.fn_validity_critical,
            thr.fn_validity_major,
            thr.fn_validity_warning,
            thr.fn_validity_info,
        )
        moments.append(now + (left - first))
    if inp.contract is not None and inp.contract.activated:
        paid_left = contract_time_left(inp)  # on an aware clock: real time
        if paid_left is not None:
            # ofd_contract, and the verdict's OFD note (over at 0)
            moments.append(now + (paid_left - max(_ZERO, thr.ofd_paid_major, thr.ofd_paid_warning)))
    return min(moments, default=_NEVER)


def _steady(clock: RegisterClock) -> bool:
    """Whether ages on this clock grow at most as fast as real time."""
    return clock.source == "register"
