"""Clocks and ages the rules (and time to block) share.

Clock model. The ФН applies its 30-day and 24-hour rules on the register's own clock, so ages are
measured there and then advanced by the real time elapsed since the poll, on the collector's clock::

    register_now = state.register_clock + (now - polled)
    backlog age  = register_now - state.ofd.first_unsent_at

``polled`` is when the state was read on the collector's clock (``polled_at``: its arrival minus the
time it waited in the agent's outbox, see ``collector/ingest/agent_clock.py``), else its arrival
(``state_received_at``), and the agent's own ``read_at`` only when neither is known: an agent clock
2 days behind must not age a 30-minute shift by 2 days. Elapsed time is clamped at zero. When the register clock itself is unknown we fall back to the collector's ``now`` in
the tenant's time zone, i.e. we assume the register clock is right (details say ``"clock": "tenant"``);
without a tenant time zone the register-clock rules yield nothing rather than guess an offset.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from collector.alerts.rules.inputs import RuleInput
from protocol.kkt.state import ShiftStatus

ZERO = timedelta(0)


def aware_utc(value: datetime) -> datetime:
    # RegisterState.read_at is documented as aware UTC; a naive one is read as UTC rather than dropped.
    if value.tzinfo is UTC:  # the usual case; astimezone(UTC) would return it unchanged
        return value
    return value.replace(tzinfo=UTC) if value.utcoffset() is None else value.astimezone(UTC)


def naive(value: datetime) -> datetime:
    # Register times are naive local wall-clock; strip a zone a driver might have attached.
    return value if value.tzinfo is None else value.replace(tzinfo=None)


def end_of_day(day: date) -> datetime | None:
    """Naive midnight after ``day``: a date-valued deadline lasts through its whole day. None past year 9999."""
    try:
        return datetime.combine(day, time()) + timedelta(days=1)
    except OverflowError:
        return None


@dataclass(frozen=True)
class RegisterClock:
    """The register's local wall-clock time *now*, and which clock it was derived from."""

    now: datetime
    source: str  # "register": advanced register clock; "tenant": collector time in the tenant zone


def polled_at(inp: RuleInput) -> datetime | None:
    """When the state was read, as near the collector's clock as known (see the clock model)."""
    if inp.state is None:
        return None
    return inp.polled_at or inp.state_received_at or inp.state.read_at


# The last input's register clock: the rules and the verdict ask for it six times per evaluation
# of one register. Keyed by identity (a ``RuleInput`` is frozen, and held here so its id is not
# reused); one tuple, read and replaced whole, so threads sharing it each get their own input's.
_LAST_CLOCK: tuple[RuleInput | None, RegisterClock | None] = (None, None)


def register_clock_now(inp: RuleInput) -> RegisterClock | None:
    global _LAST_CLOCK
    last, clock = _LAST_CLOCK
    if last is inp:
        return clock
    clock = _register_clock_now(inp)
    _LAST_CLOCK = (inp, clock)
    return clock


def _register_clock_now(inp: RuleInput) -> RegisterClock | None:
    state = inp.state
    if state is None:
        return None
    now = aware_utc(inp.now)
    if state.register_clock is not None:
        polled = polled_at(inp)
        if polled is None:
            return None
        elapsed = max(now - aware_utc(polled), ZERO)
        return RegisterClock(naive(state.register_clock) + elapsed, "register")
    if inp.tz is None:
        return None
    return RegisterClock(now.astimezone(inp.tz).replace(tzinfo=None), "tenant")


def oldest_unsent_age(inp: RuleInput) -> tuple[timedelta, RegisterClock] | None:
    """Age of the oldest unsent document now; None when none is pending or it is unknown.

    An unknown count with a read date still counts: the date is what the 30-day rule runs on.
    """
    state = inp.state
    if state is None or state.ofd.first_unsent_at is None or state.ofd.unsent_count == 0:
        return None
    clock = register_clock_now(inp)
    if clock is None:
        return None
    return max(clock.now - naive(state.ofd.first_unsent_at), ZERO), clock


def shift_age(inp: RuleInput) -> tuple[timedelta, RegisterClock] | None:
    state = inp.state
    if state is None or state.shift.opened_at is None:
        return None
    if state.shift.status not in (ShiftStatus.OPEN, ShiftStatus.EXPIRED):
        return None
    clock = register_clock_now(inp)
    if clock is None:
        return None
    return max(clock.now - naive(state.shift.opened_at), ZERO), clock


def fn_time_left(inp: RuleInput) -> tuple[timedelta, RegisterClock] | None:
    """Time until the ФН's validity ends: the end of its valid-until day on the register clock."""
    state = inp.state
    if state is None or state.fn.valid_until is None:
        return None
    end = end_of_day(state.fn.valid_until)
    clock = register_clock_now(inp)
    if end is None or clock is None:
        return None
    return end - clock.now, clock


def contract_time_left(inp: RuleInput) -> timedelta | None:
    """Time until the paid OFD period ends (end of the paid-until day, tenant zone, UTC if unknown)."""
    if inp.contract is None or inp.contract.paid_until is None:
        return None
    end = end_of_day(inp.contract.paid_until)
    if end is None:
        return None
    return end.replace(tzinfo=inp.tz or UTC) - aware_utc(inp.now)
