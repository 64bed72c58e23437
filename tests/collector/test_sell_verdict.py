"""One model of "can it sell now / when will it stop" (issue 16 §1) and its Russian wording."""

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from collector.alerts import (
    OfdContract,
    OfdNote,
    RuleId,
    RuleInput,
    SellStatus,
    Severity,
    Thresholds,
    Verdict,
    evaluate_all,
    ofd_text,
    sell_text,
    sell_verdict,
)
from collector.alerts.verdict import FN_REFUSAL, NO_DATA, plural
from protocol.kkt.state import DeviceState, FnState, OfdState, RegisterState, ShiftState, ShiftStatus, Vendor

THR = Thresholds()
MIN, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
READ_AT = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
CLOCK = datetime(2026, 11, 27, 12, 0)  # the register's local clock at READ_AT
NOW = READ_AT + MIN


def reg(**parts: Any) -> RegisterState:
    base: dict[str, Any] = {"fn": FnState(valid_until=date(2028, 1, 1), fiscal=True)}
    return RegisterState(vendor=Vendor.SHTRIH, protocol="shtrih", register_clock=CLOCK, read_at=READ_AT, **{**base, **parts})


def verdict_of(state: RegisterState | None, *, received: datetime | None = READ_AT, now: datetime = NOW, **kw: Any) -> Verdict:
    inp = RuleInput(register_id="r1", now=now, state=state, state_received_at=received, **kw)
    return sell_verdict(inp, THR, evaluate_all(inp, THR))


def open_shift(hours: float) -> ShiftState:
    return ShiftState(status=ShiftStatus.OPEN, opened_at=CLOCK - timedelta(hours=hours))


def test_a_healthy_register_is_no_threat() -> None:
    verdict = verdict_of(reg(shift=open_shift(3)))
    assert verdict.status is SellStatus.NO_THREAT and verdict.rank == 3
    assert sell_text(verdict, NOW) == "Не грозит"


def test_a_shift_over_24_hours_cannot_sell_now_and_says_how_long() -> None:
    verdict = verdict_of(reg(shift=open_shift(25)))
    assert (verdict.status, verdict.cause, verdict.rank) == (SellStatus.CANNOT_SELL, RuleId.SHIFT_TOO_LONG, 0)
    assert sell_text(verdict, NOW) == "Сейчас не может продавать: смена открыта 25 ч 1 мин"
    # Rendered later from the stored verdict, the age moves on (no stale text).
    assert sell_text(verdict, NOW + 2 * HOUR) == "Сейчас не может продавать: смена открыта 27 ч 1 мин"


def test_a_shift_near_its_end_will_stop_at_the_end_of_the_24_hours() -> None:
    verdict = verdict_of(reg(shift=open_shift(21)))
    assert (verdict.status, verdict.cause) == (SellStatus.WILL_STOP, RuleId.SHIFT_TOO_LONG)
    assert verdict.at == NOW + 3 * HOUR - MIN
    assert sell_text(verdict, NOW) == "через 2 ч 59 мин: закончатся 24 ч смены"


def test_the_earliest_threatening_stop_wins_and_reads_in_the_future_tense() -> None:
    fn_end = (CLOCK + 9 * DAY).date()  # lasts through that day
    verdict = verdict_of(reg(fn=FnState(valid_until=fn_end, fiscal=True), shift=open_shift(2)))
    assert (verdict.status, verdict.cause) == (SellStatus.WILL_STOP, RuleId.FN_VALIDITY)
    assert sell_text(verdict, NOW) == "через 9 дн. 11 ч: истекает ФН"
    assert verdict.rank == 2


@pytest.mark.parametrize(
    ("parts", "cause"),
    [
        ({"fn": FnState(valid_until=date(2026, 11, 1), fiscal=True)}, RuleId.FN_VALIDITY),
        ({"fn": FnState(valid_until=date(2028, 1, 1), documents_left=0, fiscal=True)}, RuleId.FN_MEMORY),
        ({"ofd": OfdState(unsent_count=3, first_unsent_at=CLOCK - 31 * DAY)}, RuleId.OFD_BACKLOG),
        ({"fn": FnState(valid_until=date(2028, 1, 1), fiscal=False)}, RuleId.FN_NOT_FISCAL),
        ({"device": DeviceState(fn_errors=[0x03])}, FN_REFUSAL),
    ],
)
def test_every_way_a_register_cannot_sell(parts: dict[str, Any], cause: str) -> None:
    verdict = verdict_of(reg(**parts))
    assert (verdict.status, verdict.cause) == (SellStatus.CANNOT_SELL, cause)
    assert sell_text(verdict, NOW).startswith("Сейчас не может продавать: ")
    assert "через" not in sell_text(verdict, NOW)


def test_harmless_fn_codes_of_a_poll_do_not_stop_the_register() -> None:
    assert verdict_of(reg(device=DeviceState(fn_errors=[0x08]))).status is SellStatus.NO_THREAT  # нет запрошенных данных


def test_severity_never_contradicts_the_cause() -> None:
    assert verdict_of(reg(shift=open_shift(25))).least_severity is Severity.BLOCKED
    assert verdict_of(reg(device=DeviceState(fn_errors=[0x03]))).least_severity is Severity.BLOCKED
    assert verdict_of(reg(fn=FnState(valid_until=date(2028, 1, 1), fiscal=False))).least_severity is Severity.BLOCKED
    assert verdict_of(reg(shift=open_shift(21))).least_severity is None


def test_the_cause_shown_first_is_the_one_closing_the_shift_would_not_fix() -> None:
    verdict = verdict_of(reg(fn=FnState(valid_until=date(2026, 11, 1), fiscal=True), shift=open_shift(30)))
    assert verdict.reasons == (RuleId.FN_VALIDITY, RuleId.SHIFT_TOO_LONG)
    assert sell_text(verdict, NOW) == "Сейчас не может продавать: срок ФН истёк (01.11.2026)"


def test_never_reported_and_stale_data_are_unknown_never_no_threat() -> None:
    never = verdict_of(None, received=None)
    assert (never.status, never.cause, never.rank) == (SellStatus.UNKNOWN, NO_DATA, 1)
    assert sell_text(never, NOW) == "Нет данных: касса ещё ни разу не передавала состояние"
    stale = verdict_of(reg(), now=READ_AT + THR.agent_offline_warning + MIN)
    assert stale.status is SellStatus.UNKNOWN
    assert sell_text(stale, READ_AT + 3 * HOUR) == "Нет свежих данных: последние получены 3 ч назад"
    fresh = verdict_of(reg(), now=READ_AT + THR.agent_offline_warning)
    assert fresh.status is SellStatus.NO_THREAT


def test_an_unpaid_ofd_is_its_own_kind_and_does_not_stop_the_register() -> None:
    contract = OfdContract(activated=True, paid_until=date(2026, 11, 24))
    verdict = verdict_of(reg(shift=open_shift(2)), contract=contract)
    assert verdict.status is SellStatus.WILL_STOP and verdict.cause == RuleId.OFD_CONTRACT
    assert verdict.at == NOW + 30 * DAY  # no document waits yet: the 30 days start with the next one
    assert verdict.rank == 2  # sorts with the problems
    assert verdict.ofd is not None and verdict.ofd.problem
    paid = verdict_of(reg(), contract=OfdContract(activated=True, paid_until=date(2027, 5, 1)))
    assert paid.ofd is not None and not paid.ofd.problem and paid.rank == 3
    assert ofd_text(verdict.ofd, NOW) == "оплата ОФД закончилась 3 дня назад (24.11.2026): документы не уходят в ФНС"
    assert ofd_text(OfdNote(activated=True, paid_until=date(2026, 12, 11)), NOW) == "оплата ОФД до 11.12.2026"


def test_the_ofd_note_and_the_rule_agree_on_when_the_paid_day_ends_in_the_companys_zone() -> None:
    moscow = ZoneInfo("Europe/Moscow")
    paid = OfdContract(activated=True, paid_until=date(2026, 11, 27))
    evening = datetime(2026, 11, 27, 21, 30, tzinfo=UTC)  # 00:30 on the 28th in Moscow: the paid day is over
    inp = RuleInput(register_id="r1", now=evening, state=reg(), state_received_at=evening, contract=paid, tz=moscow)
    verdict = sell_verdict(inp, THR, conditions := evaluate_all(inp, THR))
    assert next(c for c in conditions if c.rule is RuleId.OFD_CONTRACT).details["seconds_left"] < 0
    assert ofd_text(verdict.ofd, evening) == "оплата ОФД закончилась 1 день назад (27.11.2026): документы не уходят в ФНС"
    before = RuleInput(register_id="r1", now=evening - timedelta(hours=1), state=reg(), state_received_at=evening, contract=paid, tz=moscow)
    assert ofd_text(sell_verdict(before, THR, evaluate_all(before, THR)).ofd, evening) == "оплата ОФД до 27.11.2026"


def test_a_never_activated_contract_sorts_with_the_problems() -> None:
    verdict = verdict_of(reg(), contract=OfdContract(activated=False))
    assert verdict.status is SellStatus.NO_THREAT and verdict.rank == 2
    assert ofd_text(verdict.ofd, NOW) == "договор с ОФД не активирован: документы не передаются в ФНС"


def test_the_verdict_survives_storage_as_json() -> None:
    verdict = verdict_of(reg(shift=open_shift(25)), contract=OfdContract(activated=True, paid_until=date(2027, 1, 1)))
    assert Verdict.model_validate(verdict.model_dump(mode="json")) == verdict


@pytest.mark.parametrize(("n", "text"), [(1, "1 день"), (3, "3 дня"), (5, "5 дней"), (11, "11 дней"), (21, "21 день"), (22, "22 дня")])
def test_plural(n: int, text: str) -> None:
    assert plural(n, "день", "дня", "дней") == text
