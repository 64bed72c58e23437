"""What every rule reads and returns: the register snapshot (``RuleInput``) and the found ``Condition``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from collector.alerts.severity import RuleId, Severity
from collector.alerts.thresholds import Thresholds

if TYPE_CHECKING:
    from protocol.kkt.vocabulary import AnyRegisterState as RegisterState


class AlertInputError(ValueError):
    """The caller passed a rule input the rules cannot interpret (e.g. a naive ``now``)."""


@dataclass(frozen=True)
class OfdContract:
    """The OFD service contract of one register, from the contract registry."""

    activated: bool
    paid_until: date | None = None
    ofd_operator: str | None = None  # the contracted OFD (``ofd_operators`` key): tells a wrong server apart


@dataclass(frozen=True, kw_only=True)
class RuleInput:
    """Everything the rules need about one register at one moment. All aware datetimes are UTC-able."""

    register_id: str
    now: datetime
    state: RegisterState | None = None
    state_received_at: datetime | None = None
    polled_at: datetime | None = None  # when the state was read, on the collector's clock
    agent_online: bool | None = None
    agent_last_seen: datetime | None = None
    link_up: bool | None = None
    link_down_since: datetime | None = None
    contract: OfdContract | None = None
    tz: tzinfo | None = None
    agent_clock_offset: timedelta | None = None  # how far the agent's clock is ahead (negative: behind)

    def __post_init__(self) -> None:
        for name in ("now", "state_received_at", "polled_at", "agent_last_seen", "link_down_since"):
            value = getattr(self, name)
            if value is not None and value.utcoffset() is None:
                raise AlertInputError(f"RuleInput.{name} must be an aware datetime, got naive {value!r}")


class Condition(BaseModel):
    """What a rule found: the alert lifecycle turns it into an alert record."""

    model_config = ConfigDict(frozen=True)

    rule: RuleId
    severity: Severity
    message: str
    details: dict[str, Any]
    blocks_at: datetime | None = None


Rule = Callable[[RuleInput, Thresholds], Condition | None]
