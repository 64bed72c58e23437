"""Device family: paper, cover and the register clock vs the collector's."""

from __future__ import annotations

from collector.alerts.rules.clocks import ZERO, aware_utc, naive, polled_at
from collector.alerts.rules.inputs import Condition, RuleInput
from collector.alerts.rules.ladders import by_age, crossed, levels
from collector.alerts.rules.text import format_duration
from collector.alerts.severity import RuleId, Severity
from collector.alerts.thresholds import Thresholds


def paper_out(inp: RuleInput, thr: Thresholds) -> Condition | None:
    if inp.state is None or inp.state.device.paper_present is not False:
        return None
    return Condition(rule=RuleId.PAPER_OUT, severity=Severity.WARNING, message="В кассе закончилась бумага", details={})


def cover_open(inp: RuleInput, thr: Thresholds) -> Condition | None:
    if inp.state is None or inp.state.device.cover_open is not True:
        return None
    return Condition(rule=RuleId.COVER_OPEN, severity=Severity.WARNING, message="Открыта крышка кассы", details={})


def clock_skew(inp: RuleInput, thr: Thresholds) -> Condition | None:
    """Register clock vs the collector's clock at the poll; the ФН rejects operations 5 min apart (17h).

    Not vs the agent's clock: a wrong agent clock is ``agent_clock``'s alert, not the register's.
    Needs the tenant zone to read the naive register clock; without it the offset is unknown.
    """
    state = inp.state
    polled = polled_at(inp)
    if state is None or state.register_clock is None or polled is None or inp.tz is None:
        return None
    true_local = aware_utc(polled).astimezone(inp.tz).replace(tzinfo=None)
    skew = naive(state.register_clock) - true_local
    level = by_age(
        abs(skew),
        levels(thr, "clock_skew", "major", "warning"),
    )
    if level is None:
        return None
    direction = "спешат" if skew > ZERO else "отстают"
    return Condition(
        rule=RuleId.CLOCK_SKEW,
        severity=level[0],
        message=f"Часы кассы {direction} на {format_duration(skew)}",
        details={"skew_seconds": skew.total_seconds(), **crossed(level)},
    )
