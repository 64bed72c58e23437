"""The collector refusing this agent (not enrolled, or revoked): said loudly, and remembered.

A refused agent's messages are dead-lettered and never acked, so its outbox only grows. The
refusal is logged once per reason, kept in the outbox file (``kassa-agent outbox status`` shows it
even after a restart) and in the health file, and cleared by the first ack the collector sends.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from agent.outbox import Outbox
from protocol.mqtt.wire import RefusalPayload

log = logging.getLogger(__name__)


class CollectorRefusal:
    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
        self._lock = threading.Lock()
        self.current: dict[str, Any] | None = outbox.refusal()  # reason, detail, since (collector clock)

    def refused(self, refusal: RefusalPayload) -> None:
        with self._lock:
            previous = self.current
            same = previous is not None and previous["reason"] == refusal.refused
            self.current = {
                "reason": refusal.refused,
                "detail": refusal.detail,
                "since": previous["since"] if same and previous else refusal.ts.isoformat(),
                "last": refusal.ts.isoformat(),
            }
            self._outbox.set_refusal(self.current)
        if not same:
            log.error(
                "the collector refuses this agent (%s: %s): nothing it sends is stored and the outbox keeps "
                "growing; enroll the agent (kassa-agent enroll) or ask the collector's operator",
                refusal.refused, refusal.detail, extra={"refused": refusal.refused},
            )

    def accepted(self) -> None:
        """An ack arrived: the collector stores this agent's data (again)."""
        with self._lock:
            if self.current is None:
                return
            self.current = None
            self._outbox.set_refusal(None)
        log.info("the collector accepts this agent's data again")
