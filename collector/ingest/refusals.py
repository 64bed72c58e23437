"""Telling a refused agent (not enrolled, revoked) that nothing it sends is stored.

Its messages go to the dead letters and are never acked, so without a word its outbox would grow
until it drops data, and the installer would see nothing wrong on site. The refusal goes to the
agent's own ack topic (the one downlink its broker ACL lets it read), at most once per ``interval``
per agent: an agent publishing every second must not get a message back for every batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Final

from collector.ingest.admission import Refusal
from protocol.mqtt.models import RefusalPayload, encode

INTERVAL: Final = 30.0


class RefusalNotices:
    def __init__(self, interval: float = INTERVAL, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._sent: dict[str, tuple[str, float]] = {}  # agent → (reason, when) of the last refusal sent

    def due(self, refused: Mapping[str, Refusal]) -> list[tuple[str, bytes]]:
        """(agent, encoded refusal) for each refused agent not told this reason within the interval."""
        now = self._clock()
        out = []
        for agent, refusal in sorted(refused.items()):
            last = self._sent.get(agent)
            if last is not None and last[0] == refusal.reason and now - last[1] < self._interval:
                continue
            self._sent[agent] = (refusal.reason, now)
            payload = RefusalPayload(refused=refusal.reason, detail=refusal.detail, ts=datetime.now(UTC))
            out.append((agent, encode(payload)))
        return out
