"""ФН family: key validity, archive memory, critical error, fiscal mode."""

from __future__ import annotations

from typing import TYPE_CHECKING

from collector.alerts.rules.clocks import ZERO, aware_utc, fn_time_left
from collector.alerts.rules.fn_status import fn_flag, fn_memory_exhausted, fn_reports_error
from collector.alerts.rules.inputs import Condition, RuleInput
from collector.alerts.rules.ladders import by_time_left, crossed, levels
from collector.alerts.rules.text import format_date, format_duration, iso
from collector.alerts.severity import RuleId, Severity
from collector.alerts.thresholds import Thresholds
from protocol.kkt.fn import FN_ERROR_SERVICE_LIFE_ENDED, FnPhase, FnWarning

if TYPE_CHECKING:
    from protocol.kkt.vocabulary import AnyRegisterState as RegisterState


def fn_validity(inp: RuleInput, thr: Thresholds) -> Condition | None:
    """ФН key validity; blocked once its valid-until day is over (or the ФН says so, error 05h)."""
    state = inp.state
    if state is None:
        return None
    now = aware_utc(inp.now)
    if fn_reports_error(state, FN_ERROR_SERVICE_LIFE_ENDED):
        return Condition(
            rule=RuleId.FN_VALIDITY,
            severity=Severity.BLOCKED,
            message="Срок эксплуатации ФН закончился (ошибка ФН 05h)",
            details={"fn_error": FN_ERROR_SERVICE_LIFE_ENDED, "valid_until": iso(state.fn.valid_until)},
            blocks_at=now,
        )
    timed = fn_time_left(inp)
    if timed is None:
        return _fn_validity_from_flags(state)
    left, clock = timed
    level = by_time_left(
        left,
        [(Severity.BLOCKED, "blocked", ZERO), *levels(thr, "fn_validity", "critical", "major", "warning", "info")],
    )
    if level is None:
        return None
    assert state.fn.valid_until is not None
    until = format_date(state.fn.valid_until)
    if left > ZERO:
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
            **crossed(level),
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
            blocks_at=aware_utc(inp.now),
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
