"""When a polled state is published: significant changes at once, counters at most every
``counter_interval``, otherwise a heartbeat every ``heartbeat`` seconds.

A busy register changes its receipt counter, last document number and unsent count with every
sale; publishing each of those would make every sale a message and a history row. What matters to
monitoring (shift, ФН, backlog band, device errors, identity: ``protocol.kkt.significance``) still
goes out on the poll that sees it. The comparison is against the last *published* state, so a
counter change held back goes out with the next publish, at the latest ``counter_interval`` later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from protocol.kkt.significance import significant
from protocol.mqtt.rules import StateReason
from protocol.mqtt.wire import RegisterState, to_builtins


def meaningful(state: RegisterState) -> dict[str, Any]:
    """The snapshot minus the fields that change on every poll (or every OFD link check) without
    meaning anything changed, for change detection."""
    snapshot = to_builtins(state)
    del snapshot["read_at"], snapshot["register_clock"]
    link_check = snapshot["ofd"]["link_check"]
    if link_check is not None:
        del link_check["checked_at"], link_check["elapsed_ms"]
    return snapshot


@dataclass(frozen=True, slots=True)
class PublishPolicy:
    counter_interval: float = 60.0
    heartbeat: float = 60.0

    def decide(
        self, published: RegisterState | None, state: RegisterState, *, forced: bool, since_publish: float
    ) -> StateReason | None:
        """Why ``state`` is published now (None: not now). ``published`` is the last state sent,
        ``since_publish`` the seconds since then."""
        if published is None or significant(published) != significant(state):
            return "change"
        if forced:
            return "poll-now"
        if since_publish >= self.counter_interval and meaningful(published) != meaningful(state):
            return "change"
        if since_publish >= self.heartbeat:
            return "heartbeat"
        return None
