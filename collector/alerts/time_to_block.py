"""Time to block: how long until a register can no longer make fiscal documents, and why.

The moments the register stops making fiscal documents, one per cause (issue 16 §1):

* ``ofd_backlog``    — the ФН's 30-day limit (``Thresholds.ofd_backlog_blocked``) minus the age of the
  oldest unsent document; 0 when the ФН already refuses with error 15h;
* ``fn_validity``    — end of the ФН's valid-until day minus now, on the register clock; 0 on error 05h;
* ``fn_memory``      — 0 when the ФН's resource is exhausted;
* ``shift_too_long`` — the end of the 24 h shift (``Thresholds.shift_blocked``); 0 once expired;
* ``ofd_contract``   — an unpaid OFD does not stop the register by itself: it stops the transfer to
  the ФНС, and the 30-day clock then runs, so its stop is the end of the paid period + 30 days
  (only when no document is already waiting: then ``ofd_backlog`` is the earlier, real clock).

Seconds may be ≤ 0 (already blocked). Which of these matter now is ``verdict.sell_verdict``'s call.
``rollup`` sums severity counts and keeps the earliest block for a tree node.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict

from collector.alerts.rules import (
    Condition,
    RuleInput,
    contract_time_left,
    fn_memory_exhausted,
    fn_reports_error,
    fn_time_left,
    oldest_unsent_age,
    shift_age,
)
from collector.alerts.severity import RuleId, Severity
from collector.alerts.thresholds import Thresholds
from protocol.kkt.fn import FN_ERROR_OFD_WAIT_EXHAUSTED, FN_ERROR_SERVICE_LIFE_ENDED, FN_ERROR_SHIFT_OVER_24H
from protocol.kkt.state import ShiftStatus

_ZERO = timedelta(0)


class TimeToBlock(BaseModel):
    model_config = ConfigDict(frozen=True)

    seconds: float  # ≤ 0 once blocked
    cause: RuleId
    blocks_at: datetime  # aware UTC; compare these across registers evaluated at different moments


def block_candidates(inp: RuleInput, thresholds: Thresholds) -> list[TimeToBlock]:
    """One entry per threatening cause (its own time left), in catalogue order."""
    found: dict[RuleId, timedelta] = {}
    aged = oldest_unsent_age(inp)
    if aged is not None:
        found[RuleId.OFD_BACKLOG] = thresholds.ofd_backlog_blocked - aged[0]
    if fn_reports_error(inp.state, FN_ERROR_OFD_WAIT_EXHAUSTED):
        found[RuleId.OFD_BACKLOG] = min(found.get(RuleId.OFD_BACKLOG, _ZERO), _ZERO)
    timed = fn_time_left(inp)
    if timed is not None:
        found[RuleId.FN_VALIDITY] = timed[0]
    if fn_reports_error(inp.state, FN_ERROR_SERVICE_LIFE_ENDED):
        found[RuleId.FN_VALIDITY] = min(found.get(RuleId.FN_VALIDITY, _ZERO), _ZERO)
    if fn_memory_exhausted(inp.state):
        found[RuleId.FN_MEMORY] = _ZERO
    shift = shift_age(inp)
    if shift is not None:
        found[RuleId.SHIFT_TOO_LONG] = thresholds.shift_blocked - shift[0]
    if inp.state is not None and (
        inp.state.shift.status is ShiftStatus.EXPIRED or fn_reports_error(inp.state, FN_ERROR_SHIFT_OVER_24H)
    ):
        found[RuleId.SHIFT_TOO_LONG] = min(found.get(RuleId.SHIFT_TOO_LONG, _ZERO), _ZERO)
    paid_left = contract_time_left(inp)
    if paid_left is not None and aged is None:
        found[RuleId.OFD_CONTRACT] = max(paid_left, _ZERO) + thresholds.ofd_backlog_blocked
    now = inp.now.astimezone(UTC)
    return [
        TimeToBlock(seconds=left.total_seconds(), cause=cause, blocks_at=now + left)
        for cause, left in found.items()
    ]


def time_to_block(inp: RuleInput, thresholds: Thresholds) -> TimeToBlock | None:
    """The earliest block among the candidates; ties go to the cause listed first. None if nothing threatens."""
    candidates = block_candidates(inp, thresholds)
    return min(candidates, key=lambda item: item.seconds) if candidates else None


SeverityCounts = Mapping[Severity, int]


class NodeRollup(NamedTuple):
    """Counts by severity and the earliest block under a tree node. Itself a valid ``rollup`` item,
    so a parent rolls up its children's rollups."""

    counts: dict[Severity, int]
    earliest_block: TimeToBlock | None

    @property
    def worst(self) -> Severity | None:
        present = [severity for severity, count in self.counts.items() if count > 0]
        return max(present) if present else None


def severity_counts(conditions: Iterable[Condition]) -> dict[Severity, int]:
    """How many conditions (alerts) of each severity one register has; every severity present."""
    counts = dict.fromkeys(Severity, 0)
    for condition in conditions:
        counts[condition.severity] += 1
    return counts


def rollup(items: Iterable[tuple[SeverityCounts, TimeToBlock | None]]) -> NodeRollup:
    """Sum severity counts and keep the earliest ``blocks_at`` over registers or child nodes."""
    counts = dict.fromkeys(Severity, 0)
    earliest: TimeToBlock | None = None
    for item_counts, block in items:
        for severity, count in item_counts.items():
            counts[Severity(severity)] += count
        if block is not None and (earliest is None or block.blocks_at < earliest.blocks_at):
            earliest = block
    return NodeRollup(counts, earliest)
