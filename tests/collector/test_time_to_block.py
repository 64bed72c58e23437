from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.alerts.rules import Condition, OfdContract, RuleInput
from collector.alerts.severity import RuleId, Severity
from collector.alerts.thresholds import Thresholds
from collector.alerts.time_to_block import (
    NodeRollup,
    TimeToBlock,
    block_candidates,
    rollup,
    severity_counts,
    time_to_block,
)
from protocol.kkt.fn import fn_error_meaning
from protocol.kkt.state import DeviceState, FnState, OfdState, RegisterState, ShiftState, ShiftStatus, Vendor

THR = Thresholds()
DAY, HOUR = timedelta(days=1), timedelta(hours=1)
POLL = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
CLOCK = datetime(2026, 11, 27, 12, 0)  # register local time at POLL
NOW = POLL + 2 * HOUR  # the register clock reads 14:00 now


def state(
    *,
    backlog_age: timedelta | None = None,
    valid_until: date | None = None,
    documents_left: int | None = None,
    shift: ShiftState | None = None,
    last_error: str | None = None,
) -> RegisterState:
    """A polled register; ``backlog_age`` is the oldest unsent document's age at the poll."""
    ofd = OfdState() if backlog_age is None else OfdState(unsent_count=2, first_unsent_at=CLOCK - backlog_age)
    return RegisterState(
        vendor=Vendor.ATOL,
        protocol="atol",
        register_clock=CLOCK,
        read_at=POLL,
        ofd=ofd,
        fn=FnState(valid_until=valid_until, documents_left=documents_left),
        shift=shift or ShiftState(),
        device=DeviceState(last_error=last_error),
    )


def ttb_of(reg: RegisterState | None, contract: OfdContract | None = None) -> TimeToBlock | None:
    return time_to_block(RuleInput(register_id="atol-1", now=NOW, state=reg, contract=contract), THR)


def test_nothing_threatens() -> None:
    assert ttb_of(None) is None
    assert ttb_of(state()) is None
    assert ttb_of(state(documents_left=10)) is None
    assert ttb_of(state(), OfdContract(activated=True, paid_until=None)) is None
    assert ttb_of(state(), OfdContract(activated=False)) is None  # an alert, but no date to count down to


def test_one_cause_each() -> None:
    backlog = ttb_of(state(backlog_age=10 * DAY))
    assert backlog is not None and backlog.cause is RuleId.OFD_BACKLOG
    assert backlog.seconds == (20 * DAY - 2 * HOUR).total_seconds()
    assert backlog.blocks_at == NOW + 20 * DAY - 2 * HOUR

    validity = ttb_of(state(valid_until=date(2026, 12, 5)))  # lasts through 5 Dec: 8 d 10 h from 14:00 on 27 Nov
    assert validity is not None and validity.cause is RuleId.FN_VALIDITY
    assert validity.seconds == (8 * DAY + 10 * HOUR).total_seconds()

    # An unpaid OFD stops the transfer at the end of the paid day; the ФН blocks 30 days later.
    contract = ttb_of(state(), OfdContract(activated=True, paid_until=date(2026, 11, 30)))
    assert contract is not None and contract.cause is RuleId.OFD_CONTRACT
    assert contract.blocks_at == datetime(2026, 12, 1, tzinfo=UTC) + 30 * DAY

    shift = ttb_of(state(shift=ShiftState(status=ShiftStatus.OPEN, opened_at=CLOCK - 3 * HOUR)))  # open 5 h now
    assert shift is not None and (shift.cause, shift.blocks_at) == (RuleId.SHIFT_TOO_LONG, NOW + 19 * HOUR)

    memory = ttb_of(state(documents_left=0))
    assert memory is not None and (memory.cause, memory.seconds, memory.blocks_at) == (RuleId.FN_MEMORY, 0, NOW)


def test_several_causes_take_the_earliest() -> None:
    reg = state(backlog_age=25 * DAY, valid_until=date(2027, 6, 1), shift=ShiftState(status=ShiftStatus.OPEN, opened_at=CLOCK))
    contract = OfdContract(activated=True, paid_until=date(2026, 11, 29))
    inp = RuleInput(register_id="atol-1", now=NOW, state=reg, contract=contract)
    causes = {c.cause: c.seconds for c in block_candidates(inp, THR)}
    # A document already waits, so the backlog is the real clock and the contract adds no stop of its own.
    assert set(causes) == {RuleId.OFD_BACKLOG, RuleId.FN_VALIDITY, RuleId.SHIFT_TOO_LONG}
    best = time_to_block(inp, THR)
    assert best is not None and best.cause is RuleId.SHIFT_TOO_LONG
    assert best.seconds == min(causes.values()) == (22 * HOUR).total_seconds()


@pytest.mark.parametrize(
    ("reg", "cause", "seconds"),
    [
        (state(backlog_age=31 * DAY), RuleId.OFD_BACKLOG, -(DAY + 2 * HOUR).total_seconds()),
        (state(valid_until=date(2026, 11, 20)), RuleId.FN_VALIDITY, -(6 * DAY + 14 * HOUR).total_seconds()),
        (state(last_error=fn_error_meaning(0x15)), RuleId.OFD_BACKLOG, 0),
        (state(backlog_age=DAY, last_error=fn_error_meaning(0x15)), RuleId.OFD_BACKLOG, 0),
        (state(valid_until=date(2030, 1, 1), last_error=fn_error_meaning(0x05)), RuleId.FN_VALIDITY, 0),
        (state(valid_until=date(2030, 1, 1), documents_left=0), RuleId.FN_MEMORY, 0),
    ],
)
def test_already_blocked(reg: RegisterState, cause: RuleId, seconds: float) -> None:
    ttb = ttb_of(reg)
    assert ttb is not None and (ttb.cause, ttb.seconds) == (cause, seconds)


def test_contract_counts_only_with_contract_data() -> None:
    reg = state(valid_until=date(2027, 1, 1))
    without = ttb_of(reg)
    with_paid = ttb_of(reg, OfdContract(activated=True, paid_until=date(2026, 11, 1)))
    assert without is not None and without.cause is RuleId.FN_VALIDITY
    assert with_paid is not None and with_paid.cause is RuleId.OFD_CONTRACT
    assert with_paid.blocks_at == NOW + 30 * DAY  # paid period already over: the 30 days run from now


def test_a_long_shift_is_a_stop_now() -> None:
    expired = ShiftState(status=ShiftStatus.EXPIRED, opened_at=CLOCK - 30 * HOUR)
    ttb = ttb_of(state(shift=expired, valid_until=date(2027, 1, 1)))
    assert ttb is not None and ttb.cause is RuleId.SHIFT_TOO_LONG and ttb.seconds == -(8 * HOUR).total_seconds()
    reported = ttb_of(state(shift=ShiftState(status=ShiftStatus.OPEN), last_error=fn_error_meaning(0x16)))
    assert reported is not None and (reported.cause, reported.seconds) == (RuleId.SHIFT_TOO_LONG, 0)


def test_ttb_follows_the_tenant_blocked_threshold() -> None:
    strict = THR.merged({"ofd_backlog_blocked": 28 * DAY})
    inp = RuleInput(register_id="atol-1", now=NOW, state=state(backlog_age=10 * DAY))
    ttb = time_to_block(inp, strict)
    assert ttb is not None and ttb.seconds == (18 * DAY - 2 * HOUR).total_seconds()


@given(
    backlog=st.none() | st.integers(min_value=0, max_value=40 * 24),
    fn_days=st.none() | st.integers(min_value=-10, max_value=500),
    paid_days=st.none() | st.integers(min_value=-10, max_value=500),
    exhausted=st.booleans(),
)
def test_ttb_is_the_min_of_its_parts(
    backlog: int | None, fn_days: int | None, paid_days: int | None, exhausted: bool
) -> None:
    """Each part is computed here from first principles and compared with the module's answer."""
    reg_now = CLOCK + (NOW - POLL)
    parts: dict[RuleId, timedelta] = {}
    backlog_age = None if backlog is None else timedelta(hours=backlog)
    if backlog_age is not None:
        parts[RuleId.OFD_BACKLOG] = 30 * DAY - (backlog_age + (NOW - POLL))
    valid_until = None if fn_days is None else reg_now.date() + timedelta(days=fn_days)
    if valid_until is not None:
        parts[RuleId.FN_VALIDITY] = datetime.combine(valid_until + DAY, datetime.min.time()) - reg_now
    contract = None
    if paid_days is not None:
        paid_until = NOW.date() + timedelta(days=paid_days)
        contract = OfdContract(activated=True, paid_until=paid_until)
        if backlog_age is None:
            paid_left = datetime.combine(paid_until + DAY, datetime.min.time(), UTC) - NOW
            parts[RuleId.OFD_CONTRACT] = max(paid_left, timedelta(0)) + 30 * DAY
    if exhausted:
        parts[RuleId.FN_MEMORY] = timedelta(0)
    reg = state(backlog_age=backlog_age, valid_until=valid_until, documents_left=0 if exhausted else 5)
    ttb = ttb_of(reg, contract)
    if not parts:
        assert ttb is None
        return
    assert ttb is not None
    assert ttb.seconds == min(parts.values()).total_seconds()
    assert parts[ttb.cause] == min(parts.values())
    assert ttb.blocks_at == NOW + min(parts.values())


# --- rollup ------------------------------------------------------------------------------------


def block(hours: float, cause: RuleId = RuleId.FN_VALIDITY) -> TimeToBlock:
    return TimeToBlock(seconds=hours * 3600, cause=cause, blocks_at=NOW + timedelta(hours=hours))


def condition(severity: Severity, rule: RuleId = RuleId.PAPER_OUT) -> Condition:
    return Condition(rule=rule, severity=severity, message="", details={})


def test_severity_counts_lists_every_level() -> None:
    counts = severity_counts([condition(Severity.WARNING), condition(Severity.WARNING), condition(Severity.BLOCKED)])
    assert counts == {
        Severity.INFO: 0,
        Severity.WARNING: 2,
        Severity.MAJOR: 0,
        Severity.CRITICAL: 0,
        Severity.BLOCKED: 1,
    }


def test_rollup_sums_every_descendant_level() -> None:
    store_a = rollup(
        [
            (severity_counts([condition(Severity.MAJOR)]), block(50)),
            (severity_counts([]), None),
            (severity_counts([condition(Severity.CRITICAL), condition(Severity.INFO)]), block(10, RuleId.OFD_BACKLOG)),
        ]
    )
    store_b = rollup([({Severity.MAJOR: 2}, block(-3, RuleId.FN_MEMORY))])
    city = rollup([store_a, store_b])
    assert store_a.counts[Severity.MAJOR] == 1 and store_a.earliest_block == block(10, RuleId.OFD_BACKLOG)
    assert city.counts == {
        Severity.INFO: 1,
        Severity.WARNING: 0,
        Severity.MAJOR: 3,
        Severity.CRITICAL: 1,
        Severity.BLOCKED: 0,
    }
    assert city.earliest_block == block(-3, RuleId.FN_MEMORY)
    assert city.worst is Severity.CRITICAL


def test_rollup_compares_absolute_block_times() -> None:
    # Evaluated an hour apart: fewer seconds left does not mean an earlier block.
    early = TimeToBlock(seconds=7200, cause=RuleId.FN_VALIDITY, blocks_at=NOW + 2 * HOUR)
    late_but_fewer_seconds = TimeToBlock(seconds=3600, cause=RuleId.OFD_BACKLOG, blocks_at=NOW + 3 * HOUR)
    assert rollup([({}, late_but_fewer_seconds), ({}, early)]).earliest_block == early


def test_empty_rollup() -> None:
    empty = rollup([])
    assert empty == NodeRollup(dict.fromkeys(Severity, 0), None)
    assert empty.worst is None
