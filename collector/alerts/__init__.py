"""Alert rules, time to block and the alert lifecycle: pure functions, no storage or I/O.

The ingest/storage layer builds a ``RuleInput`` per register, calls ``evaluate_all`` and
``time_to_block``, folds the conditions into stored alerts with ``apply_conditions`` and writes
the returned records and ``AlertChange`` history rows.
"""

from collector.alerts.lifecycle import (
    NOTIFIED_CHANGES,
    AlertActionError,
    AlertChange,
    AlertRecord,
    AlertStatus,
    ChangeKind,
    acknowledge,
    apply,
    apply_conditions,
    assign,
    comment,
    silence,
)
from collector.alerts.rules import (
    REGISTER_RULES,
    AlertInputError,
    Condition,
    OfdContract,
    RuleInput,
    evaluate_all,
    format_duration,
    kep_validity,
)
from collector.alerts.severity import RuleId, Severity
from collector.alerts.thresholds import Thresholds
from collector.alerts.time_to_block import (
    NodeRollup,
    TimeToBlock,
    block_candidates,
    rollup,
    severity_counts,
    time_to_block,
)

__all__ = [
    "NOTIFIED_CHANGES",
    "REGISTER_RULES",
    "AlertActionError",
    "AlertChange",
    "AlertInputError",
    "AlertRecord",
    "AlertStatus",
    "ChangeKind",
    "Condition",
    "NodeRollup",
    "OfdContract",
    "RuleId",
    "RuleInput",
    "Severity",
    "Thresholds",
    "TimeToBlock",
    "acknowledge",
    "apply",
    "apply_conditions",
    "assign",
    "block_candidates",
    "comment",
    "evaluate_all",
    "format_duration",
    "kep_validity",
    "rollup",
    "severity_counts",
    "silence",
    "time_to_block",
]
