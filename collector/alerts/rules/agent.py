"""Agent and link family: the agent is silent, its register does not answer, its computer clock is off."""

from __future__ import annotations

from collector.alerts.rules.clocks import ZERO, aware_utc
from collector.alerts.rules.inputs import Condition, RuleInput
from collector.alerts.rules.ladders import by_age, crossed, levels
from collector.alerts.rules.text import format_duration
from collector.alerts.severity import RuleId, Severity
from collector.alerts.thresholds import Thresholds


def agent_offline(inp: RuleInput, thr: Thresholds) -> Condition | None:
    """LWT or missed heartbeats: silence since the agent was last seen (or its last state arrived)."""
    if inp.agent_online is True and inp.agent_last_seen is None:
        return None
    seen = inp.agent_last_seen or inp.state_received_at
    if seen is None:
        if inp.agent_online is False:
            return Condition(
                rule=RuleId.AGENT_OFFLINE,
                severity=Severity.WARNING,
                message="Агент не на связи; время последней связи неизвестно",
                details={"silence_seconds": None, "agent_online": False},
            )
        return None
    silence = max(aware_utc(inp.now) - aware_utc(seen), ZERO)
    level = by_age(
        silence,
        levels(thr, "agent_offline", "major", "warning"),
    )
    if level is None:
        return None
    return Condition(
        rule=RuleId.AGENT_OFFLINE,
        severity=level[0],
        message=f"Агент не на связи {format_duration(silence)}",
        details={
            "silence_seconds": silence.total_seconds(),
            "agent_online": inp.agent_online,
            "last_seen": aware_utc(seen).isoformat(),
            **crossed(level),
        },
    )


def register_unreachable(inp: RuleInput, thr: Thresholds) -> Condition | None:
    """The agent is up but its driver cannot talk to the register. Offline agents are ``agent_offline``."""
    if inp.agent_online is False or inp.link_up is not False or inp.link_down_since is None:
        return None
    down = max(aware_utc(inp.now) - aware_utc(inp.link_down_since), ZERO)
    if down < thr.register_unreachable_major:
        return None
    return Condition(
        rule=RuleId.REGISTER_UNREACHABLE,
        severity=Severity.MAJOR,
        message=f"Агент на связи, но касса не отвечает {format_duration(down)}",
        details={
            "down_seconds": down.total_seconds(),
            "threshold": "major",
            "threshold_seconds": thr.register_unreachable_major.total_seconds(),
        },
    )


def agent_clock(inp: RuleInput, thr: Thresholds) -> Condition | None:
    """The agent's computer clock is off. Its data are placed on the collector's clock regardless,
    but its logs, its outbox's age limit and the register-clock comparison on site all go wrong."""
    offset = inp.agent_clock_offset
    if offset is None or abs(offset) < thr.agent_clock_warning:
        return None
    direction = "спешат" if offset > ZERO else "отстают"
    return Condition(
        rule=RuleId.AGENT_CLOCK,
        severity=Severity.WARNING,
        message=(
            f"Часы компьютера с агентом {direction} на {format_duration(offset)}: "
            "настройте синхронизацию времени (NTP) на этом компьютере"
        ),
        details={
            "offset_seconds": offset.total_seconds(),
            "threshold": "warning",
            "threshold_seconds": thr.agent_clock_warning.total_seconds(),
        },
    )
