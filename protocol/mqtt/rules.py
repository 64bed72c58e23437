"""What the agent↔collector contract fixes whichever library models it: limits, event kinds, and
how a rejected payload is classified. Shared by the pydantic models (``protocol.mqtt.models``)
and their msgspec mirrors (``protocol.mqtt.wire``), so both refuse a message for the same reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from enum import StrEnum
from typing import Final, Literal, TypeAlias

from protocol.mqtt.errors import (
    AgentMismatch,
    InvalidJson,
    InvalidPayload,
    PayloadTooLarge,
    RegisterMismatch,
    UnsupportedSchemaVersion,
)
from protocol.mqtt.topics import REGISTER_KINDS, AgentTopic, TopicKind

SCHEMA_VERSION: Final = 1
MAX_PAYLOAD_BYTES: Final = 256 * 1024
UINT64_MAX: Final = 2**64 - 1
EPOCH_PATTERN: Final = r"^[0-9a-f]{16,64}$"

KNOWN_COMMANDS: Final = frozenset({"rebirth", "poll-now"})
MAX_ACK_RANGES: Final = 4096  # a collector acks one batch at a time: its records of one session

HistType: TypeAlias = Literal["state", "event"]
RefusalReason: TypeAlias = Literal["unknown_agent", "agent_revoked"]
StateReason: TypeAlias = Literal["change", "heartbeat", "rebirth", "poll-now"]


class EventKind(StrEnum):
    SHIFT_OPENED = "shift_opened"
    SHIFT_CLOSED = "shift_closed"
    FN_REPLACED = "fn_replaced"
    LINK_LOST = "link_lost"
    LINK_REGAINED = "link_regained"
    OFD_BACKLOG_STARTED = "ofd_backlog_started"
    OFD_BACKLOG_CLEARED = "ofd_backlog_cleared"
    FN_WARNING_RAISED = "fn_warning_raised"
    FN_WARNING_CLEARED = "fn_warning_cleared"
    OUTBOX_GAP = "outbox_gap"
    COMMAND_ERROR = "command_error"
    ACTION_RESULT = "action_result"  # data: protocol.mqtt.actions.ActionResult


def seq_ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """``[1, 2, 3, 7, 9, 10]`` → ``[(1, 3), (7, 7), (9, 10)]``: the inclusive runs of the sorted seqs."""
    if isinstance(seqs, list) and len(seqs) == 1:  # the usual per agent and batch
        return [(seqs[0], seqs[0])]
    runs: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if runs and seq == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], seq)
        else:
            runs.append((seq, seq))
    return runs


def check_ack_covers(seq: int | None, ranges: list[tuple[int, int]] | None) -> None:
    """An ack names a committed prefix, committed ranges, or both; a range is [low, high]."""
    if seq is None and not ranges:
        raise ValueError("an ack needs seq (a committed prefix) or ranges (committed seqs)")
    if ranges and any(low > high for low, high in ranges):
        raise ValueError("an ack range must be [low, high] with low <= high")
    if ranges and any(high > UINT64_MAX for _, high in ranges):
        raise ValueError(f"ranges: a seq is at most {UINT64_MAX}")


def check_size(raw: bytes) -> None:
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(f"payload of {len(raw)} bytes exceeds {MAX_PAYLOAD_BYTES}")


def classify_rejection(raw: bytes, topic: AgentTopic | None) -> None:
    """Raise the most specific error for a payload the model rejected (returns if none applies)."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: absurd nesting
        raise InvalidJson(f"not UTF-8 JSON: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise InvalidPayload(f"payload must be a JSON object, got {type(data).__name__}")
    version = data.get("v")
    if version is None:
        raise UnsupportedSchemaVersion("payload has no schema version 'v'")
    if isinstance(version, int) and not isinstance(version, bool) and not 1 <= version <= SCHEMA_VERSION:
        raise UnsupportedSchemaVersion(f"schema version {version} is not supported (this reader knows 1..{SCHEMA_VERSION})")
    agent = data.get("agent")
    if topic is not None and isinstance(agent, str) and agent != topic.agent_id:
        raise AgentMismatch(f"payload agent {agent!r} differs from topic agent {topic.agent_id!r}")


def check_identity(topic: AgentTopic, payload: object) -> None:
    """A decoded payload names the topic's agent (every hist record too) and, on state and event
    topics, its register."""
    agent = getattr(payload, "agent", None)
    if agent is not None and agent != topic.agent_id:
        raise AgentMismatch(f"payload agent {agent!r} differs from topic agent {topic.agent_id!r}")
    # Only the attributes the topic's kind has are looked up: a missing one costs a pydantic
    # ``__getattr__`` raising AttributeError, more than the rest of this check. Only hist payloads
    # carry records (``MODEL_FOR_KIND``/``STRUCT_FOR_KIND``; a test keeps it so).
    if topic.kind in REGISTER_KINDS:
        register = getattr(payload, "register", None)
        if register != topic.register_id:
            raise RegisterMismatch(f"payload register {register!r} differs from topic register {topic.register_id!r}")
    if topic.kind is not TopicKind.HIST:
        return
    for index, record in enumerate(getattr(payload, "records", ())):
        if record.payload.agent != topic.agent_id:
            raise AgentMismatch(
                f"hist record {index} is from agent {record.payload.agent!r}, topic agent is {topic.agent_id!r}"
            )
