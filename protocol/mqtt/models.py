"""Payload models of the agent↔collector contract, and ``encode``/``decode``.

Every message is compact UTF-8 JSON. Readers ignore unknown fields (``extra="ignore"``) so an
agent may add optional fields without a schema bump; ``v`` is bumped only for changes an older
reader would misread, and a reader refuses a ``v`` newer than it knows.

Sequence rules (Sparkplug-like, without its 0–255 wrap):

* ``session`` is a uint64 persisted by the agent (its outbox) and +1 per MQTT connection, so a
  restart never reuses one.
* ``epoch`` (optional, added compatibly: older agents omit it) is a random id made when the
  agent's outbox is created. A new outbox (reinstall, new disk, deleted file) restarts sessions
  at 1, so (session, seq) alone would collide with the old installation's; the epoch tells the
  two apart. The collector orders sessions by (epoch first seen, session); ``ack`` echoes the
  epoch, and an agent ignores an ack of another epoch.
* ``seq`` is a uint64 counter per session starting at 0, never wrapping. Birth, state and event
  messages draw from it. Status messages carry ``seq=0`` and are not sequenced: the LWT is fixed
  at connect time, before any seq is used.
* Replayed history (``hist``) keeps each record's original envelope; a batch has no session/seq
  of its own, so replay never consumes sequence numbers.
* ``ack`` says: every record of this agent's ``session`` with ``seq`` ≤ the given one is
  committed to the collector's database. The ack topic also carries a **refusal** (a payload with
  ``refused``) when the collector will not store the agent's data at all (not enrolled, revoked):
  nothing will ever be acked, and the agent says so instead of letting its outbox grow in silence.
  An agent that predates refusals logs it as a malformed ack and carries on.
"""

from __future__ import annotations

import functools
import math
import re
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal, TypeAlias

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from protocol.kkt.state import RegisterState
from protocol.mqtt.actions import ActionName, ActionStatus
from protocol.mqtt.errors import InvalidPayload, UnsupportedSchemaVersion
from protocol.mqtt.rules import EPOCH_PATTERN as EPOCH_PATTERN
from protocol.mqtt.rules import KNOWN_COMMANDS as KNOWN_COMMANDS
from protocol.mqtt.rules import MAX_ACK_RANGES as MAX_ACK_RANGES
from protocol.mqtt.rules import MAX_PAYLOAD_BYTES as MAX_PAYLOAD_BYTES
from protocol.mqtt.rules import SCHEMA_VERSION as SCHEMA_VERSION
from protocol.mqtt.rules import UINT64_MAX as UINT64_MAX
from protocol.mqtt.rules import EventKind as EventKind
from protocol.mqtt.rules import HistType as HistType
from protocol.mqtt.rules import RefusalReason as RefusalReason
from protocol.mqtt.rules import StateReason, check_ack_covers, check_identity, check_size, classify_rejection
from protocol.mqtt.rules import seq_ranges as seq_ranges
from protocol.mqtt.topics import COLLECTOR_STATUS_TOPIC, ID_PATTERN, AgentTopic, TopicKind
from protocol.mqtt.wire import encode_hist_batch as encode_hist_batch
from protocol.mqtt.wire import pack_hist_batches as pack_hist_batches


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+05:00: pydantic reports only ValueError as invalid
        raise ValueError("timestamp falls outside years 1..9999 when converted to UTC") from None


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(item) for item in value.values())
    if isinstance(value, list):
        return all(_finite(item) for item in value)
    return True


def _standard_json(value: dict[str, Any]) -> dict[str, Any]:
    # The JSON parser takes NaN/Infinity, which are not JSON: encode() would write them back as
    # null and PostgreSQL's JSONB refuses them, so free-form objects must not carry them.
    if not _finite(value):
        raise ValueError("NaN and Infinity are not JSON numbers")
    return value


Id = Annotated[str, StringConstraints(pattern=rf"^{ID_PATTERN}$")]
# Strict: the envelope's numbers and times are what the contract says, never true, "1", 1.0 or a
# Unix time — as protocol.mqtt.wire's mirrors read them, so both refuse the same payloads.
UtcDatetime = Annotated[AwareDatetime, Field(strict=True), AfterValidator(_to_utc)]
SchemaVersion = Annotated[int, Field(ge=1, le=SCHEMA_VERSION, strict=True, description="schema version of the payload")]
Session = Annotated[int, Field(ge=1, le=UINT64_MAX, strict=True, description="agent session, +1 per MQTT connection")]
Seq = Annotated[int, Field(ge=0, le=UINT64_MAX, strict=True, description="per-session sequence number, never wraps")]
Epoch = Annotated[
    str,
    StringConstraints(pattern=EPOCH_PATTERN),
    Field(description="random id of the agent's outbox (its installation); sessions restart with a new one"),
]
# Left out of the JSON when unknown, so a message without an epoch is byte for byte what it was
# before epochs existed.
_OMITTED_WHEN_NONE = Field(None, exclude_if=lambda value: value is None)
JsonObject = Annotated[dict[str, Any], AfterValidator(_standard_json)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Envelope(_Model):
    """Fields every agent-published payload starts with."""

    v: SchemaVersion = SCHEMA_VERSION
    agent: Id
    session: Session
    seq: Seq
    epoch: Epoch | None = _OMITTED_WHEN_NONE
    ts: UtcDatetime = Field(description="agent clock when the message was made, aware UTC")
    device_ts: datetime | None = Field(
        None, description="register clock where known: naive register local time (the ФН has no zone)"
    )


class StatusPayload(Envelope):
    """Retained ``status``: online after connect; offline as the LWT and before a clean disconnect.

    The LWT is composed at connect time, so an offline LWT's ``ts`` is the connect time; the
    collector uses its own receive time for when the agent went away.
    """

    status: Literal["online", "offline"]
    agent_version: str | None = None
    reason: str | None = Field(None, description='why offline: "lwt" or "shutdown"')


class DeviceInfo(_Model):
    register_id: Id
    protocol: str
    url: str = Field(description="pyserial-style URL the driver opened")
    link_up: bool
    error: str | None = Field(None, description="why the link is down / the last poll failed")
    state: RegisterState | None = None


class BirthPayload(Envelope):
    agent_version: str
    hostname: str | None = None
    devices: list[DeviceInfo] = Field(default_factory=list)


# "register" is the wire name the contract fixes. It shadows pydantic's ABCMeta.register, which is
# harmless for instances as long as the field has an explicit Field() (else that classmethod would
# become its default), so the warning is silenced for these two classes only.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message='Field name "register" .* shadows', category=UserWarning)

    class StatePayload(Envelope):
        register: Id = Field(description="register id, equal to the topic's register segment")
        reason: StateReason
        state: RegisterState

    class EventPayload(Envelope):
        register: Id | None = Field(None, description="None for agent-level events (outbox_gap, command_error)")
        kind: EventKind
        message: str = Field(description="human-readable, Russian is fine")
        data: JsonObject = Field(default_factory=dict)


class ActionResult(_Model):
    """The ``data`` of an ``action_result`` event."""

    id: str = Field(min_length=1, max_length=128, description="the command id")
    action: ActionName
    status: ActionStatus
    code: int | None = Field(None, description="the register's error code, when it refused or failed")
    meaning: str | None = Field(None, max_length=500, description="what the code or the refusal means, in Russian")
    reason: str | None = Field(
        None,
        max_length=64,
        description="machine-readable why: policy, deadline_passed, deadline_missing, wrong_shift_state, register_error, "
        "link_lost, unsupported, unknown_register, interrupted, duplicate",
    )


class HistStateRecord(_Model):
    type: Literal["state"] = "state"
    payload: StatePayload


class HistEventRecord(_Model):
    type: Literal["event"] = "event"
    payload: EventPayload


HistRecord = Annotated[HistStateRecord | HistEventRecord, Field(discriminator="type")]


class HistBatch(_Model):
    """Replayed backlog, oldest first; each record keeps its original envelope."""

    v: SchemaVersion = SCHEMA_VERSION
    agent: Id
    ts: UtcDatetime
    records: list[HistRecord]


with warnings.catch_warnings():  # "register": see StatePayload
    warnings.filterwarnings("ignore", message='Field name "register" .* shadows', category=UserWarning)

    class CommandPayload(_Model):
        """Collector → agent. Any ``cmd`` parses; the agent answers unknown ones with ``command_error``."""

        v: SchemaVersion = SCHEMA_VERSION
        id: str = Field(min_length=1, max_length=128, description="command id, echoed in the agent's answer")
        cmd: str = Field(min_length=1, description='known: "rebirth", "poll-now" and the ActionName values')
        args: JsonObject = Field(default_factory=dict)
        register: Id | None = Field(None, description="the register an action is for; None for agent-wide commands")
        deadline: UtcDatetime | None = Field(
            None,
            description="an action received after it is never executed (answered expired); expressed on the "
            "agent's clock: the collector shifts it by the agent's measured clock error",
        )


class AckPayload(_Model):
    """Collector → agent: what of ``session`` (of ``epoch``, when given) is committed.

    ``seq``: every record with seq ≤ ``seq`` (the contiguous prefix; one collector sees the whole
    stream). ``ranges``: exactly the records whose seq lies in one of these inclusive ``[low, high]``
    ranges — collectors sharing the stream each see part of it, so none may vouch for a prefix; what
    no range covers stays in the agent's outbox and is sent again (``agent.runtime.replay``)."""

    v: SchemaVersion = SCHEMA_VERSION
    session: Session
    seq: Seq | None = _OMITTED_WHEN_NONE
    ranges: list[tuple[Seq, Seq]] | None = Field(None, max_length=MAX_ACK_RANGES, exclude_if=lambda value: value is None)
    epoch: Epoch | None = _OMITTED_WHEN_NONE

    @model_validator(mode="after")
    def _covers_something(self) -> AckPayload:
        check_ack_covers(self.seq, self.ranges)
        return self


class RefusalPayload(_Model):
    """Collector → agent, on its ack topic: none of this agent's messages are stored, and why."""

    v: SchemaVersion = SCHEMA_VERSION
    refused: RefusalReason = Field(description="unknown_agent: not enrolled; agent_revoked: its enrollment was revoked")
    detail: str = Field(max_length=1000, description="the collector's words, for the installer")
    ts: UtcDatetime = Field(description="collector clock")


class CollectorStatusPayload(_Model):
    v: SchemaVersion = SCHEMA_VERSION
    status: Literal["online", "offline"]
    ts: UtcDatetime


Payload: TypeAlias = (
    StatusPayload
    | BirthPayload
    | StatePayload
    | EventPayload
    | HistBatch
    | CommandPayload
    | AckPayload
    | RefusalPayload
    | CollectorStatusPayload
)

MODEL_FOR_KIND: Final[dict[TopicKind, type[Payload]]] = {
    TopicKind.STATUS: StatusPayload,
    TopicKind.BIRTH: BirthPayload,
    TopicKind.STATE: StatePayload,
    TopicKind.EVENT: EventPayload,
    TopicKind.HIST: HistBatch,
    TopicKind.CMD: CommandPayload,
    TopicKind.ACK: AckPayload,
}


# ---------------------------------------------------------------------------------------------
# Encoding.


def encode(model: BaseModel) -> bytes:
    """Compact UTF-8 JSON; raises :class:`PayloadTooLarge` past ``MAX_PAYLOAD_BYTES``."""
    raw = model.model_dump_json().encode()
    check_size(raw)
    return raw


_EPOCH = re.compile(EPOCH_PATTERN)


@functools.lru_cache(maxsize=1 << 16)
def _plain_epoch(epoch: str) -> bool:
    """Whether ``epoch`` matches the contract: an agent keeps one, so each is matched once."""
    return _EPOCH.fullmatch(epoch) is not None


def encode_ack(
    session: int, seq: int | None, epoch: str | None = None, ranges: Sequence[tuple[int, int]] | None = None
) -> bytes:
    """``encode(AckPayload(session=…, seq=…, ranges=…, epoch=…))`` byte for byte, without building
    the model: the collector sends one per agent and batch. Out-of-contract values go through the
    model, which refuses them with its own error."""
    if ranges is None:
        plain_ranges = True
    elif len(ranges) == 1:  # the usual: an agent's few messages in one batch are one run
        plain_ranges = 0 <= ranges[0][0] <= ranges[0][1] <= UINT64_MAX
    else:
        plain_ranges = 0 < len(ranges) <= MAX_ACK_RANGES and all(0 <= low <= high <= UINT64_MAX for low, high in ranges)
    if (
        not 1 <= session <= UINT64_MAX
        or (seq is not None and not 0 <= seq <= UINT64_MAX)
        or (seq is None and ranges is None)
        or not plain_ranges
        or (epoch is not None and not _plain_epoch(epoch))
    ):
        return encode(AckPayload(session=session, seq=seq, epoch=epoch, ranges=None if ranges is None else list(ranges)))
    body = b'{"v":%d,"session":%d' % (SCHEMA_VERSION, session)
    if seq is not None:
        body += b',"seq":%d' % seq
    if ranges is not None:
        body += b',"ranges":[' + b",".join(b"[%d,%d]" % (low, high) for low, high in ranges) + b"]"
    return body + (b"}" if epoch is None else b',"epoch":"' + epoch.encode() + b'"}')


# ---------------------------------------------------------------------------------------------
# Decoding.


def decode(topic: AgentTopic | str, raw: bytes) -> Payload:
    """Decode a message, choosing the model from the topic; raises a ``ContractError`` subclass.

    The common case (a valid message) is validated once, straight from bytes; only a rejected
    message is parsed again to classify why.
    """
    if isinstance(topic, str) and topic == COLLECTOR_STATUS_TOPIC:
        model: type[Payload] = CollectorStatusPayload
        parsed: AgentTopic | None = None
    else:
        parsed = topic if isinstance(topic, AgentTopic) else AgentTopic.parse(topic)
        # A refusal shares the ack topic; no ack has a "refused" field (nor that word in any value).
        model = RefusalPayload if parsed.kind is TopicKind.ACK and b'"refused"' in raw else MODEL_FOR_KIND[parsed.kind]
    check_size(raw)
    try:
        payload = model.model_validate_json(raw)
    except ValidationError as exc:
        classify_rejection(raw, parsed)
        raise InvalidPayload(_describe(exc)) from None
    if "v" not in payload.model_fields_set:
        raise UnsupportedSchemaVersion("payload has no schema version 'v'")
    if parsed is not None:
        check_identity(parsed, payload)
    return payload


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "(payload)"
        problems.append(f"{where}: {error['msg']}")
    return f"{exc.error_count()} invalid field(s): " + "; ".join(problems)
