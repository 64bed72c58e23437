"""Every rule says what to do, in Russian, with the register's numbers filled in (issue 16 §2)."""

import re
from datetime import UTC, date, datetime, timedelta

import pytest

from collector.alerts import FIXES, OfdContract, RuleId, RuleInput, Thresholds, evaluate_all, fix_text
from collector.alerts.verdict import FN_REFUSAL, NO_DATA
from protocol.kkt.state import FnState, OfdState, RegisterState, ShiftState, ShiftStatus, Vendor

THR = Thresholds()
READ_AT = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
CLOCK = datetime(2026, 11, 27, 12, 0)


def test_every_rule_and_verdict_cause_has_a_fix() -> None:
    assert set(FIXES) == {*(rule.value for rule in RuleId), FN_REFUSAL, NO_DATA}


@pytest.mark.parametrize("cause", sorted(FIXES))
def test_every_fix_is_russian_even_without_details(cause: str) -> None:
    text = fix_text(cause, {})
    assert text and re.search("[А-Яа-я]", text) and not re.search("[A-Za-z]{4,}", text)


def test_fixes_fill_in_the_registers_numbers() -> None:
    state = RegisterState(
        vendor=Vendor.SHTRIH,
        protocol="shtrih",
        register_clock=CLOCK,
        read_at=READ_AT,
        fn=FnState(valid_until=date(2026, 12, 15), fiscal=True),
        ofd=OfdState(unsent_count=4, first_unsent_at=datetime(2026, 11, 12, 10, 0)),
        shift=ShiftState(status=ShiftStatus.OPEN, opened_at=CLOCK - timedelta(hours=25)),
    )
    inp = RuleInput(
        register_id="r1",
        now=READ_AT,
        state=state,
        state_received_at=READ_AT,
        contract=OfdContract(activated=True, paid_until=date(2026, 11, 20)),
    )
    found = {c.rule: fix_text(c.rule, c.details) for c in evaluate_all(inp, THR)}
    assert found[RuleId.FN_VALIDITY] is not None and "Замените ФН до 15.12.2026" in found[RuleId.FN_VALIDITY]
    assert "КЭП" in found[RuleId.FN_VALIDITY]
    assert found[RuleId.OFD_BACKLOG] is not None and "с 12.11.2026" in found[RuleId.OFD_BACKLOG]
    assert found[RuleId.SHIFT_TOO_LONG] is not None and found[RuleId.SHIFT_TOO_LONG].startswith("Закройте смену (Z-отчёт)")
    assert found[RuleId.OFD_CONTRACT] is not None and "оплата закончилась 20.11.2026" in found[RuleId.OFD_CONTRACT]


def test_no_cause_no_fix_and_an_unknown_cause_is_not_an_error_page() -> None:
    assert fix_text(None) is None
    assert fix_text("rule_from_a_newer_collector") is None
