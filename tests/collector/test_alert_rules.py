"""Every rule at, just below and just above each threshold; unknown input yields no condition."""

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.alerts.rules import (
    AlertInputError,
    OfdContract,
    RuleInput,
    agent_clock,
    agent_offline,
    clock_skew,
    cover_open,
    evaluate_all,
    fn_critical,
    fn_memory,
    fn_not_fiscal,
    fn_validity,
    format_duration,
    format_hours,
    kep_validity,
    ofd_backlog,
    ofd_contract,
    paper_out,
    register_clock_now,
    register_unreachable,
    shift_too_long,
)
from collector.alerts.severity import RuleId, Severity
from collector.alerts.thresholds import Thresholds
from collector.alerts.time_to_block import time_to_block
from protocol.kkt.fn import FnWarning, fn_error_meaning
from protocol.kkt.state import DeviceState, FnState, OfdState, RegisterState, ShiftState, ShiftStatus, Vendor

THR = Thresholds()
S = timedelta(seconds=1)
MIN, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
MSK = ZoneInfo("Europe/Moscow")
READ_AT = datetime(2026, 11, 27, 11, 50, tzinfo=UTC)  # the agent's poll
REG_CLOCK = datetime(2026, 11, 27, 14, 50)  # the register's clock at that poll (Moscow, correct)
NOW = READ_AT + 10 * MIN
VALID_UNTIL = date(2027, 3, 1)  # the ФН lasts through this day: blocks at 2027-03-02 00:00 register time


def make_state(**parts: Any) -> RegisterState:
    clocks = {"register_clock": REG_CLOCK, "read_at": READ_AT}
    return RegisterState(vendor=Vendor.SHTRIH, protocol="shtrih", **{**clocks, **parts})


def make_input(state: RegisterState | None = None, now: datetime = NOW, **kw: Any) -> RuleInput:
    return RuleInput(register_id="shtrih-1", now=now, state=state, state_received_at=READ_AT, **kw)


def ladder(levels: list[tuple[timedelta, Severity]]) -> list[tuple[timedelta, Severity | None]]:
    """(value, expected) just below, at and just above each limit of a rising ladder."""
    cases: list[tuple[timedelta, Severity | None]] = []
    below: Severity | None = None
    for limit, severity in levels:
        cases += [(limit - S, below), (limit, severity), (limit + S, severity)]
        below = severity
    return cases


def falling(levels: list[tuple[timedelta, Severity]]) -> list[tuple[timedelta, Severity | None]]:
    """(time left, expected) just above, at and just below each limit of a time-left ladder."""
    cases: list[tuple[timedelta, Severity | None]] = []
    above: Severity | None = None
    for limit, severity in levels:
        cases += [(limit + S, above), (limit, severity), (limit - S, severity)]
        above = severity
    return cases


def severity_of(condition: Any) -> Severity | None:
    return None if condition is None else condition.severity


# --- agent offline / register unreachable ----------------------------------------------------------


@pytest.mark.parametrize(
    ("silence", "expected"), ladder([(5 * MIN, Severity.WARNING), (30 * MIN, Severity.MAJOR)])
)
def test_agent_offline_ladder(silence: timedelta, expected: Severity | None) -> None:
    inp = make_input(agent_online=False, agent_last_seen=NOW - silence)
    assert severity_of(agent_offline(inp, THR)) == expected


def test_agent_offline_counts_missed_heartbeats_even_if_status_says_online() -> None:
    inp = make_input(agent_online=True, agent_last_seen=NOW - 31 * MIN)
    condition = agent_offline(inp, THR)
    assert condition is not None and condition.severity is Severity.MAJOR
    assert condition.message == "Агент не на связи 31 мин"
    assert condition.details["threshold"] == "major"


def test_agent_offline_is_about_absence() -> None:
    # No last-seen time: fall back to when the last state arrived; no data at all and a known
    # offline status still warns; an online agent without data is not an alert.
    inp = RuleInput(register_id="r", now=NOW, agent_online=False, state_received_at=NOW - 6 * MIN)
    assert severity_of(agent_offline(inp, THR)) is Severity.WARNING
    unknown = agent_offline(RuleInput(register_id="r", now=NOW, agent_online=False), THR)
    assert unknown is not None and unknown.details["silence_seconds"] is None
    assert agent_offline(RuleInput(register_id="r", now=NOW, agent_online=True), THR) is None
    assert agent_offline(RuleInput(register_id="r", now=NOW), THR) is None


@pytest.mark.parametrize(("down", "expected"), ladder([(5 * MIN, Severity.MAJOR)]))
def test_register_unreachable_threshold(down: timedelta, expected: Severity | None) -> None:
    inp = make_input(agent_online=True, link_up=False, link_down_since=NOW - down)
    assert severity_of(register_unreachable(inp, THR)) == expected


@pytest.mark.parametrize(
    "kw",
    [
        {"agent_online": False, "link_up": False, "link_down_since": NOW - HOUR},  # agent_offline covers it
        {"agent_online": True, "link_up": True, "link_down_since": NOW - HOUR},
        {"agent_online": True, "link_up": None, "link_down_since": NOW - HOUR},
        {"agent_online": True, "link_up": False, "link_down_since": None},
    ],
)
def test_register_unreachable_needs_a_known_down_link(kw: dict[str, Any]) -> None:
    assert register_unreachable(make_input(**kw), THR) is None


# --- OFD backlog -------------------------------------------------------------------------------


def backlog_input(age: timedelta, **state_kw: Any) -> RuleInput:
    """The oldest unsent document was made at the poll; ``age`` of real time has passed since."""
    ofd = OfdState(unsent_count=3, first_unsent_at=REG_CLOCK)
    return make_input(make_state(ofd=ofd, **state_kw), now=READ_AT + age)


@pytest.mark.parametrize(
    ("age", "expected"),
    ladder(
        [
            (4 * HOUR, Severity.WARNING),
            (48 * HOUR, Severity.MAJOR),
            (20 * DAY, Severity.CRITICAL),
            (30 * DAY, Severity.BLOCKED),
        ]
    ),
)
def test_ofd_backlog_ladder(age: timedelta, expected: Severity | None) -> None:
    condition = ofd_backlog(backlog_input(age), THR)
    assert severity_of(condition) == expected
    if condition is not None:
        assert condition.details["age_seconds"] == age.total_seconds()
        assert condition.blocks_at == READ_AT + 30 * DAY


def test_ofd_backlog_message_and_countdown() -> None:
    condition = ofd_backlog(backlog_input(20 * DAY + 3 * HOUR), THR)
    assert condition is not None
    assert condition.message == "Старейший неотправленный документ — 20 дн. 3 ч; блокировка через 9 дн. 21 ч"
    assert condition.details["seconds_to_block"] == (9 * DAY + 21 * HOUR).total_seconds()
    assert condition.details["clock"] == "register"
    past = ofd_backlog(backlog_input(32 * DAY), THR)
    assert past is not None and past.message.endswith("блокировка 2 дн. назад")


def test_ofd_backlog_age_is_measured_on_the_register_clock() -> None:
    # The register clock runs 2 h behind; the document is 3 h old by that clock at the poll.
    ofd = OfdState(unsent_count=1, first_unsent_at=datetime(2026, 11, 27, 9, 50))
    state = make_state(ofd=ofd, register_clock=datetime(2026, 11, 27, 12, 50))
    assert ofd_backlog(make_input(state, now=READ_AT + 59 * MIN), THR) is None
    condition = ofd_backlog(make_input(state, now=READ_AT + HOUR), THR)
    assert condition is not None and condition.details["age_seconds"] == 4 * 3600


def test_ofd_backlog_agent_clock_ahead_does_not_shrink_the_age() -> None:
    ofd = OfdState(unsent_count=1, first_unsent_at=REG_CLOCK - 5 * HOUR)
    condition = ofd_backlog(make_input(make_state(ofd=ofd), now=READ_AT - HOUR), THR)
    assert condition is not None and condition.details["age_seconds"] == 5 * 3600


def test_ofd_backlog_falls_back_to_the_tenant_clock() -> None:
    ofd = OfdState(unsent_count=1, first_unsent_at=datetime(2026, 11, 27, 10, 0))
    state = make_state(ofd=ofd, register_clock=None)
    assert ofd_backlog(make_input(state), THR) is None  # no register clock and no zone: unknown
    condition = ofd_backlog(make_input(state, tz=MSK), THR)  # now = 15:00 Moscow
    assert condition is not None and condition.details["age_seconds"] == 5 * 3600
    assert condition.details["clock"] == "tenant"


@pytest.mark.parametrize(
    "state",
    [
        make_state(ofd=OfdState(unsent_count=0, first_unsent_at=REG_CLOCK - 40 * DAY)),
        make_state(ofd=OfdState(unsent_count=5, first_unsent_at=None)),
        make_state(),
        make_state(ofd=OfdState(unsent_count=5, first_unsent_at=REG_CLOCK - 40 * DAY), read_at=None),
    ],
)
def test_ofd_backlog_unknown_or_empty(state: RegisterState) -> None:
    inp = RuleInput(register_id="r", now=NOW, state=state)  # no state_received_at either
    assert ofd_backlog(inp, THR) is None
    assert ofd_backlog(make_input(None), THR) is None


@pytest.mark.parametrize(
    "device",
    [
        DeviceState(fn_errors=[0x15]),  # the structured code, whatever the text
        DeviceState(last_error="A4 20: 239 исчерпан ресурс ожидания передачи сообщения (правило 30 дней)",
                    fn_errors=[0x15]),  # ATOL's wording differs from the ФН table's
        DeviceState(last_error=f"FF39 ответ 15h: {fn_error_meaning(0x15)}"),  # an agent before fn_errors
    ],
    ids=["code", "atol-text-with-code", "text-only"],
)
def test_fn_error_15h_blocks_without_dates(device: DeviceState) -> None:
    condition = ofd_backlog(make_input(make_state(device=device)), THR)
    assert condition is not None and condition.severity is Severity.BLOCKED
    assert condition.blocks_at == NOW
    young = ofd_backlog(backlog_input(HOUR, device=device), THR)
    assert young is not None and young.severity is Severity.BLOCKED


def test_a_listed_code_is_trusted_over_the_text() -> None:
    # A new agent listing other ФН codes is not second-guessed by a text match.
    device = DeviceState(last_error=fn_error_meaning(0x15), fn_errors=[0x16])
    assert ofd_backlog(make_input(make_state(device=device)), THR) is None


@given(st.timedeltas(min_value=timedelta(0), max_value=60 * DAY), st.timedeltas(min_value=timedelta(0), max_value=DAY))
def test_ofd_backlog_never_improves_with_age(age: timedelta, more: timedelta) -> None:
    before = severity_of(ofd_backlog(backlog_input(age), THR)) or 0
    after = severity_of(ofd_backlog(backlog_input(age + more), THR)) or 0
    assert after >= before


# --- ФН validity, memory, errors, phase ----------------------------------------------------------


def validity_input(left: timedelta, **fn_kw: Any) -> RuleInput:
    """Time the register clock reads when ``left`` remains until the ФН's valid-until day ends."""
    end = datetime.combine(VALID_UNTIL + DAY, datetime.min.time())
    state = make_state(fn=FnState(valid_until=VALID_UNTIL, **fn_kw))
    return make_input(state, now=READ_AT + (end - left - REG_CLOCK))


@pytest.mark.parametrize(
    ("left", "expected"),
    falling(
        [
            (60 * DAY, Severity.INFO),
            (30 * DAY, Severity.WARNING),
            (14 * DAY, Severity.MAJOR),
            (3 * DAY, Severity.CRITICAL),
            (timedelta(0), Severity.BLOCKED),
        ]
    ),
)
def test_fn_validity_ladder(left: timedelta, expected: Severity | None) -> None:
    inp = validity_input(left)
    condition = fn_validity(inp, THR)
    assert severity_of(condition) == expected
    if condition is not None:
        assert condition.blocks_at == inp.now + left


def test_fn_validity_messages() -> None:
    soon = fn_validity(validity_input(12 * DAY + 4 * HOUR), THR)
    assert soon is not None and soon.message == "ФН действует до 01.03.2027: осталось 12 дн. 4 ч"
    gone = fn_validity(validity_input(-2 * DAY), THR)
    assert gone is not None and gone.message == "Срок ФН истёк (01.03.2027) 2 дн. назад"


def test_fn_validity_without_a_date_uses_the_fn_flags() -> None:
    urgent = make_state(fn=FnState(warning_flags=int(FnWarning.URGENT_REPLACEMENT | FnWarning.REPLACE_SOON)))
    soon = make_state(fn=FnState(warnings=["REPLACE_SOON"]))
    assert severity_of(fn_validity(make_input(urgent), THR)) is Severity.CRITICAL
    assert severity_of(fn_validity(make_input(soon), THR)) is Severity.WARNING
    assert fn_validity(make_input(make_state(fn=FnState(warning_flags=0))), THR) is None
    assert fn_validity(make_input(make_state()), THR) is None


def test_fn_validity_error_05h_blocks_and_far_dates_do_not_overflow() -> None:
    ended = make_state(device=DeviceState(last_error=fn_error_meaning(0x05).upper()))
    assert severity_of(fn_validity(make_input(ended), THR)) is Severity.BLOCKED
    assert fn_validity(make_input(make_state(fn=FnState(valid_until=date.max))), THR) is None


@pytest.mark.parametrize(
    ("fn", "last_error", "expected"),
    [
        (FnState(warning_flags=int(FnWarning.MEMORY_ALMOST_FULL), documents_left=4000), None, Severity.MAJOR),
        (FnState(warnings=["MEMORY_ALMOST_FULL"]), None, Severity.MAJOR),
        (FnState(warning_flags=int(FnWarning.MEMORY_ALMOST_FULL), documents_left=0), None, Severity.BLOCKED),
        (FnState(documents_left=0), None, Severity.BLOCKED),
        (FnState(), f"ошибка ФН 06h: {fn_error_meaning(0x06)}", Severity.BLOCKED),
        (FnState(warning_flags=0, documents_left=1), None, None),
        (FnState(), None, None),
    ],
)
def test_fn_memory(fn: FnState, last_error: str | None, expected: Severity | None) -> None:
    state = make_state(fn=fn, device=DeviceState(last_error=last_error))
    assert severity_of(fn_memory(make_input(state), THR)) == expected


@pytest.mark.parametrize(
    ("flags", "expected"),
    [(int(FnWarning.CRITICAL_ERROR), Severity.CRITICAL), (int(FnWarning.MEMORY_ALMOST_FULL), None), (None, None)],
)
def test_fn_critical(flags: int | None, expected: Severity | None) -> None:
    state = make_state(fn=FnState(warning_flags=flags))
    assert severity_of(fn_critical(make_input(state), THR)) == expected


@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        (FnState(fiscal=False, phase=7, phase_name="постфискальный режим"), Severity.CRITICAL),
        (FnState(phase=1), Severity.CRITICAL),
        (FnState(phase=3), None),
        (FnState(fiscal=True), None),
        (FnState(), None),
    ],
)
def test_fn_not_fiscal(fn: FnState, expected: Severity | None) -> None:
    condition = fn_not_fiscal(make_input(make_state(fn=fn)), THR)
    assert severity_of(condition) == expected
    if fn.phase_name and condition is not None:
        assert "постфискальный режим" in condition.message


# --- shift -------------------------------------------------------------------------------------


def shift_input(age: timedelta, status: ShiftStatus = ShiftStatus.OPEN, **state_kw: Any) -> RuleInput:
    shift = ShiftState(status=status, number=7, opened_at=REG_CLOCK)
    return make_input(make_state(shift=shift, **state_kw), now=READ_AT + age)


@pytest.mark.parametrize(
    ("age", "expected"),
    ladder([(20 * HOUR, Severity.WARNING), (23 * HOUR + 30 * MIN, Severity.CRITICAL), (24 * HOUR, Severity.BLOCKED)]),
)
def test_shift_ladder(age: timedelta, expected: Severity | None) -> None:
    condition = shift_too_long(shift_input(age), THR)
    assert severity_of(condition) == expected
    if condition is not None:
        assert condition.blocks_at == READ_AT + 24 * HOUR


def test_shift_message() -> None:
    condition = shift_too_long(shift_input(23 * HOUR + 40 * MIN), THR)
    assert condition is not None and condition.message == "Смена открыта 23 ч 40 мин; блокировка через 20 мин"
    past = shift_too_long(shift_input(25 * HOUR + 10 * MIN), THR)  # the two durations agree to the minute
    assert past is not None and past.message == "Смена открыта 25 ч 10 мин; блокировка 1 ч 10 мин назад"


@pytest.mark.parametrize(
    "state",
    [
        make_state(shift=ShiftState(status=ShiftStatus.EXPIRED)),
        make_state(shift=ShiftState(status=ShiftStatus.UNKNOWN), device=DeviceState(last_error=fn_error_meaning(0x16))),
    ],
)
def test_expired_shift_blocks_without_opened_at(state: RegisterState) -> None:
    condition = shift_too_long(make_input(state), THR)
    assert condition is not None and condition.severity is Severity.BLOCKED
    assert condition.details["age_seconds"] is None


def test_expired_status_overrides_a_short_age() -> None:
    condition = shift_too_long(shift_input(HOUR, status=ShiftStatus.EXPIRED), THR)
    assert condition is not None and condition.severity is Severity.BLOCKED


@pytest.mark.parametrize(
    "shift",
    [
        ShiftState(status=ShiftStatus.CLOSED, opened_at=REG_CLOCK - 30 * HOUR),
        ShiftState(status=ShiftStatus.OPEN, opened_at=None),
        ShiftState(),
    ],
)
def test_shift_unknown_or_closed(shift: ShiftState) -> None:
    assert shift_too_long(make_input(make_state(shift=shift), now=NOW + 30 * HOUR), THR) is None


# --- OFD contract ------------------------------------------------------------------------------

PAID_UNTIL = date(2027, 3, 1)
PAID_END = datetime(2027, 3, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    ("left", "expected"),
    falling([(30 * DAY, Severity.WARNING), (7 * DAY, Severity.MAJOR), (timedelta(0), Severity.CRITICAL)]),
)
def test_ofd_contract_ladder(left: timedelta, expected: Severity | None) -> None:
    inp = make_input(contract=OfdContract(activated=True, paid_until=PAID_UNTIL), now=PAID_END - left)
    condition = ofd_contract(inp, THR)
    assert severity_of(condition) == expected
    if condition is not None:
        assert condition.blocks_at is None  # an unpaid OFD stops the transfer, not the register


def test_ofd_contract_uses_the_tenant_day_and_says_so() -> None:
    contract = OfdContract(activated=True, paid_until=PAID_UNTIL)
    # 2027-03-01 22:00 UTC is already 2 March in Moscow: the paid period is over there.
    late = datetime(2027, 3, 1, 22, 0, tzinfo=UTC)
    assert severity_of(ofd_contract(make_input(contract=contract, now=late), THR)) is Severity.MAJOR
    expired = ofd_contract(make_input(contract=contract, now=late, tz=MSK), THR)
    assert expired is not None and expired.message == "Оплата услуг ОФД закончилась 01.03.2027"


@pytest.mark.parametrize(
    ("contract", "expected"),
    [
        (OfdContract(activated=False), Severity.CRITICAL),
        (OfdContract(activated=False, paid_until=date(2030, 1, 1)), Severity.CRITICAL),
        (OfdContract(activated=True, paid_until=None), None),
        (None, None),
    ],
)
def test_ofd_contract_activation_and_missing_data(contract: OfdContract | None, expected: Severity | None) -> None:
    assert severity_of(ofd_contract(make_input(contract=contract), THR)) == expected


# --- device flags and clock ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "paper", "cover"),
    [
        (DeviceState(paper_present=False, cover_open=True), Severity.WARNING, Severity.WARNING),
        (DeviceState(paper_present=True, cover_open=False), None, None),
        (DeviceState(), None, None),
    ],
)
def test_paper_and_cover(device: DeviceState, paper: Severity | None, cover: Severity | None) -> None:
    inp = make_input(make_state(device=device))
    assert severity_of(paper_out(inp, THR)) == paper
    assert severity_of(cover_open(inp, THR)) == cover


@pytest.mark.parametrize(("skew", "expected"), ladder([(2 * MIN, Severity.WARNING), (5 * MIN, Severity.MAJOR)]))
@pytest.mark.parametrize("sign", [1, -1])
def test_clock_skew_ladder(skew: timedelta, expected: Severity | None, sign: int) -> None:
    state = make_state(register_clock=REG_CLOCK + sign * skew)
    condition = clock_skew(make_input(state, tz=MSK), THR)
    assert severity_of(condition) == expected
    if condition is not None:
        assert condition.details["skew_seconds"] == sign * skew.total_seconds()
        assert ("спешат" if sign > 0 else "отстают") in condition.message


def test_clock_skew_needs_the_zone_and_both_clocks() -> None:
    skewed = make_state(register_clock=REG_CLOCK + HOUR)
    assert clock_skew(make_input(skewed), THR) is None
    no_agent_time = skewed.model_copy(update={"read_at": None})
    assert severity_of(clock_skew(make_input(no_agent_time, tz=MSK), THR)) == Severity.MAJOR  # the arrival will do
    assert clock_skew(RuleInput(register_id="r", now=NOW, state=no_agent_time, tz=MSK), THR) is None
    assert clock_skew(make_input(skewed.model_copy(update={"register_clock": None}), tz=MSK), THR) is None


def test_a_wrong_agent_clock_is_neither_register_clock_skew_nor_age() -> None:
    """The agent's computer is 2 days behind; the register's clock is right and its shift 30 min old."""
    state = make_state(
        read_at=READ_AT - 2 * DAY,
        shift=ShiftState(status=ShiftStatus.OPEN, opened_at=REG_CLOCK - 30 * MIN),
    )
    inp = make_input(state, tz=MSK, polled_at=READ_AT, agent_clock_offset=-2 * DAY)
    assert clock_skew(inp, THR) is None
    assert shift_too_long(inp, THR) is None  # 40 min on the register's clock, not 2 days
    flagged = agent_clock(inp, THR)
    assert flagged is not None and flagged.severity is Severity.WARNING
    assert flagged.message.startswith("Часы компьютера с агентом отстают на 2 дн.")


@pytest.mark.parametrize(("offset", "expected"), ladder([(5 * MIN, Severity.WARNING)]))
@pytest.mark.parametrize("sign", [1, -1])
def test_agent_clock_threshold(offset: timedelta, expected: Severity | None, sign: int) -> None:
    condition = agent_clock(make_input(agent_clock_offset=sign * offset), THR)
    assert severity_of(condition) == expected
    if condition is not None:
        assert ("спешат" if sign > 0 else "отстают") in condition.message
        assert condition.details["offset_seconds"] == sign * offset.total_seconds()
    assert agent_clock(make_input(agent_clock_offset=sign * offset), THR.merged({"agent_clock_warning": "PT1H"})) is None


# --- КЭП ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("left", "expected"), falling([(30 * DAY, Severity.WARNING), (7 * DAY, Severity.MAJOR)]))
def test_kep_validity_ladder(left: timedelta, expected: Severity | None) -> None:
    not_after = datetime(2027, 5, 1, 9, 0, tzinfo=UTC)
    assert severity_of(kep_validity(not_after, not_after - left, THR)) == expected


def test_kep_validity_dates_and_expiry() -> None:
    # A date lasts through its day: 8 days are left at the start of 24 April, 7 at the start of the 25th.
    by_date = kep_validity(date(2027, 5, 1), datetime(2027, 4, 24, 0, 0, tzinfo=UTC), THR)
    assert by_date is not None and by_date.severity is Severity.WARNING
    assert by_date.message == "КЭП действует до 01.05.2027: осталось 8 дн."
    assert severity_of(kep_validity(date(2027, 5, 1), datetime(2027, 4, 25, tzinfo=UTC), THR)) is Severity.MAJOR
    moscow = kep_validity(date(2027, 5, 1), datetime(2027, 4, 24, 21, 0, tzinfo=UTC), THR, MSK)
    assert severity_of(moscow) is Severity.MAJOR  # 25 April 00:00 in Moscow
    expired = kep_validity(date(2027, 5, 1), datetime(2027, 6, 1, tzinfo=UTC), THR)
    assert expired is not None and expired.severity is Severity.MAJOR and "истёк" in expired.message
    with pytest.raises(AlertInputError):
        kep_validity(date(2027, 5, 1), datetime(2027, 6, 1), THR)
    with pytest.raises(AlertInputError):
        kep_validity(datetime(2027, 5, 1), datetime(2027, 6, 1, tzinfo=UTC), THR)


# --- all together --------------------------------------------------------------------------------


def test_healthy_register_has_no_conditions() -> None:
    state = make_state(
        shift=ShiftState(status=ShiftStatus.OPEN, opened_at=REG_CLOCK - 2 * HOUR),
        fn=FnState(fiscal=True, phase=3, valid_until=date(2028, 1, 1), warning_flags=0, documents_left=200_000),
        ofd=OfdState(unsent_count=0),
        device=DeviceState(paper_present=True, cover_open=False),
    )
    inp = make_input(
        state,
        agent_online=True,
        agent_last_seen=NOW,
        link_up=True,
        contract=OfdContract(activated=True, paid_until=date(2028, 1, 1)),
        tz=MSK,
    )
    assert evaluate_all(inp, THR) == []


def test_troubled_register_reports_every_rule_in_catalogue_order() -> None:
    state = make_state(
        register_clock=REG_CLOCK + 10 * MIN,
        shift=ShiftState(status=ShiftStatus.EXPIRED),
        fn=FnState(
            fiscal=False,
            valid_until=date(2026, 12, 1),
            warning_flags=int(FnWarning.MEMORY_ALMOST_FULL | FnWarning.CRITICAL_ERROR),
        ),
        ofd=OfdState(unsent_count=9, first_unsent_at=REG_CLOCK - 25 * DAY),
        device=DeviceState(paper_present=False, cover_open=True),
    )
    inp = make_input(
        state,
        agent_online=True,
        agent_last_seen=NOW - 40 * MIN,
        link_up=False,
        link_down_since=NOW - 10 * MIN,
        contract=OfdContract(activated=False),
        tz=MSK,
        agent_clock_offset=-HOUR,
    )
    assert [c.rule for c in evaluate_all(inp, THR)] == [rule for rule in RuleId if rule is not RuleId.KEP_VALIDITY]


def test_only_agent_offline_without_a_state() -> None:
    inp = RuleInput(register_id="r", now=NOW, agent_online=False, agent_last_seen=NOW - HOUR, tz=MSK)
    assert [c.rule for c in evaluate_all(inp, THR)] == [RuleId.AGENT_OFFLINE]


def test_naive_times_are_refused_with_a_typed_error() -> None:
    with pytest.raises(AlertInputError, match="now"):
        RuleInput(register_id="r", now=datetime(2026, 1, 1))
    with pytest.raises(AlertInputError, match="link_down_since"):
        RuleInput(register_id="r", now=NOW, link_down_since=datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (20 * DAY + 3 * HOUR + 59 * MIN, "20 дн. 3 ч"),
        (9 * DAY, "9 дн."),
        (5 * HOUR + 7 * MIN, "5 ч 7 мин"),
        (2 * HOUR, "2 ч"),
        (3 * MIN + 30 * S, "3 мин"),
        (30 * S, "меньше минуты"),
        (-(2 * DAY), "2 дн."),
    ],
)
def test_format_duration(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (23 * HOUR + 40 * MIN, "23 ч 40 мин"),
        (24 * HOUR + 56 * MIN, "24 ч 56 мин"),  # beside «блокировка 56 мин назад»
        (25 * HOUR, "25 ч"),
        (80 * HOUR, "3 дн. 8 ч"),
    ],
)
def test_format_hours_keeps_minutes_until_days(value: timedelta, text: str) -> None:
    assert format_hours(value) == text


_TIMES = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31))
_AWARE = st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30), timezones=st.just(UTC))


@given(
    register_clock=st.none() | _TIMES,
    read_at=st.none() | _AWARE,
    now=_AWARE,
    first_unsent_at=st.none() | _TIMES,
    unsent=st.none() | st.integers(min_value=0, max_value=10**6),
    opened_at=st.none() | _TIMES,
    status=st.sampled_from(ShiftStatus),
    valid_until=st.none() | st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)),
    flags=st.none() | st.integers(min_value=0, max_value=255),
    documents_left=st.none() | st.integers(min_value=0, max_value=10**6),
    last_error=st.none() | st.text(max_size=40),
    agent_online=st.none() | st.booleans(),
    paid_until=st.none() | st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)),
)
def test_rules_never_crash_and_details_are_json(
    register_clock: datetime | None,
    read_at: datetime | None,
    now: datetime,
    first_unsent_at: datetime | None,
    unsent: int | None,
    opened_at: datetime | None,
    status: ShiftStatus,
    valid_until: date | None,
    flags: int | None,
    documents_left: int | None,
    last_error: str | None,
    agent_online: bool | None,
    paid_until: date | None,
) -> None:
    reg = make_state(
        register_clock=register_clock,
        read_at=read_at,
        ofd=OfdState(unsent_count=unsent, first_unsent_at=first_unsent_at),
        shift=ShiftState(status=status, opened_at=opened_at),
        fn=FnState(valid_until=valid_until, warning_flags=flags, documents_left=documents_left),
        device=DeviceState(last_error=last_error),
    )
    inp = RuleInput(
        register_id="r",
        now=now,
        state=reg,
        state_received_at=read_at,
        agent_online=agent_online,
        agent_last_seen=read_at,
        contract=OfdContract(activated=True, paid_until=paid_until),
        tz=MSK,
    )
    for condition in evaluate_all(inp, THR):
        json.dumps(condition.details)
        assert condition.message
    time_to_block(inp, THR)


def test_the_register_clock_is_remembered_per_input_only() -> None:
    # register_clock_now keeps the last input's answer: equal but distinct inputs, and inputs
    # alternating (as two threads would), must each get their own.
    early = make_input(make_state(), now=NOW)
    late = make_input(make_state(), now=NOW + HOUR)
    other_clock = make_input(make_state(register_clock=REG_CLOCK + DAY), now=NOW)
    tenant = make_input(make_state(register_clock=None), now=NOW, tz=MSK)
    expected = {
        id(early): REG_CLOCK + 10 * MIN,
        id(late): REG_CLOCK + HOUR + 10 * MIN,
        id(other_clock): REG_CLOCK + DAY + 10 * MIN,
        id(tenant): NOW.astimezone(MSK).replace(tzinfo=None),
    }
    for inp in [early, late, early, other_clock, other_clock, tenant, early, late]:
        clock = register_clock_now(inp)
        assert clock is not None and clock.now == expected[id(inp)]
    assert register_clock_now(make_input(None)) is None
