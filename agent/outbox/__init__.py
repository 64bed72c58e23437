"""Store-and-forward outbox (the facade lives in ``agent.outbox.store``)."""

from agent.outbox.store import (
    DEFAULT_MAX_AGE,
    DEFAULT_MAX_BYTES,
    KINDS,
    AckMode,
    GapInfo,
    Outbox,
    OutboxError,
    OutboxRecord,
    OutboxStats,
    RecordKind,
)

__all__ = [
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_BYTES",
    "KINDS",
    "AckMode",
    "GapInfo",
    "Outbox",
    "OutboxError",
    "OutboxRecord",
    "OutboxStats",
    "RecordKind",
]
