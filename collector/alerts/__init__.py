"""Alert rules, time to block and the alert lifecycle: pure functions, no storage or I/O.

The ingest/storage layer builds a ``RuleInput`` per register, calls ``evaluate_all`` and
``time_to_block`` and ``sell_verdict`` (can it sell now; when will it stop), folds the conditions into stored alerts with ``apply_conditions`` and writes
the returned records and ``AlertChange`` history rows.
"""

from collector.alerts.fixes import FIXES, fix_text
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
from collector.alerts.verdict import (
    UNKNOWN_RANK,
    OfdNote,
    SellStatus,
    Verdict,
    ofd_text,
    sell_text,
    sell_verdict,
)

__all__ = [
    "FIXES",
    "NOTIFIED_CHANGES",
    "REGISTER_RULES",
    "UNKNOWN_RANK",
    "AlertActionError",
    "AlertChange",
    "AlertInputError",
    "AlertRecord",
    "AlertStatus",
    "ChangeKind",
    "Condition",
    "NodeRollup",
    "OfdContract",
    "OfdNote",
    "RuleId",
    "RuleInput",
    "SellStatus",
    "Severity",
    "Thresholds",
    "TimeToBlock",
    "Verdict",
    "acknowledge",
    "apply",
    "apply_conditions",
    "assign",
    "block_candidates",
    "comment",
    "evaluate_all",
    "fix_text",
    "format_duration",
    "kep_validity",
    "ofd_text",
    "rollup",
    "sell_text",
    "sell_verdict",
    "severity_counts",
    "silence",
    "time_to_block",
]
