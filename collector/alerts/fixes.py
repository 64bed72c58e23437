"""What to do — one plain-Russian fix per rule, for the person who has to act (issue 16 §2).

Each entry reads the condition's ``details`` (the numbers the rule stored: dates, ages) and fills
them in; with no details (a dashboard counter, an old alert) it still says what to do, generically.
Every ``RuleId`` has an entry, as do the verdict's own causes (``FN_REFUSAL``, ``NO_DATA``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from typing import Any

from collector.alerts.rules import format_duration
from collector.alerts.severity import RuleId
from collector.alerts.verdict import FN_REFUSAL, NO_DATA

Details = Mapping[str, Any]

_REREGISTER = "после замены — перерегистрация кассы в ФНС (нужна КЭП руководителя)"
_SERVICE = "обратитесь в сервисный центр, обслуживающий кассу"


def _date(value: Any, fmt: str = "%d.%m.%Y") -> str | None:
    """An ISO date or datetime from the details as «15.12.2026»; None when absent or unreadable."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value)) if "T" in str(value) else date.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed.strftime(fmt)


def _seconds(details: Details, key: str) -> float | None:
    value = details.get(key)
    return float(value) if isinstance(value, int | float) else None


def _agent_offline(details: Details) -> str:
    since = _date(details.get("last_seen"), "%d.%m %H:%M UTC")
    tail = f" (нет связи с {since})" if since else ""
    return (
        "Проверьте в магазине компьютер с агентом: он должен быть включён и подключён к интернету"
        f"{tail}. Пока агент не на связи, о кассе ничего не известно."
    )


def _register_unreachable(details: Details) -> str:
    return (
        "Проверьте кассу: она должна быть включена, а кабель (USB, COM) или сеть между кассой "
        "и компьютером с агентом — подключены. Если касса работает, перезапустите агент."
    )


def _ofd_backlog(details: Details) -> str:
    cause, cause_fix = details.get("cause_text"), details.get("cause_fix")
    if cause and cause_fix:  # the OFD diagnosis told why (collector.alerts.rules.ofd_cause)
        return f"Причина: {cause}. {cause_fix}"
    since = _date(details.get("first_unsent_at"))
    left = _seconds(details, "seconds_to_block")
    if details.get("threshold") in ("blocked", "fn_reported") or (left is not None and left <= 0):
        return (
            "Восстановите связь кассы с ОФД и дождитесь передачи документов: ФН разблокируется, "
            "когда ОФД их примет. Проверьте интернет в магазине, настройки ОФД на кассе и оплату ОФД."
        )
    since_text = f" с {since}" if since else ""
    deadline = f" Через {format_duration(timedelta(seconds=left))} ФН заблокирует кассу." if left else ""
    return (
        f"Проверьте интернет в магазине: касса не может передать документы в ОФД{since_text}. "
        f"Если интернет есть — проверьте адрес ОФД в настройках кассы и оплату ОФД.{deadline}"
    )


def _deadline(details: Details, date_key: str) -> tuple[str | None, bool]:
    """The deadline's date as text and whether it has passed (``seconds_left`` ≤ 0)."""
    left = _seconds(details, "seconds_left")
    return _date(details.get(date_key)), left is not None and left <= 0


def _fn_validity(details: Details) -> str:
    until, passed = _deadline(details, "valid_until")
    if details.get("fn_error") is not None or passed:
        expired = f" (срок истёк {until})" if until else ""
        return f"Замените ФН{expired}: касса не может пробивать чеки; {_REREGISTER}."
    by = f" до {until}" if until else " в ближайшие дни"
    return f"Замените ФН{by}: закажите новый ФН заранее, {_REREGISTER}."


def _fn_memory(details: Details) -> str:
    if details.get("threshold") == "exhausted":
        return f"Замените ФН: его память исчерпана, касса не может пробивать чеки; {_REREGISTER}."
    left = details.get("documents_left")
    tail = f" (осталось документов: {left})" if left is not None else ""
    return f"Закажите новый ФН: память ФН почти заполнена{tail}; {_REREGISTER}."


def _fn_critical(details: Details) -> str:
    return f"ФН сообщает о критической ошибке: {_SERVICE}; возможно, ФН придётся заменить."


def _fn_not_fiscal(details: Details) -> str:
    return (
        "Зарегистрируйте кассу в ФНС (фискализация, нужна КЭП руководителя). Если ФН только что "
        "заменили — завершите перерегистрацию кассы."
    )


def _shift_too_long(details: Details) -> str:
    if details.get("threshold") in ("blocked", "fn_reported"):
        return "Закройте смену (Z-отчёт) на кассе и откройте новую: до этого касса не пробивает чеки."
    left = _seconds(details, "seconds_to_block")
    tail = f" — до блокировки {format_duration(timedelta(seconds=left))}" if left and left > 0 else ""
    return f"Закройте смену (Z-отчёт) на кассе{tail}."


def _ofd_contract(details: Details) -> str:
    if details.get("activated") is False:
        return (
            "Активируйте договор с ОФД (в личном кабинете ОФД) и укажите ОФД в настройках кассы: "
            "пока он не активирован, документы не уходят в ФНС."
        )
    until, passed = _deadline(details, "paid_until")
    if passed:
        ended = f" (оплата закончилась {until})" if until else ""
        return (
            f"Оплатите услуги ОФД{ended}: касса продаёт, но документы не уходят в ФНС, "
            "а через 30 дней без передачи ФН заблокирует кассу."
        )
    by = f" до {until}" if until else ""
    return f"Оплатите услуги ОФД{by}, чтобы документы и дальше уходили в ФНС."


def _paper_out(details: Details) -> str:
    return "Вставьте в кассу новый рулон чековой ленты."


def _cover_open(details: Details) -> str:
    return "Закройте крышку кассы (отсек с чековой лентой)."


def _clock_skew(details: Details) -> str:
    skew = _seconds(details, "skew_seconds")
    by = f" на {format_duration(timedelta(seconds=skew))}" if skew else ""
    return f"Поправьте часы кассы (они расходятся{by}) при закрытой смене: ФН не примет операции при расхождении больше 5 мин."


def _agent_clock(details: Details) -> str:
    offset = _seconds(details, "offset_seconds")
    direction = "спешат" if offset and offset > 0 else "отстают"
    by = f" {direction} на {format_duration(timedelta(seconds=abs(offset)))}" if offset else " неверны"
    return (
        f"Включите синхронизацию времени (NTP) на компьютере с агентом: его часы{by}. "
        "Данные кассы это не искажает, но журналы агента и сверка часов кассы на месте неверны."
    )


def _kep_validity(details: Details) -> str:
    until, passed = _deadline(details, "valid_until")
    if passed:
        return "Получите новую КЭП руководителя (в ФНС или у её доверенного лица): без неё нельзя перерегистрировать кассу."
    by = f" до {until}" if until else ""
    return f"Получите новую КЭП руководителя{by} (в ФНС или у её доверенного лица): она нужна для замены ФН и регистрации касс."


def _fn_refusal(details: Details) -> str:
    return f"ФН отказывается выполнять команды: {_SERVICE}."


def _no_data(details: Details) -> str:
    return (
        "Проверьте в магазине компьютер с агентом и его связь с кассой: пока данных нет, "
        "нельзя сказать, может ли касса продавать."
    )


FIXES: dict[str, Callable[[Details], str]] = {
    RuleId.AGENT_OFFLINE: _agent_offline,
    RuleId.REGISTER_UNREACHABLE: _register_unreachable,
    RuleId.OFD_BACKLOG: _ofd_backlog,
    RuleId.FN_VALIDITY: _fn_validity,
    RuleId.FN_MEMORY: _fn_memory,
    RuleId.FN_CRITICAL: _fn_critical,
    RuleId.FN_NOT_FISCAL: _fn_not_fiscal,
    RuleId.SHIFT_TOO_LONG: _shift_too_long,
    RuleId.OFD_CONTRACT: _ofd_contract,
    RuleId.PAPER_OUT: _paper_out,
    RuleId.COVER_OPEN: _cover_open,
    RuleId.CLOCK_SKEW: _clock_skew,
    RuleId.AGENT_CLOCK: _agent_clock,
    RuleId.KEP_VALIDITY: _kep_validity,
    FN_REFUSAL: _fn_refusal,
    NO_DATA: _no_data,
}


def fix_text(cause: str | None, details: Details | None = None) -> str | None:
    """The fix for a rule or verdict cause, numbers filled in from ``details``; None for no cause."""
    if cause is None:
        return None
    make = FIXES.get(str(cause))
    # A rule without an entry fails tests/collector/test_fixes.py; a page must still render meanwhile.
    return None if make is None else make(details or {})
