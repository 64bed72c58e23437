"""Can the register sell now, and if not why; when will it stop, and why — defined once (issue 16 §1).

A register **cannot sell now** when a condition already blocks it (severity ``BLOCKED``: shift over
24 h, ФН expired, ФН memory exhausted, the 30-day rule fired), when it is not fiscalised, or when
its ФН refuses fiscal documents with an error no rule explains (ФН failure, КС error or resource,
times of two operations too far apart). Otherwise it **will stop at** the earliest
of the ``time_to_block`` candidates whose rule currently raises a condition (a ФН ending in two
years, or a shift opened an hour ago, is no threat yet). A register that never reported, or whose
data is older than the agent-offline threshold, is **unknown** — never "no threat".

An unpaid or never-activated OFD contract is its own kind (``OfdNote``): it stops the transfer of
documents to the ФНС, and then the 30-day clock runs; it does not stop the register by itself.

``Verdict`` is stored as JSON beside the latest state; its ``rank`` is what lists sort on first.
The texts are rendered at read time from the stored instants, so they never go stale.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict

from collector.alerts.rules import Condition, RuleInput, contract_time_left, format_duration, format_hours
from collector.alerts.severity import RuleId, Severity
from collector.alerts.thresholds import Thresholds
from collector.alerts.time_to_block import block_candidates
from protocol.kkt.fn import fn_error_meaning

FN_REFUSAL = "fn_refusal"  # a cause that is no rule: the ФН refuses with a code no rule explains
NO_DATA = "no_data"  # the cause of UNKNOWN

_ZERO = timedelta(0)
# ФН result codes that refuse fiscal documents and that no rule turns into a cause of its own
# (ФН failure, КС error, КС resource exhausted, two operations over 5 min apart). Others a poll can
# meet are harmless there ("нет запрошенных данных") or explained by a rule (05h, 06h, 14h–16h).
_REFUSING_FN_ERRORS = frozenset({0x03, 0x04, 0x12, 0x17})
# When several causes block at once, the one shown first: what a cashier cannot fix comes first,
# because closing the shift will not help a register whose ФН has expired.
_NOW_ORDER: tuple[str, ...] = (
    RuleId.FN_NOT_FISCAL,
    RuleId.FN_VALIDITY,
    RuleId.FN_MEMORY,
    RuleId.OFD_BACKLOG,
    FN_REFUSAL,
    RuleId.SHIFT_TOO_LONG,
)


class SellStatus(StrEnum):
    CANNOT_SELL = "cannot_sell"
    UNKNOWN = "unknown"
    WILL_STOP = "will_stop"
    NO_THREAT = "no_threat"

    @property
    def title_ru(self) -> str:
        return _STATUS_TITLES[self]


_STATUS_TITLES = {
    SellStatus.CANNOT_SELL: "не может продавать",
    SellStatus.UNKNOWN: "нет данных",
    SellStatus.WILL_STOP: "остановится",
    SellStatus.NO_THREAT: "не грозит",
}


class OfdNote(BaseModel):
    """The OFD contract as its own kind of problem: transfer to the ФНС, not selling."""

    model_config = ConfigDict(frozen=True)

    activated: bool
    paid_until: date | None = None
    zone: str | None = None  # the company's zone, whose day the paid-until date lasts through (UTC if unknown)
    over: bool = False  # the paid period is over, by the ``ofd_contract`` rule's own clock

    @property
    def problem(self) -> bool:
        """Documents do not reach the ФНС: never activated, or the paid period is over."""
        return not self.activated or self.over


class Verdict(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: SellStatus
    cause: str | None = None  # a RuleId value, FN_REFUSAL or NO_DATA; None when nothing threatens
    at: datetime | None = None  # CANNOT_SELL: since when (None: unknown); WILL_STOP: when it stops
    started_at: datetime | None = None  # when the age behind ``cause`` began (shift opened, oldest unsent)
    reasons: tuple[str, ...] = ()  # every reason it cannot sell now, ``cause`` first
    details: dict[str, Any] = {}  # the cause's condition details: the numbers the fix text needs
    ofd: OfdNote | None = None
    # Read only when UNKNOWN (``sell_text``): a stored verdict of another status is not rewritten
    # for it alone (collector/ingest/engine/write_back.py), so there it may be older than the data.
    last_data_at: datetime | None = None

    @property
    def ofd_problem(self) -> bool:
        return self.ofd is not None and self.ofd.problem

    @property
    def least_severity(self) -> Severity | None:
        """The severity a register with this verdict shows at least, so severity and cause never
        disagree (e.g. while a blocking alert waits out its flapping guard). A register that cannot
        sell is «заблокирована» whatever the reason, a ФН not yet fiscalised included: counts by
        severity and counts of registers that cannot sell must never tell two stories."""
        return Severity.BLOCKED if self.status is SellStatus.CANNOT_SELL else None

    @property
    def rank(self) -> int:
        """Lists sort on this first, then on ``at``: cannot sell, unknown, the rest with a problem
        (a stop ahead, an OFD contract never activated or expired), then no threat."""
        if self.status is SellStatus.CANNOT_SELL:
            return 0
        if self.status is SellStatus.UNKNOWN:
            return 1
        if self.status is SellStatus.WILL_STOP or self.ofd_problem:
            return 2
        return 3


UNKNOWN_RANK = 1  # a register with no stored verdict (never reported) sorts with the unknown


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.utcoffset() is None else value.astimezone(UTC)


def _ofd_note(inp: RuleInput) -> OfdNote | None:
    if inp.contract is None:
        return None
    zone = getattr(inp.tz, "key", None)  # a ZoneInfo's name; the rules read the same zone
    left = contract_time_left(inp)
    over = left is not None and left <= _ZERO
    return OfdNote(activated=inp.contract.activated, paid_until=inp.contract.paid_until, zone=zone, over=over)


def _unexplained_fn_errors(inp: RuleInput) -> list[int]:
    if inp.state is None:
        return []
    return [code for code in inp.state.device.fn_errors if code in _REFUSING_FN_ERRORS]


def sell_verdict(inp: RuleInput, thresholds: Thresholds, conditions: Iterable[Condition]) -> Verdict:
    """The verdict for one register from its rule input and the conditions ``evaluate_all`` found.

    Unknown keeps, from the last data, the stop it projected (``at``, so unknown registers still
    sort by it) and what that data said (``details["last_known"]``), never a status of its own."""
    found = {condition.rule.value: condition for condition in conditions}
    last = inp.state_received_at or inp.agent_last_seen
    last_utc = None if last is None else _utc(last)
    if inp.state is None or last_utc is None:
        return Verdict(status=SellStatus.UNKNOWN, cause=NO_DATA, ofd=_ofd_note(inp), last_data_at=last_utc)
    known = _known_verdict(inp, thresholds, found, last_utc)
    if _utc(inp.now) - last_utc <= thresholds.agent_offline_warning:
        return known
    return Verdict(
        status=SellStatus.UNKNOWN,
        cause=NO_DATA,
        at=known.at,
        details={"last_known": known.status.value, "last_cause": known.cause},
        ofd=known.ofd,
        last_data_at=last_utc,
    )


def _known_verdict(inp: RuleInput, thresholds: Thresholds, found: dict[str, Condition], last_utc: datetime) -> Verdict:
    now = _utc(inp.now)
    ofd = _ofd_note(inp)
    now_reasons: dict[str, Condition | None] = {
        rule: condition
        for rule, condition in found.items()
        if condition.severity is Severity.BLOCKED or rule == RuleId.FN_NOT_FISCAL
    }
    refused = _unexplained_fn_errors(inp)
    if refused:
        now_reasons[FN_REFUSAL] = None
    candidates = {item.cause.value: item for item in block_candidates(inp, thresholds)}
    if now_reasons:
        ordered = sorted(now_reasons, key=lambda rule: _NOW_ORDER.index(rule) if rule in _NOW_ORDER else len(_NOW_ORDER))
        cause = ordered[0]
        condition = now_reasons[cause]
        candidate = candidates.get(cause)
        details = dict(condition.details) if condition is not None else {"fn_errors": refused}
        return Verdict(
            status=SellStatus.CANNOT_SELL,
            cause=cause,
            at=candidate.blocks_at if candidate is not None and candidate.seconds <= 0 else None,
            started_at=_started_at(now, details),
            reasons=tuple(ordered),
            details=details,
            ofd=ofd,
            last_data_at=last_utc,
        )
    threatening = [item for rule, item in candidates.items() if rule in found]
    if not threatening:
        return Verdict(status=SellStatus.NO_THREAT, ofd=ofd, last_data_at=last_utc)
    stop = min(threatening, key=lambda item: item.blocks_at)
    details = dict(found[stop.cause.value].details)
    return Verdict(
        status=SellStatus.WILL_STOP,
        cause=stop.cause.value,
        at=stop.blocks_at,
        started_at=_started_at(now, details),
        details=details,
        ofd=ofd,
        last_data_at=last_utc,
    )


def _started_at(now: datetime, details: dict[str, Any]) -> datetime | None:
    age = details.get("age_seconds")
    return None if not isinstance(age, int | float) else now - timedelta(seconds=age)


# --- wording (Russian, in the right tense) -----------------------------------------------------


def plural(number: int, one: str, few: str, many: str) -> str:
    """``plural(3, "день", "дня", "дней")`` → ``"3 дня"``."""
    tail = abs(number) % 100
    if 11 <= tail <= 14:
        word = many
    elif tail % 10 == 1:
        word = one
    elif 2 <= tail % 10 <= 4:
        word = few
    else:
        word = many
    return f"{number} {word}"


def _ru_date(value: Any) -> str:
    try:
        return (value if isinstance(value, date) else date.fromisoformat(str(value)[:10])).strftime("%d.%m.%Y")
    except ValueError:
        return str(value)


def _now_phrase(verdict: Verdict, now: datetime) -> str:
    cause, details = verdict.cause, verdict.details
    if cause == RuleId.SHIFT_TOO_LONG:
        if verdict.started_at is not None:
            return f"смена открыта {format_hours(now - verdict.started_at)}"
        return "смена открыта больше 24 ч"
    if cause == RuleId.FN_VALIDITY:
        until = details.get("valid_until")
        return f"срок ФН истёк ({_ru_date(until)})" if until else "срок ФН истёк"
    if cause == RuleId.FN_MEMORY:
        return "память ФН исчерпана"
    if cause == RuleId.OFD_BACKLOG:
        return "документы не переданы в ОФД за 30 дней, ФН заблокирован"
    if cause == RuleId.FN_NOT_FISCAL:
        return "касса не зарегистрирована в ФНС (ФН не в фискальном режиме)"
    if cause == FN_REFUSAL:
        codes = details.get("fn_errors") or []
        return "ФН отказывает: " + "; ".join(fn_error_meaning(int(code)) for code in codes)
    return str(cause)


_STOP_PHRASES = {
    RuleId.SHIFT_TOO_LONG.value: "закончатся 24 ч смены",
    RuleId.FN_VALIDITY.value: "истекает ФН",
    RuleId.FN_MEMORY.value: "заканчивается память ФН",
    RuleId.OFD_BACKLOG.value: "30 дней без передачи документов в ОФД",
    RuleId.OFD_CONTRACT.value: "30 дней без передачи в ОФД после окончания оплаты ОФД",
}


def sell_text(verdict: Verdict, now: datetime) -> str:
    """The one-line answer for lists: «Сейчас не может продавать: смена открыта 25 ч»,
    «через 9 дн. 3 ч: истекает ФН», «Не грозит», «Нет данных …»."""
    now = _utc(now)
    if verdict.status is SellStatus.CANNOT_SELL:
        return f"Сейчас не может продавать: {_now_phrase(verdict, now)}"
    if verdict.status is SellStatus.UNKNOWN:
        if verdict.last_data_at is None:
            return "Нет данных: касса ещё ни разу не передавала состояние"
        text = f"Нет свежих данных: последние получены {format_duration(now - verdict.last_data_at)} назад"
        if verdict.details.get("last_known") == SellStatus.CANNOT_SELL:
            text += "; тогда касса не могла продавать"
        return text
    if verdict.status is SellStatus.WILL_STOP and verdict.at is not None:
        phrase = _STOP_PHRASES.get(str(verdict.cause), str(verdict.cause))
        left = verdict.at - now
        return f"через {format_duration(left)}: {phrase}" if left > _ZERO else f"сейчас: {phrase}"
    return "Не грозит"


def ofd_text(note: OfdNote | None, now: datetime) -> str | None:
    """«оплата ОФД до 11.12.2026» / «оплата ОФД закончилась 3 дня назад» / not activated; None without data.
    The paid day lasts to its end in the company's zone, as for the ``ofd_contract`` rule."""
    if note is None:
        return None
    if not note.activated:
        return "договор с ОФД не активирован: документы не передаются в ФНС"
    if note.paid_until is None:
        return None
    if not note.over:
        return f"оплата ОФД до {_ru_date(note.paid_until)}"
    today = _utc(now).astimezone(ZoneInfo(note.zone) if note.zone else UTC).date()
    days = max((today - note.paid_until).days, 1)  # over since the end of that day
    ended = plural(days, "день", "дня", "дней")
    return f"оплата ОФД закончилась {ended} назад ({_ru_date(note.paid_until)}): документы не уходят в ФНС"


OFD_CONSEQUENCE = (
    "Пока ОФД не оплачен или не активирован, касса продаёт, но документы не уходят в ФНС; "
    "через 30 дней без передачи ФН заблокирует кассу."
)
