"""msgspec mirrors of the agent↔collector contract, for paths that must not load pydantic.

The pydantic models (``protocol.mqtt.models``, ``protocol.kkt.state``) define the contract: the
committed JSON Schema, the collector's storage and its field-by-field error texts. Loading pydantic
costs the agent ~13 MB of its 35 MB RSS budget (issue 11), so the agent encodes and decodes through
these Structs instead; the collector can use them for its hot-path decode.

Kept equal to the models by tests/protocol/test_mqtt_wire_drift.py: the JSON Schemas must agree
field by field, and both must encode the same payload to the same bytes. Differences by design:

* ``v`` is required here; the models default it and ``decode`` refuses its absence afterwards.
* ``epoch``, and an ack's ``seq`` and ``ranges``, are ``UNSET`` when absent and may be ``null`` on
  the wire (the models say ``None`` for both): an encode leaves an ``UNSET`` one out of the JSON.
* ``Infinity``/``NaN`` (not JSON) are refused as invalid JSON wherever they stand; the models'
  parser refuses them only in a field it reads.
* Constructing a Struct validates nothing; :func:`encode` checks what it wrote by decoding it
  again, so the agent never publishes what a reader would refuse.

A rejected message raises a ``ContractError`` with the reason the models would give; its text is
msgspec's. A caller that wants pydantic's list of every bad field decodes again with
``protocol.mqtt.models.decode``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Final, Literal, TypeAlias, TypeVar

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from protocol.kkt.vocabulary import (
    STATE_SCHEMA_VERSION,
    ShiftStatus,
    Vendor,
    oldest_unsent_age,
    register_id_of,
    shift_age,
)
from protocol.mqtt.actions import ActionName, ActionStatus
from protocol.mqtt.errors import InvalidPayload, PayloadTooLarge
from protocol.mqtt.rules import (
    EPOCH_PATTERN,
    MAX_ACK_RANGES,
    MAX_PAYLOAD_BYTES,
    SCHEMA_VERSION,
    UINT64_MAX,
    EventKind,
    HistType,
    RefusalReason,
    StateReason,
    check_ack_covers,
    check_identity,
    check_size,
    classify_rejection,
)
from protocol.mqtt.topics import COLLECTOR_STATUS_TOPIC, ID_PATTERN, AgentTopic, TopicKind

Id = Annotated[str, Meta(pattern=rf"^{ID_PATTERN}$")]
SchemaVersion = Annotated[int, Meta(ge=1, le=SCHEMA_VERSION)]
# msgspec bounds stop at int64: the uint64 ceiling is checked by _within_uint64 (and stated in
# the schema, as the models state it).
_UINT64_SCHEMA: Final = {"maximum": UINT64_MAX}
Session = Annotated[int, Meta(ge=1, extra_json_schema=_UINT64_SCHEMA)]
Seq = Annotated[int, Meta(ge=0, extra_json_schema=_UINT64_SCHEMA)]
Epoch = Annotated[str, Meta(pattern=EPOCH_PATTERN)]
# Aware on the wire; turned to UTC by the Struct's __post_init__ (as the models' AfterValidator).
UtcDatetime = Annotated[datetime, Meta(tz=True)]
# A register's own clock: naive local time (the ФН has no zone). The schema says date-time as the
# models' does; msgspec alone would leave the format out for a datetime that may be naive.
RegisterTime = Annotated[datetime, Meta(extra_json_schema={"format": "date-time"})]
JsonObject = dict[str, Any]
_T = TypeVar("_T")


def _as_utc(struct: Struct, *names: str) -> None:
    for name in names:
        value = getattr(struct, name)
        if value is None:
            continue
        if value.tzinfo is None:
            raise ValueError(f"{name}: a time zone is required")
        try:
            msgspec.structs.force_setattr(struct, name, value.astimezone(UTC))
        except OverflowError:
            raise ValueError(f"{name}: timestamp falls outside years 1..9999 when converted to UTC") from None


def _within_uint64(struct: Struct) -> None:
    for name in ("session", "seq"):
        if getattr(struct, name) > UINT64_MAX:
            raise ValueError(f"{name}: must be at most {UINT64_MAX}")


class _Frozen(Struct, frozen=True, kw_only=True):
    """Unknown fields are ignored (msgspec's default), as the models' ``extra="ignore"``."""


# ---------------------------------------------------------------------------------------------
# RegisterState (protocol.kkt.state).


class ShiftState(_Frozen, frozen=True, kw_only=True):
    status: ShiftStatus = ShiftStatus.UNKNOWN
    number: int | None = None
    receipts: int | None = None
    opened_at: RegisterTime | None = None


class FnState(_Frozen, frozen=True, kw_only=True):
    serial: str | None = None
    phase: int | None = None
    phase_name: str | None = None
    fiscal: bool | None = None
    valid_until: date | None = None
    registrations_left: int | None = None
    registrations_done: int | None = None
    documents_left: int | None = None
    free_memory_kb: int | None = None
    warning_flags: int | None = None
    warnings: list[str] = msgspec.field(default_factory=list)
    firmware: str | None = None


class OfdLinkCheck(_Frozen, frozen=True, kw_only=True):
    host: str
    port: int
    resolved: bool
    connected: bool
    error: str | None = None
    elapsed_ms: int | None = None
    checked_at: RegisterTime


class OfdState(_Frozen, frozen=True, kw_only=True):
    unsent_count: int | None = None
    first_unsent_number: int | None = None
    first_unsent_at: RegisterTime | None = None
    transport_connected: bool | None = None
    message_waiting: bool | None = None
    awaiting_receipt: bool | None = None
    ofd_command_pending: bool | None = None
    settings_changed: bool | None = None
    awaiting_command_answer: bool | None = None
    response_timeout: bool | None = None
    autonomous: bool | None = None
    server_host: str | None = None
    server_port: int | None = None
    link_check: OfdLinkCheck | None = None


class DeviceState(_Frozen, frozen=True, kw_only=True):
    paper_present: bool | None = None
    cover_open: bool | None = None
    mode: int | None = None
    submode: int | None = None
    last_error: str | None = None
    fn_errors: list[int] = msgspec.field(default_factory=list)


class RegisterState(_Frozen, frozen=True, kw_only=True):
    """One poll's view of a register; see ``protocol.kkt.state.RegisterState`` for the rules."""

    schema_version: int = STATE_SCHEMA_VERSION
    vendor: Vendor
    protocol: str
    model: str | None = None
    model_id: int | None = None
    serial: str | None = None
    rnm: str | None = None
    inn: str | None = None
    firmware: str | None = None
    ffd_version: str | None = None
    register_clock: RegisterTime | None = None
    read_at: RegisterTime | None = None
    last_fd_number: int | None = None
    shift: ShiftState = msgspec.field(default_factory=ShiftState)
    fn: FnState = msgspec.field(default_factory=FnState)
    ofd: OfdState = msgspec.field(default_factory=OfdState)
    device: DeviceState = msgspec.field(default_factory=DeviceState)

    @property
    def register_id(self) -> str:
        return register_id_of(self.vendor, self.serial, self.fn.serial)

    def oldest_unsent_age(self) -> timedelta | None:
        return oldest_unsent_age(self.register_clock, self.ofd.first_unsent_at, self.ofd.unsent_count)

    def shift_age(self) -> timedelta | None:
        return shift_age(self.register_clock, self.shift.opened_at, self.shift.status)


# ---------------------------------------------------------------------------------------------
# Payloads (protocol.mqtt.models).


class Envelope(_Frozen, frozen=True, kw_only=True):
    v: SchemaVersion
    agent: Id
    session: Session
    seq: Seq
    epoch: Epoch | UnsetType | None = UNSET
    ts: UtcDatetime
    device_ts: RegisterTime | None = None

    def __post_init__(self) -> None:
        _within_uint64(self)
        _as_utc(self, "ts")


class StatusPayload(Envelope, frozen=True, kw_only=True):
    status: Literal["online", "offline"]
    agent_version: str | None = None
    reason: str | None = None


class DeviceInfo(_Frozen, frozen=True, kw_only=True):
    register_id: Id
    protocol: str
    url: str
    link_up: bool
    error: str | None = None
    state: RegisterState | None = None


class BirthPayload(Envelope, frozen=True, kw_only=True):
    agent_version: str
    hostname: str | None = None
    devices: list[DeviceInfo] = msgspec.field(default_factory=list)


class StatePayload(Envelope, frozen=True, kw_only=True):
    register: Id
    reason: StateReason
    state: RegisterState


class EventPayload(Envelope, frozen=True, kw_only=True):
    register: Id | None = None
    kind: EventKind
    message: str
    data: JsonObject = msgspec.field(default_factory=dict)


class HistStateRecord(_Frozen, frozen=True, kw_only=True, tag_field="type", tag="state"):
    payload: StatePayload


class HistEventRecord(_Frozen, frozen=True, kw_only=True, tag_field="type", tag="event"):
    payload: EventPayload


class HistBatch(_Frozen, frozen=True, kw_only=True):
    v: SchemaVersion
    agent: Id
    ts: UtcDatetime
    records: list[HistStateRecord | HistEventRecord]

    def __post_init__(self) -> None:
        _as_utc(self, "ts")


class CommandPayload(_Frozen, frozen=True, kw_only=True):
    v: SchemaVersion
    id: Annotated[str, Meta(min_length=1, max_length=128)]
    cmd: Annotated[str, Meta(min_length=1)]
    args: JsonObject = msgspec.field(default_factory=dict)
    register: Id | None = None
    deadline: UtcDatetime | None = None

    def __post_init__(self) -> None:
        _as_utc(self, "deadline")


class AckPayload(_Frozen, frozen=True, kw_only=True):
    """See ``protocol.mqtt.models.AckPayload``: a committed prefix (``seq``), committed ranges, or both."""

    v: SchemaVersion
    session: Session
    seq: Seq | UnsetType | None = UNSET
    ranges: Annotated[list[tuple[Seq, Seq]], Meta(max_length=MAX_ACK_RANGES)] | UnsetType | None = UNSET
    epoch: Epoch | UnsetType | None = UNSET

    def __post_init__(self) -> None:
        if self.session > UINT64_MAX or (isinstance(self.seq, int) and self.seq > UINT64_MAX):
            raise ValueError(f"session and seq are at most {UINT64_MAX}")
        check_ack_covers(self.seq if isinstance(self.seq, int) else None, self.ranges or None)


class RefusalPayload(_Frozen, frozen=True, kw_only=True):
    v: SchemaVersion
    refused: RefusalReason
    detail: Annotated[str, Meta(max_length=1000)]
    ts: UtcDatetime

    def __post_init__(self) -> None:
        _as_utc(self, "ts")


class CollectorStatusPayload(_Frozen, frozen=True, kw_only=True):
    v: SchemaVersion
    status: Literal["online", "offline"]
    ts: UtcDatetime

    def __post_init__(self) -> None:
        _as_utc(self, "ts")


class ActionResult(_Frozen, frozen=True, kw_only=True):
    """The ``data`` of an ``action_result`` event (``protocol.mqtt.models.ActionResult``)."""

    id: Annotated[str, Meta(min_length=1, max_length=128)]
    action: ActionName
    status: ActionStatus
    code: int | None = None
    meaning: Annotated[str, Meta(max_length=500)] | None = None
    reason: Annotated[str, Meta(max_length=64)] | None = None


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

STRUCT_FOR_KIND: Final[dict[TopicKind, type[Payload]]] = {
    TopicKind.STATUS: StatusPayload,
    TopicKind.BIRTH: BirthPayload,
    TopicKind.STATE: StatePayload,
    TopicKind.EVENT: EventPayload,
    TopicKind.HIST: HistBatch,
    TopicKind.CMD: CommandPayload,
    TopicKind.ACK: AckPayload,
}

_ENCODER: Final = msgspec.json.Encoder()
# One decoder per type: building one compiles the type's validation once.
_DECODERS: Final[dict[type[Any], msgspec.json.Decoder[Any]]] = {}


def _decoder(struct: type[Any]) -> msgspec.json.Decoder[Any]:
    decoder = _DECODERS.get(struct)
    if decoder is None:
        decoder = _DECODERS[struct] = msgspec.json.Decoder(struct)
    return decoder


# ---------------------------------------------------------------------------------------------
# Encoding.


def encode(payload: Payload | ActionResult | RegisterState) -> bytes:
    """Compact UTF-8 JSON, checked by decoding it again (a Struct's constructor checks nothing);
    raises :class:`PayloadTooLarge` past ``MAX_PAYLOAD_BYTES``, :class:`InvalidPayload` when a
    reader would refuse it."""
    raw = _ENCODER.encode(payload)
    check_size(raw)
    try:
        _decoder(type(payload)).decode(raw)
    except msgspec.ValidationError as exc:
        raise InvalidPayload(f"{type(payload).__name__} would be refused: {exc}") from None
    return raw


def to_builtins(value: Struct) -> dict[str, Any]:
    """The JSON-ready dict of a Struct (e.g. an ActionResult for an event's ``data``)."""
    data: dict[str, Any] = msgspec.to_builtins(value)
    return data


def _hist_header(agent: str, ts: datetime) -> tuple[bytes, bytes]:
    # Render the batch header through the Struct so ts/v are formatted exactly as decode expects.
    empty = encode(HistBatch(v=SCHEMA_VERSION, agent=agent, ts=ts, records=[]))
    tail = b"[]}"
    if not empty.endswith(tail):
        raise AssertionError("HistBatch JSON must end with its records list")
    return empty[: -len(tail)] + b"[", b"]}"


def _hist_item(kind: HistType, payload: bytes) -> bytes:
    if kind not in ("state", "event"):
        raise ValueError(f"hist record type must be 'state' or 'event', got {kind!r}")
    return b'{"type":"' + kind.encode() + b'","payload":' + payload + b"}"


def pack_hist_batches(
    agent: str,
    ts: datetime,
    records: Iterable[tuple[HistType, bytes]],
    max_bytes: int = MAX_PAYLOAD_BYTES,
) -> list[bytes]:
    """Splice already-encoded state/event payloads into as few ``hist`` batches as fit ``max_bytes``.

    The outbox keeps payloads as the exact bytes first published; splicing them avoids
    re-validating every record during a 100 000-record drain.
    """
    head, tail = _hist_header(agent, ts)
    batches: list[bytes] = []
    items: list[bytes] = []
    size = len(head) + len(tail)
    for kind, payload in records:
        item = _hist_item(kind, payload)
        extra = len(item) + (1 if items else 0)
        if len(head) + len(tail) + len(item) > max_bytes:
            raise PayloadTooLarge(f"one {kind} record of {len(payload)} bytes does not fit a hist batch")
        if size + extra > max_bytes:
            batches.append(head + b",".join(items) + tail)
            items, size = [], len(head) + len(tail)
            extra = len(item)
        items.append(item)
        size += extra
    if items:
        batches.append(head + b",".join(items) + tail)
    return batches


def encode_hist_batch(agent: str, ts: datetime, records: Sequence[tuple[HistType, bytes]]) -> bytes:
    """One batch of spliced records; raises :class:`PayloadTooLarge` when they do not fit."""
    batches = pack_hist_batches(agent, ts, records)
    if len(batches) > 1:
        raise PayloadTooLarge(f"{len(records)} records need {len(batches)} hist batches")
    return batches[0] if batches else _hist_header(agent, ts)[0] + b"]}"


# ---------------------------------------------------------------------------------------------
# Decoding.


def decode(topic: AgentTopic | str, raw: bytes) -> Payload:
    """Decode a message, choosing the Struct from the topic; raises a ``ContractError`` subclass,
    for the same reasons as ``protocol.mqtt.models.decode``."""
    if isinstance(topic, str) and topic == COLLECTOR_STATUS_TOPIC:
        struct: type[Payload] = CollectorStatusPayload
        parsed: AgentTopic | None = None
    else:
        parsed = topic if isinstance(topic, AgentTopic) else AgentTopic.parse(topic)
        # A refusal shares the ack topic; no ack has a "refused" field (nor that word in any value).
        refusal = parsed.kind is TopicKind.ACK and b'"refused"' in raw
        struct = RefusalPayload if refusal else STRUCT_FOR_KIND[parsed.kind]
    check_size(raw)
    try:
        payload: Payload = _decoder(struct).decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        classify_rejection(raw, parsed)
        raise InvalidPayload(str(exc)) from None
    if parsed is not None:
        check_identity(parsed, payload)
    return payload


def decode_as(struct: type[_T], raw: bytes) -> _T:
    """One Struct from JSON without a topic's checks (an ActionResult from the agent's ledger, the
    collector's status); raises :class:`InvalidPayload`."""
    try:
        value: _T = _decoder(struct).decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidPayload(f"{struct.__name__}: {exc}") from None
    return value

