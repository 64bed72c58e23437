"""Shift family: a shift open towards the 24-hour block."""

from __future__ import annotations

from collector.alerts.rules.clocks import aware_utc, shift_age
from collector.alerts.rules.fn_status import fn_reports_error
from collector.alerts.rules.inputs import Condition, RuleInput
from collector.alerts.rules.ladders import age_to_block, levels
from collector.alerts.rules.text import format_hours
from collector.alerts.severity import RuleId
from collector.alerts.thresholds import Thresholds
from protocol.kkt.fn import FN_ERROR_SHIFT_OVER_24H
from protocol.kkt.state import ShiftStatus


def shift_too_long(inp: RuleInput, thr: Thresholds) -> Condition | None:
    """Shift length on the register clock; blocked past 24 h, or when the register/ФН says the shift
    expired (status EXPIRED, error 16h) even without an opening time. Closing the shift clears it."""
    state = inp.state
    if state is None:
        return None
    return age_to_block(
        RuleId.SHIFT_TOO_LONG,
        shift_age(inp),
        state.shift.status is ShiftStatus.EXPIRED or fn_reports_error(state, FN_ERROR_SHIFT_OVER_24H),
        levels(thr, "shift", "blocked", "critical", "warning"),
        thr.shift_blocked,
        aware_utc(inp.now),
        what="Смена открыта",
        blocked_text="Смена открыта больше 24 ч: касса не пробивает чеки до закрытия смены",
        details={"shift_status": state.shift.status.value},
        age_text=format_hours,  # «Смена открыта 25 ч», as the «Продажи» column says, not «1 дн. 1 ч»
    )
