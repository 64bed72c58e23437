"""What the outbox hands out: its records, gap reports and statistics, and its one error."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

RecordKind = Literal["state", "event"]
AckMode = Literal["collector", "puback"]
KINDS: tuple[RecordKind, ...] = ("state", "event")


class OutboxError(Exception):
    """The outbox cannot store or commit (disk full, file damaged, closed)."""


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    kind: RecordKind
    register_id: str | None
    session: int
    seq: int
    topic: str
    payload: bytes
    created_at: datetime
    published_in: int | None = None  # the connection (session) it was last published in

    @property
    def published(self) -> bool:
        return self.published_in is not None


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """One remote action the outbox's agent answered (``agent.outbox.ledger``)."""

    command_id: str
    action: str
    register_id: str | None
    result: str  # the latest ActionResult, JSON
    final: bool
    received_at: datetime


@dataclass(frozen=True, slots=True)
class GapInfo:
    """Records dropped since the last reported gap; times are the dropped records' ``created_at``."""

    dropped_states: int
    dropped_events: int
    first_dropped_at: datetime | None
    last_dropped_at: datetime | None

    @property
    def total(self) -> int:
        return self.dropped_states + self.dropped_events

    def as_data(self) -> dict[str, Any]:
        """JSON-ready ``data`` of the ``outbox_gap`` event."""
        return {
            "dropped_states": self.dropped_states,
            "dropped_events": self.dropped_events,
            "first_dropped_at": self.first_dropped_at.isoformat() if self.first_dropped_at else None,
            "last_dropped_at": self.last_dropped_at.isoformat() if self.last_dropped_at else None,
        }

    def describe(self) -> str:
        span = ""
        if self.first_dropped_at and self.last_dropped_at:
            span = f" за период {self.first_dropped_at:%Y-%m-%d %H:%M:%S} – {self.last_dropped_at:%Y-%m-%d %H:%M:%S} UTC"
        return (
            f"Буфер отправки переполнен: отброшено состояний {self.dropped_states}, "
            f"событий {self.dropped_events}{span}"
        )


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """What ``kassa-agent outbox status`` prints."""

    states: int
    events: int
    bytes: int
    oldest_at: datetime | None
    awaiting_ack: int  # published, not yet covered by an ack
    dropped_states_total: int
    dropped_events_total: int
    pending_gap: GapInfo | None
    session: int  # the latest session handed out (0 before the first)
    ack_mode: AckMode

    @property
    def depth(self) -> int:
        return self.states + self.events
