"""OFD family: the oldest unacknowledged document ages towards the 30-day block; the service contract."""

from __future__ import annotations

from collector.alerts.rules.clocks import ZERO, aware_utc, contract_time_left, oldest_unsent_age
from collector.alerts.rules.fn_status import fn_reports_error
from collector.alerts.rules.inputs import Condition, RuleInput
from collector.alerts.rules.ladders import age_to_block, by_time_left, crossed, levels
from collector.alerts.rules.ofd_cause import diagnose
from collector.alerts.rules.text import format_date, format_duration, iso
from collector.alerts.severity import RuleId, Severity
from collector.alerts.thresholds import Thresholds
from protocol.kkt.fn import FN_ERROR_OFD_WAIT_EXHAUSTED


def ofd_backlog(inp: RuleInput, thr: Thresholds) -> Condition | None:
    """Age of the oldest document the OFD has not acknowledged; the ФН blocks at 30 days (error 15h)."""
    if inp.state is None:
        return None
    cause = diagnose(inp)
    return age_to_block(
        RuleId.OFD_BACKLOG,
        oldest_unsent_age(inp),
        fn_reports_error(inp.state, FN_ERROR_OFD_WAIT_EXHAUSTED),
        levels(thr, "ofd_backlog", "blocked", "critical", "major", "warning"),
        thr.ofd_backlog_blocked,
        aware_utc(inp.now),
        what="Старейший неотправленный документ —",
        blocked_text="ФН заблокирован: старейший неотправленный документ старше 30 дней (ошибка ФН 15h)",
        details={
            "unsent_count": inp.state.ofd.unsent_count,
            "first_unsent_at": iso(inp.state.ofd.first_unsent_at),
            # Why (issue 10 §2): the fix names the cause and what to do about it.
            **({} if cause is None else {"cause": cause.cause, "cause_text": cause.text, "cause_fix": cause.fix}),
        },
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
            details={"activated": False, "paid_until": iso(contract.paid_until), "threshold": "not_activated"},
        )
    left = contract_time_left(inp)
    if left is None:
        return None
    assert contract.paid_until is not None
    level = by_time_left(
        left,
        [(Severity.CRITICAL, "expired", ZERO), *levels(thr, "ofd_paid", "major", "warning")],
    )
    if level is None:
        return None
    until = format_date(contract.paid_until)
    if left > ZERO:
        message = f"Услуги ОФД оплачены до {until}: осталось {format_duration(left)}"
    else:
        message = f"Оплата услуг ОФД закончилась {until}"
    return Condition(
        rule=RuleId.OFD_CONTRACT,
        severity=level[0],
        message=message,
        details={"activated": True, "paid_until": contract.paid_until.isoformat(), "seconds_left": left.total_seconds(), **crossed(level)},
        # No blocks_at: an unpaid OFD stops the transfer to the ФНС, not the register (issue 16 §1).
    )
