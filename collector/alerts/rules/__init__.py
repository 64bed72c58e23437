"""Alert rules: one pure function per catalogue row (DESIGN §5), ``(RuleInput, Thresholds) -> Condition | None``.

One module per family — ``agent`` (agent and link, agent clock), ``fn``, ``ofd`` (backlog and
contract), ``shift``, ``device`` (paper, cover, register clock skew), ``kep`` (account-level) — over
the shared ``inputs`` (``RuleInput``, ``Condition``), ``clocks`` (the clock model and ages),
``fn_status``, ``ladders`` and ``text``; ``ofd_cause`` tells why documents do not reach the OFD
(the backlog alert carries the cause in its details). ``catalogue`` lists the register rules in catalogue order
and runs them (``evaluate_all``): a new rule goes into its family module and into that list.

Unknown input yields no condition; only ``agent_offline`` is about absence of data.
"""

from collector.alerts.rules.agent import agent_clock, agent_offline, register_unreachable
from collector.alerts.rules.catalogue import REGISTER_RULES, evaluate_all
from collector.alerts.rules.clocks import (
    RegisterClock,
    contract_time_left,
    fn_time_left,
    oldest_unsent_age,
    polled_at,
    register_clock_now,
    shift_age,
)
from collector.alerts.rules.device import clock_skew, cover_open, paper_out
from collector.alerts.rules.fn import fn_critical, fn_memory, fn_not_fiscal, fn_validity
from collector.alerts.rules.fn_status import fn_flag, fn_memory_exhausted, fn_reports_error
from collector.alerts.rules.inputs import AlertInputError, Condition, OfdContract, Rule, RuleInput
from collector.alerts.rules.kep import kep_validity
from collector.alerts.rules.ofd import ofd_backlog, ofd_contract
from collector.alerts.rules.shift import shift_too_long
from collector.alerts.rules.text import format_duration, format_hours

__all__ = [
    "REGISTER_RULES",
    "AlertInputError",
    "Condition",
    "OfdContract",
    "RegisterClock",
    "Rule",
    "RuleInput",
    "agent_clock",
    "agent_offline",
    "clock_skew",
    "contract_time_left",
    "cover_open",
    "evaluate_all",
    "fn_critical",
    "fn_flag",
    "fn_memory",
    "fn_memory_exhausted",
    "fn_not_fiscal",
    "fn_reports_error",
    "fn_time_left",
    "fn_validity",
    "format_duration",
    "format_hours",
    "kep_validity",
    "ofd_backlog",
    "ofd_contract",
    "oldest_unsent_age",
    "paper_out",
    "polled_at",
    "register_clock_now",
    "register_unreachable",
    "shift_age",
    "shift_too_long",
]
