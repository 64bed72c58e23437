"""What the alert rules can see of a register, minus what cannot change their verdict — so an
ingest-triggered evaluation can skip a register whose new message changed nothing the rules read.

A poll publishes a new state every few seconds, yet most carry only a new receipt counter, a new
poll time and the register clock read at that poll. The rules read the register clock only as
``register_clock + (now − read_at)``, so the pair matters only through its offset; receipts and
the last document number are read by no rule. Everything else of ``RuleInput`` (the rest of the
state, agent and link status, contract, zone) must be equal, field by field, for the verdict to be
equal at the same ``now``. Time moving on is the periodic sweep's job, exactly as for a register
that sends nothing.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from collector.alerts import RuleInput

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def rule_inputs_key(inp: RuleInput) -> Any | None:
    """A comparable key of ``inp`` with ``now`` and the rule-blind fields removed; None when the
    input cannot be reduced safely (then the register is always evaluated)."""
    state = inp.state
    if state is None:
        return replace(inp, now=_EPOCH)
    polled = state.read_at or inp.state_received_at
    offset: timedelta | None = None
    if state.register_clock is not None:
        if polled is None or polled.utcoffset() is None or polled > inp.now:
            return None  # a poll "in the future" is clamped by the rules: not offset-invariant
        offset = state.register_clock - polled.astimezone(UTC).replace(tzinfo=None)
    projected = state.model_copy(
        update={
            "read_at": None if state.register_clock is not None else state.read_at,
            "register_clock": None,
            "last_fd_number": None,
            "shift": state.shift.model_copy(update={"receipts": None}),
        }
    )
    # Arrival time stands in for read_at and for the agent's last_seen when those are unknown.
    received = inp.state_received_at if state.read_at is None or inp.agent_last_seen is None else None
    return (replace(inp, now=_EPOCH, state=projected, state_received_at=received), offset)
