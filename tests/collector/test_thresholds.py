from datetime import timedelta

import pytest
from pydantic import ValidationError

from collector.alerts.severity import RuleId, Severity
from collector.alerts.thresholds import Thresholds

DAY, HOUR, MIN = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)


def test_defaults_are_the_catalogue() -> None:
    thr = Thresholds()
    assert (thr.agent_offline_warning, thr.agent_offline_major) == (5 * MIN, 30 * MIN)
    assert thr.register_unreachable_major == 5 * MIN
    assert (thr.ofd_backlog_warning, thr.ofd_backlog_major, thr.ofd_backlog_critical, thr.ofd_backlog_blocked) == (
        4 * HOUR,
        48 * HOUR,
        20 * DAY,
        30 * DAY,
    )
    assert (
        thr.fn_validity_info,
        thr.fn_validity_warning,
        thr.fn_validity_major,
        thr.fn_validity_critical,
    ) == (60 * DAY, 30 * DAY, 14 * DAY, 3 * DAY)
    assert (thr.shift_warning, thr.shift_critical, thr.shift_blocked) == (20 * HOUR, 23 * HOUR + 30 * MIN, 24 * HOUR)
    assert (thr.ofd_paid_warning, thr.ofd_paid_major) == (30 * DAY, 7 * DAY)
    assert (thr.clock_skew_warning, thr.clock_skew_major) == (2 * MIN, 5 * MIN)
    assert (thr.kep_warning, thr.kep_major) == (30 * DAY, 7 * DAY)
    assert all(thr.pending_for(rule) == timedelta(0) for rule in RuleId if rule is not RuleId.AGENT_CLOCK)
    assert (thr.agent_clock_warning, thr.pending_for(RuleId.AGENT_CLOCK)) == (5 * MIN, 10 * MIN)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"agent_offline_major": 5 * MIN}, "agent_offline_major"),
        ({"ofd_backlog_major": 3 * HOUR}, "ofd_backlog_major"),
        ({"ofd_backlog_critical": 31 * DAY}, "ofd_backlog_blocked"),
        ({"shift_critical": 19 * HOUR}, "shift_critical"),
        ({"shift_blocked": 23 * HOUR}, "shift_blocked"),
        ({"clock_skew_warning": 6 * MIN}, "clock_skew_major"),
        ({"fn_validity_warning": 61 * DAY}, "fn_validity_warning"),
        ({"fn_validity_critical": 14 * DAY}, "fn_validity_critical"),
        ({"ofd_paid_major": 30 * DAY}, "ofd_paid_major"),
        ({"kep_major": 31 * DAY}, "kep_major"),
    ],
)
def test_out_of_order_ladder_names_the_field(overrides: dict[str, timedelta], named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        Thresholds(**overrides)


@pytest.mark.parametrize("value", [timedelta(0), -MIN])
def test_non_positive_threshold_rejected(value: timedelta) -> None:
    with pytest.raises(ValidationError, match="register_unreachable_major must be positive"):
        Thresholds(register_unreachable_major=value)


def test_merged_accepts_seconds_and_iso_and_keeps_the_rest() -> None:
    base = Thresholds()
    merged = base.merged({"ofd_backlog_warning": 7200, "fn_validity_info": "P90D"})
    assert merged.ofd_backlog_warning == 2 * HOUR
    assert merged.fn_validity_info == 90 * DAY
    assert merged.shift_warning == base.shift_warning
    assert base.ofd_backlog_warning == 4 * HOUR  # the original is untouched


def test_merged_validates_order_and_unknown_names() -> None:
    with pytest.raises(ValidationError, match="ofd_backlog_major"):
        Thresholds().merged({"ofd_backlog_warning": "P3D"})
    with pytest.raises(ValidationError, match="no_such_threshold"):
        Thresholds().merged({"no_such_threshold": 5})


def test_pending_periods_merge_per_rule() -> None:
    thr = Thresholds().merged({"pending": {"paper_out": 120}})
    thr = thr.merged({"pending": {"cover_open": 60}})
    assert thr.pending_for(RuleId.PAPER_OUT) == 2 * MIN
    assert thr.pending_for(RuleId.COVER_OPEN) == MIN
    assert thr.pending_for(RuleId.OFD_BACKLOG) == timedelta(0)
    with pytest.raises(ValidationError, match="pending"):
        Thresholds().merged({"pending": {"paper_out": -1}})
    with pytest.raises(ValidationError):
        Thresholds().merged({"pending": {"not_a_rule": 1}})


def test_severity_order_and_parse() -> None:
    assert Severity.INFO < Severity.WARNING < Severity.MAJOR < Severity.CRITICAL < Severity.BLOCKED
    assert Severity.parse(" Major ") is Severity.MAJOR
    assert Severity.BLOCKED.label == "blocked"
    assert Severity.CRITICAL.title_ru == "критично"
    with pytest.raises(ValueError, match="unknown severity 'minor'"):
        Severity.parse("minor")
    # Parsed labels are remembered; the answers stay the same, and an unknown one keeps failing.
    assert [Severity.parse(text) for text in ("major", "major", " Major ", "BLOCKED")] == [
        Severity.MAJOR, Severity.MAJOR, Severity.MAJOR, Severity.BLOCKED,
    ]  # fmt: skip
    with pytest.raises(ValueError, match="unknown severity 'minor'"):
        Severity.parse("minor")
