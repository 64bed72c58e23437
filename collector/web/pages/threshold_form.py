"""The alert thresholds as a form: one field per threshold in its natural unit (minutes, hours or
days), empty = the default. Turns the form into the overrides ``company.set_alert_thresholds`` takes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import TypeAdapter, ValidationError

from collector.alerts.thresholds import Thresholds

_UNITS = {"мин": timedelta(minutes=1), "ч": timedelta(hours=1), "дн.": timedelta(days=1)}
_DURATION = TypeAdapter(timedelta)

# name → (what it is, unit); the order is the form's.
THRESHOLD_FIELDS: dict[str, tuple[str, str]] = {
    "agent_offline_warning": ("Агент не на связи: предупреждение через", "мин"),
    "agent_offline_major": ("Агент не на связи: важно через", "мин"),
    "register_unreachable_major": ("Касса не отвечает: важно через", "мин"),
    "ofd_backlog_warning": ("Не передано в ОФД: предупреждение, возраст документа", "ч"),
    "ofd_backlog_major": ("Не передано в ОФД: важно", "ч"),
    "ofd_backlog_critical": ("Не передано в ОФД: критично", "дн."),
    "ofd_backlog_blocked": ("Не передано в ОФД: блокировка (правило 30 дней)", "дн."),
    "fn_validity_info": ("Срок ФН: информация, осталось", "дн."),
    "fn_validity_warning": ("Срок ФН: предупреждение", "дн."),
    "fn_validity_major": ("Срок ФН: важно", "дн."),
    "fn_validity_critical": ("Срок ФН: критично", "дн."),
    "shift_warning": ("Смена открыта: предупреждение через", "ч"),
    "shift_critical": ("Смена открыта: критично", "ч"),
    "shift_blocked": ("Смена открыта: блокировка (правило 24 часов)", "ч"),
    "ofd_paid_warning": ("Оплата ОФД: предупреждение, осталось", "дн."),
    "ofd_paid_major": ("Оплата ОФД: важно", "дн."),
    "clock_skew_warning": ("Часы расходятся: предупреждение от", "мин"),
    "clock_skew_major": ("Часы расходятся: важно", "мин"),
    "agent_clock_warning": ("Часы компьютера с агентом: предупреждение от", "мин"),
    "kep_warning": ("Срок КЭП: предупреждение, осталось", "дн."),
    "kep_major": ("Срок КЭП: важно", "дн."),
}


@dataclass(frozen=True, slots=True)
class ThresholdRow:
    name: str
    title: str
    unit: str
    default: str
    value: str  # the company's override in the unit, "" when it uses the default


def _in_unit(value: timedelta, unit: str) -> str:
    amount = value / _UNITS[unit]
    return f"{amount:g}".replace(".", ",")


def threshold_rows(overrides: Mapping[str, Any], base: Thresholds) -> list[ThresholdRow]:
    rows = []
    for name, (title, unit) in THRESHOLD_FIELDS.items():
        override = overrides.get(name)
        try:
            shown = "" if override is None else _in_unit(_DURATION.validate_python(override), unit)
        except ValidationError:
            shown = str(override)
        rows.append(ThresholdRow(name, title, unit, _in_unit(getattr(base, name), unit), shown))
    return rows


def overrides_from_form(fields: Mapping[str, str], previous: Mapping[str, Any]) -> dict[str, Any]:
    """Filled fields become overrides in seconds; ``ValueError`` names a field that is not a number.
    Overrides the form does not show (``pending``) are kept as they were."""
    overrides: dict[str, Any] = {key: value for key, value in previous.items() if key not in THRESHOLD_FIELDS}
    for name, (title, unit) in THRESHOLD_FIELDS.items():
        text = fields.get(f"thr_{name}", "").strip().replace(",", ".")
        if not text:
            continue
        try:
            amount = float(text)
        except ValueError:
            raise ValueError(f"«{title}»: нужно число ({unit}), например 4 или 1,5") from None
        if not amount > 0 or amount != amount or amount == float("inf"):
            raise ValueError(f"«{title}»: нужно положительное число")
        overrides[name] = round((_UNITS[unit] * amount).total_seconds())
    return overrides
