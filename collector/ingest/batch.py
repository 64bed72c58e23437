"""What one ingest batch is made of: each message classified (decoded, rejected or not data), the
batch's result, and how a storage failure is named in a dead letter and in the log."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import sqlalchemy as sa

from collector.ingest.admission import Refusal
from collector.ingest.consumer import InboundMessage
from collector.ingest.writes import Decoded, FreshState
from collector.storage import StorageError
from collector.storage.rows import fits_int64
from protocol.mqtt import models
from protocol.mqtt.errors import ContractError, InvalidPayload, PayloadTooLarge, TopicError
from protocol.mqtt.topics import COLLECTOR_STATUS_TOPIC, AgentTopic, TopicKind
from protocol.mqtt.wire import Envelope, HistBatch, Payload, StatusPayload, decode

TOPIC_CACHE = 1 << 17  # topics remembered parsed: one per register and kind, about 2 per register

# Topics repeat with every poll and parsing one (id checks) is pure: each is parsed once.
_parse_topic = functools.lru_cache(maxsize=TOPIC_CACHE)(AgentTopic.parse)


class CannotCommit(Exception):
    """Even a dead letter could not be committed: the database refuses writes, not the message."""


@dataclass(frozen=True, slots=True)
class Rejected:
    inbound: InboundMessage
    reason: str
    detail: str


@dataclass
class BatchResult:
    committed: list[InboundMessage] = field(default_factory=list)  # stored or dead-lettered: ack them
    dead_letters: list[Rejected] = field(default_factory=list)
    acks: dict[tuple[str, int], int] = field(default_factory=dict)  # (agent, session) → seq to publish
    # (agent, session) → every seq this batch committed: the selective acks of competing collectors
    committed_seqs: dict[tuple[str, int], list[int]] = field(default_factory=dict)
    changed_registers: set[str] = field(default_factory=set)
    fresh_states: dict[str, FreshState] = field(default_factory=dict)  # parsed states the batch stored
    status_agents: set[str] = field(default_factory=set)
    duplicates: int = 0
    sessions: dict[str, int] = field(default_factory=dict)  # agent → highest session stored
    births: set[str] = field(default_factory=set)  # agents whose live birth was stored
    # (agent, stored session) → (the agent's own session, epoch): how each ack is worded (epochs.py)
    own_sessions: dict[tuple[str, int], tuple[int, str | None]] = field(default_factory=dict)
    reinstalls: int = 0
    refusals: dict[str, Refusal] = field(default_factory=dict)  # agents whose messages were not stored

    def merge(self, other: BatchResult) -> None:
        """Add a later committed result (message-by-message writing)."""
        self.committed += other.committed
        self.dead_letters += other.dead_letters
        self.acks.update(other.acks)
        for key, seqs in other.committed_seqs.items():
            self.committed_seqs.setdefault(key, []).extend(seqs)
        self.changed_registers |= other.changed_registers
        self.fresh_states.update(other.fresh_states)  # commit order: a later write wins
        self.status_agents |= other.status_agents
        self.duplicates += other.duplicates
        for agent, session in other.sessions.items():
            self.sessions[agent] = max(session, self.sessions.get(agent, session))
        self.births |= other.births
        self.own_sessions.update(other.own_sessions)
        self.reinstalls += other.reinstalls
        self.refusals.update(other.refusals)


def classify(message: InboundMessage) -> Decoded | Rejected | None:
    """Decode one message; None for what is not data: an empty retained status (cleared), our own status."""
    if message.topic == COLLECTOR_STATUS_TOPIC:
        return None  # our own retained status matches kassa/v1/+/status
    if message.oversize is not None:
        return Rejected(
            message, PayloadTooLarge.reason,
            f"payload of {message.oversize.size} bytes exceeds the collector's limit of {message.oversize.limit}",
        )
    try:
        topic = _parse_topic(message.topic)
        if topic.kind in (TopicKind.CMD, TopicKind.ACK):
            raise TopicError(f"topic {message.topic!r} is a downlink topic; agents must not publish it")
        if topic.kind is TopicKind.STATUS and not message.payload:
            return None
        return Decoded(message, topic, decode_uplink(topic, message.payload))
    except ContractError as exc:
        return Rejected(message, exc.reason, exc.message)


def decode_uplink(topic: AgentTopic, raw: bytes) -> Payload:
    """An agent's message as the contract's msgspec mirror (``protocol.mqtt.wire``): half the
    pydantic model's decode time, and the state re-encodes for storage in a sixth. A message it
    refuses is decoded again by the pydantic models only to name every bad field in the dead letter
    (the mirrors refuse what the models refuse: ``tests/protocol/test_mqtt_wire_drift.py``)."""
    try:
        return decode(topic, raw)
    except InvalidPayload:
        models.decode(topic, raw)  # raises with pydantic's field-by-field text
        raise  # the models would take it (never seen): the mirror's refusal stands


def live_key(item: Decoded) -> tuple[str, str | None, int, int] | None:
    """(agent, epoch, session, seq) of a sequenced live message; None for status and hist."""
    payload = item.payload
    if isinstance(payload, StatusPayload | HistBatch) or not isinstance(payload, Envelope):
        return None
    if not (fits_int64(payload.session) and fits_int64(payload.seq)):
        return None  # no mark can hold it; the dead letter alone must still be filed
    return payload.agent, epoch_of(payload), payload.session, payload.seq


def epoch_of(envelope: object) -> str | None:
    """The envelope's installation epoch; None for an agent that sends none (the mirrors say ``UNSET``)."""
    return getattr(envelope, "epoch", None) or None


def highest_claim(payload: object) -> tuple[int, str | None] | None:
    """The highest (session, epoch) a message claims: its envelope's, or the newest record's of a hist batch."""
    if isinstance(payload, HistBatch):
        claims = [(record.payload.session, epoch_of(record.payload)) for record in payload.records]
        return max(claims, key=lambda claim: claim[0], default=None)
    return (payload.session, epoch_of(payload)) if isinstance(payload, Envelope) else None


_KINDS = frozenset(kind.value for kind in TopicKind)


def kind_label(topic: str) -> str:
    parts = topic.split("/")
    return parts[3] if len(parts) > 3 and parts[3] in _KINDS else "other"


def failure_text(exc: BaseException) -> str:
    """The driver's message without SQLAlchemy's statement and parameters (which can be huge)."""
    return (str(exc.orig) if isinstance(exc, sa.exc.DBAPIError) else str(exc)).strip()


def first_line(exc: BaseException) -> str:
    lines = failure_text(exc).splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def storage_reason(exc: Exception) -> str:
    """``RegisterOwnedElsewhere`` → ``register_owned_elsewhere``; anything unexpected → ``internal_error``."""
    if not isinstance(exc, StorageError | sa.exc.IntegrityError | sa.exc.DataError):
        return "internal_error"
    name = type(exc).__name__
    return "".join(f"_{ch.lower()}" if ch.isupper() else ch for ch in name).lstrip("_")
