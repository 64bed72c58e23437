"""КЭП family: the account-level qualified e-signature validity (not a register rule)."""

from __future__ import annotations

from datetime import UTC, date, datetime, tzinfo

from collector.alerts.rules.clocks import ZERO, end_of_day
from collector.alerts.rules.inputs import AlertInputError, Condition
from collector.alerts.rules.ladders import by_time_left, crossed, levels
from collector.alerts.rules.text import format_date, format_duration
from collector.alerts.severity import RuleId
from collector.alerts.thresholds import Thresholds


def kep_validity(
    valid_until: date | datetime, now: datetime, thr: Thresholds, tz: tzinfo | None = None
) -> Condition | None:
    """Account-level rule for a КЭП (qualified e-signature): warning 30 d, major 7 d and after expiry.

    ``valid_until`` is the certificate's notAfter (aware datetime) or a date, which lasts through its
    day in ``tz`` (UTC when unknown).
    """
    if now.utcoffset() is None:
        raise AlertInputError(f"kep_validity: now must be an aware datetime, got naive {now!r}")
    if isinstance(valid_until, datetime):
        if valid_until.utcoffset() is None:
            raise AlertInputError(f"kep_validity: valid_until datetime must be aware, got naive {valid_until!r}")
        end: datetime | None = valid_until
        shown = valid_until.astimezone(tz or UTC).date()
    else:
        naive_end = end_of_day(valid_until)
        end = None if naive_end is None else naive_end.replace(tzinfo=tz or UTC)
        shown = valid_until
    if end is None:
        return None
    left = end - now
    level = by_time_left(
        left,
        levels(thr, "kep", "major", "warning"),
    )
    if level is None:
        return None
    if left > ZERO:
        message = f"КЭП действует до {format_date(shown)}: осталось {format_duration(left)}"
    else:
        message = f"Срок КЭП истёк {format_date(shown)}"
    return Condition(
        rule=RuleId.KEP_VALIDITY,
        severity=level[0],
        message=message,
        details={"valid_until": valid_until.isoformat(), "seconds_left": left.total_seconds(), **crossed(level)},
    )
