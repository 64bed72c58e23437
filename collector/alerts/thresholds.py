"""Per-tenant alert thresholds with the DESIGN §5 defaults, ordering checks and overrides.

Two kinds of ladders:

* *age* ladders (agent offline, OFD backlog, shift length, clock skew) rise with time:
  ``warning < major < critical < blocked``; a level applies once the age is **at or above** it;
* *time left* ladders (ФН validity, OFD paid-until, КЭП) fall towards a deadline:
  ``info > warning > major > critical``; a level applies once the time left is **at or below** it.

Overrides arrive as JSON-ish dicts, so durations accept what pydantic accepts for ``timedelta``:
seconds as a number, ISO 8601 (``"P30D"``) or ``"HH:MM:SS"``.
"""

from __future__ import annotations

from datetime import timedelta
from itertools import pairwise
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from collector.alerts.severity import RuleId

_MIN = timedelta(minutes=1)
_HOUR = timedelta(hours=1)
_DAY = timedelta(days=1)

# Ladders checked by the validator, lowest level first.
_AGE_LADDERS: tuple[tuple[str, ...], ...] = (
    ("agent_offline_warning", "agent_offline_major"),
    ("ofd_backlog_warning", "ofd_backlog_major", "ofd_backlog_critical", "ofd_backlog_blocked"),
    ("shift_warning", "shift_critical", "shift_blocked"),
    ("clock_skew_warning", "clock_skew_major"),
)
_TIME_LEFT_LADDERS: tuple[tuple[str, ...], ...] = (
    ("fn_validity_info", "fn_validity_warning", "fn_validity_major", "fn_validity_critical"),
    ("ofd_paid_warning", "ofd_paid_major"),
    ("kep_warning", "kep_major"),
)


class Thresholds(BaseModel):
    """One tenant's thresholds; every field has the catalogue default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    agent_offline_warning: timedelta = 5 * _MIN
    agent_offline_major: timedelta = 30 * _MIN
    register_unreachable_major: timedelta = 5 * _MIN
    ofd_backlog_warning: timedelta = 4 * _HOUR
    ofd_backlog_major: timedelta = 48 * _HOUR
    ofd_backlog_critical: timedelta = 20 * _DAY
    ofd_backlog_blocked: timedelta = Field(30 * _DAY, description="the ФН's own 30-day rule (error 15h)")
    fn_validity_info: timedelta = 60 * _DAY
    fn_validity_warning: timedelta = 30 * _DAY
    fn_validity_major: timedelta = 14 * _DAY
    fn_validity_critical: timedelta = 3 * _DAY
    shift_warning: timedelta = 20 * _HOUR
    shift_critical: timedelta = 23 * _HOUR + 30 * _MIN
    shift_blocked: timedelta = Field(24 * _HOUR, description="the ФН's own 24-hour rule (error 16h)")
    ofd_paid_warning: timedelta = 30 * _DAY
    ofd_paid_major: timedelta = 7 * _DAY
    clock_skew_warning: timedelta = 2 * _MIN
    clock_skew_major: timedelta = 5 * _MIN
    agent_clock_warning: timedelta = Field(5 * _MIN, description="the agent's computer clock off by this much")
    kep_warning: timedelta = 30 * _DAY
    kep_major: timedelta = 7 * _DAY
    pending: dict[RuleId, timedelta] = Field(
        # A clock error is measured on arrival: messages a collector restart left queued in the
        # broker look "behind" until the queue drains. A wrong clock is still wrong 10 min later.
        default_factory=lambda: {RuleId.AGENT_CLOCK: 10 * _MIN},
        description="flapping guard: how long a condition must persist before its alert is raised "
        "(default 0; agent_clock 10 min)",
    )

    @model_validator(mode="after")
    def _check_order(self) -> Thresholds:
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, timedelta) and value <= timedelta(0):
                raise ValueError(f"{name} must be positive, got {value}")
        for rule, period in self.pending.items():
            if period < timedelta(0):
                raise ValueError(f"pending[{rule.value}] must not be negative, got {period}")
        for ladder in _AGE_LADDERS:
            for lower, higher in pairwise(ladder):
                if getattr(self, higher) <= getattr(self, lower):
                    raise ValueError(
                        f"{higher} ({getattr(self, higher)}) must be greater than {lower} ({getattr(self, lower)})"
                    )
        for ladder in _TIME_LEFT_LADDERS:
            for earlier, later in pairwise(ladder):
                if getattr(self, later) >= getattr(self, earlier):
                    raise ValueError(
                        f"{later} ({getattr(self, later)}) must be less than {earlier} ({getattr(self, earlier)})"
                    )
        return self

    def pending_for(self, rule: RuleId) -> timedelta:
        return self.pending.get(rule, timedelta(0))

    def merged(self, overrides: dict[str, Any]) -> Thresholds:
        """A copy with a tenant's overrides applied and re-validated.

        Unknown names and broken ordering raise ``pydantic.ValidationError`` (a ``ValueError``)
        whose message names the field. ``pending`` entries are merged per rule, not replaced.
        """
        data: dict[str, Any] = self.model_dump()
        for key, value in overrides.items():
            if key == "pending" and isinstance(value, dict):
                data["pending"] = {**data["pending"], **value}
            else:
                data[key] = value
        return type(self).model_validate(data)
