"""Register rules in catalogue order, and ``evaluate_all`` running them. A new rule: write it in its family module, list it here."""

from __future__ import annotations

from collector.alerts.rules.agent import agent_clock, agent_offline, register_unreachable
from collector.alerts.rules.device import clock_skew, cover_open, paper_out
from collector.alerts.rules.fn import fn_critical, fn_memory, fn_not_fiscal, fn_validity
from collector.alerts.rules.inputs import Condition, Rule, RuleInput
from collector.alerts.rules.ofd import ofd_backlog, ofd_contract
from collector.alerts.rules.shift import shift_too_long
from collector.alerts.severity import RuleId
from collector.alerts.thresholds import Thresholds

# Register-level rules in catalogue order (kep_validity is account-level and takes other inputs).
REGISTER_RULES: dict[RuleId, Rule] = {
    RuleId.AGENT_OFFLINE: agent_offline,
    RuleId.REGISTER_UNREACHABLE: register_unreachable,
    RuleId.OFD_BACKLOG: ofd_backlog,
    RuleId.FN_VALIDITY: fn_validity,
    RuleId.FN_MEMORY: fn_memory,
    RuleId.FN_CRITICAL: fn_critical,
    RuleId.FN_NOT_FISCAL: fn_not_fiscal,
    RuleId.SHIFT_TOO_LONG: shift_too_long,
    RuleId.OFD_CONTRACT: ofd_contract,
    RuleId.PAPER_OUT: paper_out,
    RuleId.COVER_OPEN: cover_open,
    RuleId.CLOCK_SKEW: clock_skew,
    RuleId.AGENT_CLOCK: agent_clock,
}


def evaluate_all(inp: RuleInput, thresholds: Thresholds) -> list[Condition]:
    """Every register rule that currently holds, in catalogue order."""
    found = (rule(inp, thresholds) for rule in REGISTER_RULES.values())
    return [condition for condition in found if condition is not None]
