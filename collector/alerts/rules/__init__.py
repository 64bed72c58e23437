"""Alert rules: one pure function per catalogue row (DESIGN §5), ``(RuleInput, Thresholds) -> Condition | None``.

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

Unknown input yields no condition; only ``agent_offline`` is about absence of data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from pydantic import BaseModel, ConfigDict

from collector.alerts.severity import RuleId, Severity
from collector.alerts.thresholds import Thresholds
from protocol.kkt.fn import (
    FN_ERROR_ARCHIVE_FULL,
    FN_ERROR_OFD_WAIT_EXHAUSTED,
    FN_ERROR_SERVICE_LIFE_ENDED,
    FN_ERROR_SHIFT_OVER_24H,
    FnPhase,
    FnWarning,
    fn_error_meaning,
)
from protocol.kkt.state import RegisterState, ShiftStatus

_ZERO = timedelta(0)
# ФН result 14h: "исчерпан ресурс хранения документов для ОФД" — the archive is as good as full.
_FN_ERROR_OFD_STORAGE_EXHAUSTED = 0x14


class AlertInputError(ValueError):
    """The caller passed a rule input the rules cannot interpret (e.g. a naive ``now``)."""


@dataclass(frozen=True)
class OfdContract:
    """The OFD service contract of one register, from the contract registry."""

    activated: bool
    paid_until: date | None = None


@dataclass(frozen=True, kw_only=True)
class RuleInput:
    """Everything the rules need about one register at one moment. All aware datetimes are UTC-able."""

    register_id: str
    now: datetime
    state: RegisterState | None = None
    state_received_at: datetime | None = None
    polled_at: datetime | None = None  # when the state was read, on the collector's clock
    agent_online: bool | None = None
    agent_last_seen: datetime | None = None
    link_up: bool | None = None
    link_down_since: datetime | None = None
    contract: OfdContract | None = None
    tz: tzinfo | None = None
    agent_clock_offset: timedelta | None = None  # how far the agent's clock is ahead (negative: behind)

    def __post_init__(self) -> None:
        for name in ("now", "state_received_at", "polled_at", "agent_last_seen", "link_down_since"):
            value = getattr(self, name)
            if value is not None and value.utcoffset() is None:
                raise AlertInputError(f"RuleInput.{name} must be an aware datetime, got naive {value!r}")


class Condition(BaseModel):
    """What a rule found: the alert lifecycle turns it into an alert record."""

    model_config = ConfigDict(frozen=True)

    rule: RuleId
    severity: Severity
    message: str
    details: dict[str, Any]
    blocks_at: datetime | None = None


Rule = Callable[[RuleInput, Thresholds], Condition | None]


# --- formatting --------------------------------------------------------------------------------


def format_duration(value: timedelta) -> str:
    """Two most significant units, Russian abbreviations: ``"20 дн. 3 ч"``, ``"4 ч 5 мин"``, ``"3 мин"``."""
    total = int(abs(value).total_seconds())
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes = rest // 60
    if days:
        return f"{days} дн. {hours} ч" if hours else f"{days} дн."
    if hours:
        return f"{hours} ч {minutes} мин" if minutes else f"{hours} ч"
    if minutes:
        return f"{minutes} мин"
    return "меньше минуты"


def _format_date(value: date) -> str:
    return value.strftime("%d.%m.%Y")


def _countdown(left: timedelta, what: str) -> str:
    """``"блокировка через 9 дн. 21 ч"`` or, once past, ``"блокировка 2 дн. назад"``."""
    if left > _ZERO:
        return f"{what} через {format_duration(left)}"
    if left == _ZERO:
        return f"{what} сейчас"
    return f"{what} {format_duration(left)} назад"


# --- clocks and ages (shared with time_to_block) -------------------------------------------------


def _aware_utc(value: datetime) -> datetime:
    # RegisterState.read_at is documented as aware UTC; a naive one is read as UTC rather than dropped.
    return value.replace(tzinfo=UTC) if value.utcoffset() is None else value.astimezone(UTC)


def _naive(value: datetime) -> datetime:
    # Register times are naive local wall-clock; strip a zone a driver might have attached.
    return value.replace(tzinfo=None)


def _end_of_day(day: date) -> datetime | None:
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


def register_clock_now(inp: RuleInput) -> RegisterClock | None:
    state = inp.state
    if state is None:
        return None
    now = _aware_utc(inp.now)
    if state.register_clock is not None:
        polled = polled_at(inp)
        if polled is None:
            return None
        elapsed = max(now - _aware_utc(polled), _ZERO)
        return RegisterClock(_naive(state.register_clock) + elapsed, "register")
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
    return max(clock.now - _naive(state.ofd.first_unsent_at), _ZERO), clock


def shift_age(inp: RuleInput) -> tuple[timedelta, RegisterClock] | None:
    state = inp.state
    if state is None or state.shift.opened_at is None:
        return None
    if state.shift.status not in (ShiftStatus.OPEN, ShiftStatus.EXPIRED):
        return None
    clock = register_clock_now(inp)
    if clock is None:
        return None
    return max(clock.now - _naive(state.shift.opened_at), _ZERO), clock


def fn_time_left(inp: RuleInput) -> tuple[timedelta, RegisterClock] | None:
    """Time until the ФН's validity ends: the end of its valid-until day on the register clock."""
    state = inp.state
    if state is None or state.fn.valid_until is None:
        return None
    end = _end_of_day(state.fn.valid_until)
    clock = register_clock_now(inp)
    if end is None or clock is None:
        return None
    return end - clock.now, clock


def contract_time_left(inp: RuleInput) -> timedelta | None:
    """Time until the paid OFD period ends (end of the paid-until day, tenant zone, UTC if unknown)."""
    if inp.contract is None or inp.contract.paid_until is None:
        return None
    end = _end_of_day(inp.contract.paid_until)
    if end is None:
        return None
    return end.replace(tzinfo=inp.tz or UTC) - _aware_utc(inp.now)


def fn_reports_error(state: RegisterState | None, code: int) -> bool:
    """True when the ФН refused a command of this poll with result ``code``.

    Drivers list the codes in ``DeviceState.fn_errors``; states from agents that predate that
    field only carry the error *with its meaning* in ``last_error`` (no fixed format), so for them
    the meaning text from ``protocol.kkt.fn.FN_ERRORS`` is matched, case-insensitively.
    """
    if state is None:
        return False
    if code in state.device.fn_errors:
        return True
    if state.device.fn_errors or not state.device.last_error:
        return False
    return fn_error_meaning(code).casefold() in state.device.last_error.casefold()


def fn_flag(state: RegisterState | None, flag: FnWarning) -> bool | None:
    """A 30h warning bit: from the raw byte, else from the decoded names; None when not read."""
    if state is None:
        return None
    if state.fn.warning_flags is not None:
        return bool(state.fn.warning_flags & flag)
    if state.fn.warnings:
        return flag.name in state.fn.warnings
    return None


def fn_memory_exhausted(state: RegisterState | None) -> bool:
    if state is None:
        return False
    return (
        state.fn.documents_left == 0
        or fn_reports_error(state, FN_ERROR_ARCHIVE_FULL)
        or fn_reports_error(state, _FN_ERROR_OFD_STORAGE_EXHAUSTED)
    )


# --- ladders -------------------------------------------------------------------------------------


def _by_age(age: timedelta, ladder: Sequence[tuple[Severity, str, timedelta]]) -> tuple[Severity, str, timedelta] | None:
    """The highest level whose limit the age has reached; ``ladder`` is listed highest first."""
    for level in ladder:
        if age >= level[2]:
            return level
    return None


def _by_time_left(
    left: timedelta, ladder: Sequence[tuple[Severity, str, timedelta]]
) -> tuple[Severity, str, timedelta] | None:
    """The highest level whose limit the time left has fallen to; ``ladder`` is listed highest first."""
    for level in ladder:
        if left <= level[2]:
            return level
    return None


def _levels(thr: Thresholds, prefix: str, *names: str) -> list[tuple[Severity, str, timedelta]]:
    """``_levels(thr, "shift", "blocked", "warning")`` → ``[(BLOCKED, "blocked", thr.shift_blocked), …]``."""
    return [(Severity.parse(name), name, getattr(thr, f"{prefix}_{name}")) for name in names]


def _crossed(level: tuple[Severity, str, timedelta]) -> dict[str, Any]:
    return {"threshold": level[1], "threshold_seconds": level[2].total_seconds()}


# --- the rules -----------------------------------------------------------------------------------


def agent_offline(inp: RuleInput, thr: Thresholds) -> Condition | None:
    """LWT or missed heartbeats: silence since the agent was last seen (or its last state arrived)."""
    if inp.agent_online is True and inp.agent_last_seen is None:
        return None
    seen = inp.agent_last_seen or inp.state_received_at
    if seen is None:
        if inp.agent_online is False:
            return Condition(
                rule=RuleId.AGENT_OFFLINE,
                severity=Severity.WARNING,
                message="Агент не на связи; время последней связи неизвестно",
                details={"silence_seconds": None, "agent_online": False},
            )
        return None
    silence = max(_aware_utc(inp.now) - _aware_utc(seen), _ZERO)
    level = _by_age(
        silence,
        _levels(thr, "agent_offline", "major", "warning"),
    )
    if level is None:
        return None
    return Condition(
        rule=RuleId.AGENT_OFFLINE,
        severity=level[0],
        message=f"Агент не на связи {format_duration(silence)}",
        details={
            "silence_seconds": silence.total_seconds(),
            "agent_online": inp.agent_online,
            "last_seen": _aware_utc(seen).isoformat(),
            **_crossed(level),
        },
    )


def register_unreachable(inp: RuleInput, thr: Thresholds) -> Condition | None:
    """The agent is up but its driver cannot talk to the register. Offline agents are ``agent_offline``."""
    if inp.agent_online is False or inp.link_up is not False or inp.link_down_since is None:
        return None
    down = max(_aware_utc(inp.now) - _aware_utc(inp.link_down_since), _ZERO)
    if down < thr.register_unreachable_major:
        return None
    return Condition(
        rule=RuleId.REGISTER_UNREACHABLE,
        severity=Severity.MAJOR,
        message=f"Агент на связи, но касса не отвечает {format_duration(down)}",
        details={
            "down_seconds": down.total_seconds(),
            "threshold": "major",
            "threshold_seconds": thr.register_unreachable_major.total_seconds(),
        },
    )


def _age_to_block(
    rule: RuleId,
    aged: tuple[timedelta, RegisterClock] | None,
    fn_blocked: bool,
    ladder: Sequence[tuple[Severity, str, timedelta]],
    limit: timedelta,
    now: datetime,
    *,
    what: str,
    blocked_text: str,
    details: dict[str, Any],
) -> Condition | None:
    """An age that blocks the register at ``limit``; ``fn_blocked`` = the ФН already refuses, age or not."""
    if aged is None:
        if not fn_blocked:
            return None
        return Condition(
            rule=rule,
            severity=Severity.BLOCKED,
            message=blocked_text,
            details={**details, "age_seconds": None, "threshold": "fn_reported"},
            blocks_at=now,  # already blocked; the moment it happened is unknown, so "not later than now"
        )
    age, clock = aged
    left = limit - age
    level = (Severity.BLOCKED, "fn_reported", limit) if fn_blocked else _by_age(age, ladder)
    if level is None:
        return None
    return Condition(
        rule=rule,
        severity=level[0],
        message=f"{what} {format_duration(age)}; {_countdown(left, 'блокировка')}",
        details={
            **details,
            "age_seconds": age.total_seconds(),
            "seconds_to_block": left.total_seconds(),
            "clock": clock.source,
            **_crossed(level),
        },
        blocks_at=now + (min(left, _ZERO) if fn_blocked else left),
    )


def ofd_backlog(inp: RuleInput, thr: Thresholds) -> Condition | None:
    """Age of the oldest document the OFD has not acknowledged; the ФН blocks at 30 days (error 15h)."""
    if inp.state is None:
        return None
    return _age_to_block(
        RuleId.OFD_BACKLOG,
        oldest_unsent_age(inp),
        fn_reports_error(inp.state, FN_ERROR_OFD_WAIT_EXHAUSTED),
        _levels(thr, "ofd_backlog", "blocked", "critical", "major", "warning"),
        thr.ofd_backlog_blocked,
        _aware_utc(inp.now),
        what="Старейший неотправленный документ —",
        blocked_text="ФН заблокирован: старейший неотправленный документ старше 30 дней (ошибка ФН 15h)",
        details={"unsent_count": inp.state.ofd.unsent_count, "first_unsent_at": _iso(inp.state.ofd.first_unsent_at)},
    )


def fn_validity(inp: RuleInput, thr: Thresholds) -> Condition | None:
    """ФН key validity; blocked once its valid-until day is over (or the ФН says so, error 05h)."""
    state = inp.state
    if state is None:
        return None
    now = _aware_utc(inp.now)
    if fn_reports_error(state, FN_ERROR_SERVICE_LIFE_ENDED):
        return Condition(
            rule=RuleId.FN_VALIDITY,
            severity=Severity.BLOCKED,
            message="Срок эксплуатации ФН закончился (ошибка ФН 05h)",
            details={"fn_error": FN_ERROR_SERVICE_LIFE_ENDED, "valid_until": _iso(state.fn.valid_until)},
            blocks_at=now,
        )
    timed = fn_time_left(inp)
    if timed is None:
        return _fn_validity_from_flags(state)
    left, clock = timed
    level = _by_time_left(
        left,
        [(Severity.BLOCKED, "blocked", _ZERO), *_levels(thr, "fn_validity", "critical", "major", "warning", "info")],
    )
    if level is None:
        return None
    assert state.fn.valid_until is not None
    until = _format_date(state.fn.valid_until)
    if left > _ZERO:
        message = f"ФН действует до {until}: осталось {format_duration(left)}"
    else:
        message = f"Срок ФН истёк ({until}) {format_duration(left)} назад"
    return Condition(
        rule=RuleId.FN_VALIDITY,
        severity=level[0],
        message=message,
        details={
            "valid_until": state.fn.valid_until.isoformat(),
            "seconds_left": left.total_seconds(),
            "clock": clock.source,
            **_crossed(level),
        },
        blocks_at=now + left,
    )


def _fn_validity_from_flags(state: RegisterState) -> Condition | None:
    # Without a date (or a clock) the ФН's own 30h bits still say ≤ 3 / ≤ 30 days are left.
    if fn_flag(state, FnWarning.URGENT_REPLACEMENT):
        severity, text = Severity.CRITICAL, "До окончания срока ФН не больше 3 дней (флаг ФН)"
    elif fn_flag(state, FnWarning.REPLACE_SOON):
        severity, text = Severity.WARNING, "До окончания срока ФН не больше 30 дней (флаг ФН)"
    else:
        return None
    return Condition(
        rule=RuleId.FN_VALIDITY,
        severity=severity,
        message=text,
        details={"valid_until": None, "source": "fn_warning_flags"},
    )


def fn_memory(inp: RuleInput, thr: Thresholds) -> Condition | None:
    """ФН archive ≥ 90 % (30h bit 2) → major; no documents left / archive full → blocked.

    The catalogue says "critical when exhausted"; an exhausted ФН already refuses fiscal documents,
    which is exactly what ``Severity.BLOCKED`` means, and time to block counts it as 0.
    """
    state = inp.state
    if state is None:
        return None
    if fn_memory_exhausted(state):
        return Condition(
            rule=RuleId.FN_MEMORY,
            severity=Severity.BLOCKED,
            message="Ресурс ФН исчерпан: ФН не может формировать документы",
            details={"documents_left": state.fn.documents_left, "threshold": "exhausted"},
            blocks_at=_aware_utc(inp.now),
        )
    if fn_flag(state, FnWarning.MEMORY_ALMOST_FULL):
        left = state.fn.documents_left
        suffix = f"; осталось документов: {left}" if left is not None else ""
        return Condition(
            rule=RuleId.FN_MEMORY,
            severity=Severity.MAJOR,
            message=f"Память ФН заполнена на 90 % и больше{suffix}",
            details={"documents_left": left, "threshold": "almost_full_flag"},
        )
    return None


def fn_critical(inp: RuleInput, thr: Thresholds) -> Condition | None:
    if not fn_flag(inp.state, FnWarning.CRITICAL_ERROR):
        return None
    return Condition(
        rule=RuleId.FN_CRITICAL,
        severity=Severity.CRITICAL,
        message="Критическая ошибка ФН (флаг в статусе ФН)",
        details={"warning_flags": inp.state.fn.warning_flags if inp.state else None},
    )


def fn_not_fiscal(inp: RuleInput, thr: Thresholds) -> Condition | None:
    state = inp.state
    if state is None:
        return None
    fiscal = state.fn.fiscal
    if fiscal is None and state.fn.phase is not None:
        fiscal = state.fn.phase == FnPhase.FISCAL
    if fiscal is None or fiscal:
        return None
    phase = state.fn.phase_name or (str(state.fn.phase) if state.fn.phase is not None else "неизвестна")
    return Condition(
        rule=RuleId.FN_NOT_FISCAL,
        severity=Severity.CRITICAL,
        message=f"ФН не в фискальном режиме (фаза: {phase})",
        details={"phase": state.fn.phase, "phase_name": state.fn.phase_name},
    )


def shift_too_long(inp: RuleInput, thr: Thresholds) -> Condition | None:
    """Shift length on the register clock; blocked past 24 h, or when the register/ФН says the shift
    expired (status EXPIRED, error 16h) even without an opening time. Closing the shift clears it."""
    state = inp.state
    if state is None:
        return None
    return _age_to_block(
        RuleId.SHIFT_TOO_LONG,
        shift_age(inp),
        state.shift.status is ShiftStatus.EXPIRED or fn_reports_error(state, FN_ERROR_SHIFT_OVER_24H),
        _levels(thr, "shift", "blocked", "critical", "warning"),
        thr.shift_blocked,
        _aware_utc(inp.now),
        what="Смена открыта",
        blocked_text="Смена открыта больше 24 ч: касса не пробивает чеки до закрытия смены",
        details={"shift_status": state.shift.status.value},
    )


def ofd_contract(inp: RuleInput, thr: Thresholds) -> Condition | None:
    """OFD service: never activated or paid period over → critical. No contract data → nothing."""
    contract = inp.contract
    if contract is None:
        return None
    if not contract.activated:
        return Condition(
            rule=RuleId.OFD_CONTRACT,
            severity=Severity.CRITICAL,
            message="Договор с ОФД не активирован: документы не передаются",
            details={"activated": False, "paid_until": _iso(contract.paid_until), "threshold": "not_activated"},
        )
    left = contract_time_left(inp)
    if left is None:
        return None
    assert contract.paid_until is not None
    level = _by_time_left(
        left,
        [(Severity.CRITICAL, "expired", _ZERO), *_levels(thr, "ofd_paid", "major", "warning")],
    )
    if level is None:
        return None
    until = _format_date(contract.paid_until)
    if left > _ZERO:
        message = f"Услуги ОФД оплачены до {until}: осталось {format_duration(left)}"
    else:
        message = f"Оплата услуг ОФД закончилась {until}"
    return Condition(
        rule=RuleId.OFD_CONTRACT,
        severity=level[0],
        message=message,
        details={"activated": True, "paid_until": contract.paid_until.isoformat(), "seconds_left": left.total_seconds(), **_crossed(level)},
        # No blocks_at: an unpaid OFD stops the transfer to the ФНС, not the register (issue 16 §1).
    )


def paper_out(inp: RuleInput, thr: Thresholds) -> Condition | None:
    if inp.state is None or inp.state.device.paper_present is not False:
        return None
    return Condition(rule=RuleId.PAPER_OUT, severity=Severity.WARNING, message="В кассе закончилась бумага", details={})


def cover_open(inp: RuleInput, thr: Thresholds) -> Condition | None:
    if inp.state is None or inp.state.device.cover_open is not True:
        return None
    return Condition(rule=RuleId.COVER_OPEN, severity=Severity.WARNING, message="Открыта крышка кассы", details={})


def clock_skew(inp: RuleInput, thr: Thresholds) -> Condition | None:
    """Register clock vs the collector's clock at the poll; the ФН rejects operations 5 min apart (17h).

    Not vs the agent's clock: a wrong agent clock is ``agent_clock``'s alert, not the register's.
    Needs the tenant zone to read the naive register clock; without it the offset is unknown.
    """
    state = inp.state
    polled = polled_at(inp)
    if state is None or state.register_clock is None or polled is None or inp.tz is None:
        return None
    true_local = _aware_utc(polled).astimezone(inp.tz).replace(tzinfo=None)
    skew = _naive(state.register_clock) - true_local
    level = _by_age(
        abs(skew),
        _levels(thr, "clock_skew", "major", "warning"),
    )
    if level is None:
        return None
    direction = "спешат" if skew > _ZERO else "отстают"
    return Condition(
        rule=RuleId.CLOCK_SKEW,
        severity=level[0],
        message=f"Часы кассы {direction} на {format_duration(skew)}",
        details={"skew_seconds": skew.total_seconds(), **_crossed(level)},
    )


def agent_clock(inp: RuleInput, thr: Thresholds) -> Condition | None:
    """The agent's computer clock is off. Its data are placed on the collector's clock regardless,
    but its logs, its outbox's age limit and the register-clock comparison on site all go wrong."""
    offset = inp.agent_clock_offset
    if offset is None or abs(offset) < thr.agent_clock_warning:
        return None
    direction = "спешат" if offset > _ZERO else "отстают"
    return Condition(
        rule=RuleId.AGENT_CLOCK,
        severity=Severity.WARNING,
        message=(
            f"Часы компьютера с агентом {direction} на {format_duration(offset)}: "
            "настройте синхронизацию времени (NTP) на этом компьютере"
        ),
        details={
            "offset_seconds": offset.total_seconds(),
            "threshold": "warning",
            "threshold_seconds": thr.agent_clock_warning.total_seconds(),
        },
    )


def kep_validity(
    valid_until: date | datetime, now: datetime, thr: Thresholds, tz: tzinfo | None = None
) -> Condition | None:
    """Account-level rule for a КЭП (qualified e-signature): warning 30 d, major 7 d and after expiry.

    ``valid_until`` is the certificate's notAfter (aware datetime) or a date, which lasts through its
    day in ``tz`` (UTC when unknown).
    """
    if now.utcoffset() is None:
        raise AlertInputError(f"kep_validity: now must be an aware datetime, got naive {now!r}")
    if isinstance(valid_until, datetime):
        if valid_until.utcoffset() is None:
            raise AlertInputError(f"kep_validity: valid_until datetime must be aware, got naive {valid_until!r}")
        end: datetime | None = valid_until
        shown = valid_until.astimezone(tz or UTC).date()
    else:
        naive_end = _end_of_day(valid_until)
        end = None if naive_end is None else naive_end.replace(tzinfo=tz or UTC)
        shown = valid_until
    if end is None:
        return None
    left = end - now
    level = _by_time_left(
        left,
        _levels(thr, "kep", "major", "warning"),
    )
    if level is None:
        return None
    if left > _ZERO:
        message = f"КЭП действует до {_format_date(shown)}: осталось {format_duration(left)}"
    else:
        message = f"Срок КЭП истёк {_format_date(shown)}"
    return Condition(
        rule=RuleId.KEP_VALIDITY,
        severity=level[0],
        message=message,
        details={"valid_until": valid_until.isoformat(), "seconds_left": left.total_seconds(), **_crossed(level)},
    )


def _iso(value: date | datetime | None) -> str | None:
    return None if value is None else value.isoformat()


# Register-level rules in catalogue order (kep_validity is account-level and takes other inputs).
REGISTER_RULES: dict[RuleId, Rule] = {
    RuleId.AGENT_OFFLINE: agent_offline,
    RuleId.REGISTER_UNREACHABLE: register_unreachable,
    RuleId.OFD_BACKLOG: ofd_backlog,
    RuleId.FN_VALIDITY: fn_validity,
    RuleId.FN_MEMORY: fn_memory,
    RuleId.FN_CRITICAL: fn_critical,
    RuleId.FN_NOT_FISCAL: fn_not_fiscal,
    RuleId.SHIFT_TOO_LONG: shift_too_long,
    RuleId.OFD_CONTRACT: ofd_contract,
    RuleId.PAPER_OUT: paper_out,
    RuleId.COVER_OPEN: cover_open,
    RuleId.CLOCK_SKEW: clock_skew,
    RuleId.AGENT_CLOCK: agent_clock,
}


def evaluate_all(inp: RuleInput, thresholds: Thresholds) -> list[Condition]:
    """Every register rule that currently holds, in catalogue order."""
    found = (rule(inp, thresholds) for rule in REGISTER_RULES.values())
    return [condition for condition in found if condition is not None]
