"""How rule messages write durations and dates (Russian)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from collector.alerts.rules.clocks import ZERO


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


def format_hours(value: timedelta) -> str:
    """Shift lengths read in hours, as a cashier counts them: ``"25 ч"``, ``"24 ч 56 мин"``; days from 72 h.

    Minutes stay past 24 h: beside «блокировка 56 мин назад» a bare «24 ч» reads as a contradiction."""
    hours, rest = divmod(int(value.total_seconds()), 3600)
    if hours >= 72:
        return format_duration(value)
    minutes = rest // 60
    return f"{hours} ч {minutes} мин" if minutes else f"{hours} ч"


def format_date(value: date) -> str:
    return value.strftime("%d.%m.%Y")


def countdown(left: timedelta, what: str) -> str:
    """``"блокировка через 9 дн. 21 ч"`` or, once past, ``"блокировка 2 дн. назад"``."""
    if left > ZERO:
        return f"{what} через {format_duration(left)}"
    if left == ZERO:
        return f"{what} сейчас"
    return f"{what} {format_duration(left)} назад"


def iso(value: date | datetime | None) -> str | None:
    return None if value is None else value.isoformat()
