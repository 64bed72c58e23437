"""Severity ladders: the highest level an age (or time left) has reached, and the age-to-block rule shape."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from collector.alerts.rules.clocks import ZERO, RegisterClock
from collector.alerts.rules.inputs import Condition
from collector.alerts.rules.text import countdown, format_duration
from collector.alerts.severity import RuleId, Severity
from collector.alerts.thresholds import Thresholds


def by_age(age: timedelta, ladder: Sequence[tuple[Severity, str, timedelta]]) -> tuple[Severity, str, timedelta] | None:
    """The highest level whose limit the age has reached; ``ladder`` is listed highest first."""
    for level in ladder:
        if age >= level[2]:
            return level
    return None


def by_time_left(
    left: timedelta, ladder: Sequence[tuple[Severity, str, timedelta]]
) -> tuple[Severity, str, timedelta] | None:
    """The highest level whose limit the time left has fallen to; ``ladder`` is listed highest first."""
    for level in ladder:
        if left <= level[2]:
            return level
    return None


def levels(thr: Thresholds, prefix: str, *names: str) -> list[tuple[Severity, str, timedelta]]:
    """``levels(thr, "shift", "blocked", "warning")`` → ``[(BLOCKED, "blocked", thr.shift_blocked), …]``."""
    steps = _STEPS.get((prefix, names)) or _steps(prefix, names)
    return [(severity, name, getattr(thr, attribute)) for severity, name, attribute in steps]


# (prefix, names) → (severity, name, threshold attribute) per level: the rules ask for a handful of
# ladders, each on every evaluation; parsing the names and formatting the attributes once is enough.
_STEPS: dict[tuple[str, tuple[str, ...]], tuple[tuple[Severity, str, str], ...]] = {}


def _steps(prefix: str, names: tuple[str, ...]) -> tuple[tuple[Severity, str, str], ...]:
    steps = tuple((Severity.parse(name), name, f"{prefix}_{name}") for name in names)
    _STEPS[(prefix, names)] = steps
    return steps


def crossed(level: tuple[Severity, str, timedelta]) -> dict[str, Any]:
    return {"threshold": level[1], "threshold_seconds": level[2].total_seconds()}


def age_to_block(
    rule: RuleId,
    aged: tuple[timedelta, RegisterClock] | None,
    fn_blocked: bool,
    ladder: Sequence[tuple[Severity, str, timedelta]],
    limit: timedelta,
    now: datetime,
    *,
    what: str,
    blocked_text: str,
    details: dict[str, Any],
    age_text: Callable[[timedelta], str] = format_duration,
) -> Condition | None:
    """An age that blocks the register at ``limit``; ``fn_blocked`` = the ФН already refuses, age or not."""
    if aged is None:
        if not fn_blocked:
            return None
        return Condition(
            rule=rule,
            severity=Severity.BLOCKED,
            message=blocked_text,
            details={**details, "age_seconds": None, "threshold": "fn_reported"},
            blocks_at=now,  # already blocked; the moment it happened is unknown, so "not later than now"
        )
    age, clock = aged
    left = limit - age
    level = (Severity.BLOCKED, "fn_reported", limit) if fn_blocked else by_age(age, ladder)
    if level is None:
        return None
    return Condition(
        rule=rule,
        severity=level[0],
        message=f"{what} {age_text(age)}; {countdown(left, 'блокировка')}",
        details={
            **details,
            "age_seconds": age.total_seconds(),
            "seconds_to_block": left.total_seconds(),
            "clock": clock.source,
            **crossed(level),
        },
        blocks_at=now + (min(left, ZERO) if fn_blocked else left),
    )
