"""Plain value objects the repository writes and returns (no ORM: rows in, rows out)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import msgspec

from collector.storage.errors import InvalidValue
from protocol.kkt.state import RegisterState

if TYPE_CHECKING:
    from protocol.kkt.vocabulary import AnyRegisterState

# Lowest to highest; the labels of ``collector.alerts.severity.Severity`` (a test keeps them equal).
SEVERITY_LEVELS: tuple[str, ...] = ("info", "warning", "major", "critical", "blocked")
ALERT_STATUSES: tuple[str, ...] = ("active", "cleared")


_INT64_MAX = 2**63 - 1


def check_severity(label: str | None) -> str | None:
    if label is not None and label not in SEVERITY_LEVELS:
        raise InvalidValue(f"unknown severity {label!r}; expected one of {', '.join(SEVERITY_LEVELS)}")
    return label


def fits_int64(value: int) -> bool:
    return 0 <= value <= _INT64_MAX


def check_seq(name: str, value: int) -> int:
    # The contract says uint64, both backends store signed 64 bits; real counters never get close,
    # but a corrupt value must be refused here rather than fail a whole batch in the driver.
    if not fits_int64(value):
        raise InvalidValue(f"{name}={value} is outside 0..2**63-1")
    return value


class JsonText(Mapping[str, Any]):
    """A JSON object held as its serialized text. Ingest serializes each state once (pydantic's
    ``model_dump_json``, in Rust) and the batch writes bind that text as is into both the history
    and the latest-state row; it is parsed only if something reads it as a mapping."""

    __slots__ = ("_parsed", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._parsed: dict[str, Any] | None = None

    def _mapping(self) -> dict[str, Any]:
        if self._parsed is None:
            self._parsed = json.loads(self.text)
        return self._parsed

    def __getitem__(self, key: str) -> Any:
        return self._mapping()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._mapping())

    def __len__(self) -> int:
        return len(self._mapping())

    def __repr__(self) -> str:
        return f"JsonText({self.text!r})"


_STATE_ENCODER = msgspec.json.Encoder()


def state_json(state: AnyRegisterState) -> JsonText:
    """A state's stored document: the mirror's encoding, byte for byte the model's
    ``model_dump_json`` (``tests/protocol/test_mqtt_wire_drift.py``) in a sixth of the time."""
    if isinstance(state, RegisterState):
        return JsonText(state.model_dump_json())
    return JsonText(_STATE_ENCODER.encode(state).decode())


def json_text(document: Mapping[str, Any]) -> str:
    """The JSON text of a document: its own when it already is one (see ``JsonText``)."""
    if isinstance(document, JsonText):
        return document.text
    return json.dumps(dict(document))


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One state message (live or replayed), keyed by the envelope's (agent, session, seq)."""

    agent_id: str
    session: int
    seq: int
    register_id: str
    ts: datetime  # the agent's envelope timestamp
    received_at: datetime
    state: Mapping[str, Any]
    # Why the collector kept it (collector/ingest/history_policy.py); None: stored before the
    # history policy, or written with every state kept.
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class EventRow:
    agent_id: str
    session: int
    seq: int
    register_id: str
    kind: str
    ts: datetime
    received_at: datetime
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AgentEventRow:
    """An event about the agent itself (``outbox_gap``, ``command_error``), not one of its registers."""

    agent_id: str
    session: int
    seq: int
    kind: str
    ts: datetime
    received_at: datetime
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RegisterEvaluation:
    """What the alert engine derived for a register; stored beside the latest state for lists."""

    worst_severity: str | None
    time_to_block_seconds: int | None
    blocks_at: datetime | None
    evaluated_at: datetime
    sell_status: str | None = None
    sell_rank: int | None = None
    verdict: Mapping[str, Any] | None = None  # collector.alerts.Verdict as JSON
    verdict_key: str | None = None  # what it was computed on (collector.ingest.rule_inputs.verdict_key)


@dataclass(frozen=True, slots=True)
class LatestState:
    """The latest-state row; ``link_up``/``evaluation`` left None keep what is stored."""

    register_id: str
    agent_id: str
    session: int
    seq: int
    agent_ts: datetime
    received_at: datetime
    state: Mapping[str, Any]
    shift_status: str | None = None
    unsent_count: int | None = None
    oldest_unsent_at: datetime | None = None
    fn_valid_until: date | None = None
    link_up: bool | None = None
    evaluation: RegisterEvaluation | None = None

    @classmethod
    def from_register_state(
        cls,
        register_id: str,
        state: AnyRegisterState,
        *,
        agent_id: str,
        session: int,
        seq: int,
        agent_ts: datetime,
        received_at: datetime,
        link_up: bool | None = None,
        evaluation: RegisterEvaluation | None = None,
        dumped: Mapping[str, Any] | None = None,
    ) -> LatestState:
        """Extract the filter/sort columns from a decoded ``RegisterState``.

        ``dumped``: ``state_json(state)`` when the caller already has it (ingest stores the same
        document in the history), so it is not serialised twice.
        """
        return cls(
            register_id=register_id,
            agent_id=agent_id,
            session=session,
            seq=seq,
            agent_ts=agent_ts,
            received_at=received_at,
            state=state_json(state) if dumped is None else dumped,
            shift_status=state.shift.status.value,
            unsent_count=state.ofd.unsent_count,
            oldest_unsent_at=state.ofd.first_unsent_at if state.ofd.unsent_count else None,
            fn_valid_until=state.fn.valid_until,
            link_up=link_up,
            evaluation=evaluation,
        )


@dataclass(frozen=True, slots=True)
class RegisterIdentity:
    """What a state message tells about a register; None fields keep the stored value."""

    register_id: str
    protocol: str
    serial: str | None = None
    rnm: str | None = None
    fn_serial: str | None = None
    model: str | None = None


@dataclass(frozen=True, slots=True)
class RegisterRow:
    register_id: str
    tenant_id: int
    node_id: int | None
    node_name: str | None
    node_path: str | None
    agent_id: str | None
    agent_online: bool | None
    protocol: str
    serial: str | None
    rnm: str | None
    fn_serial: str | None
    model: str | None
    first_seen: datetime
    last_seen: datetime
    shift_status: str | None
    unsent_count: int | None
    oldest_unsent_at: datetime | None
    fn_valid_until: date | None
    link_up: bool | None
    time_to_block_seconds: int | None
    blocks_at: datetime | None
    worst_severity: str | None
    state_received_at: datetime | None
    sell_status: str | None = None
    verdict: Mapping[str, Any] | None = None  # collector.alerts.Verdict as JSON; None: never evaluated
    state: Mapping[str, Any] | None = None  # only filled by get_register
    tags: tuple[str, ...] = ()  # only filled by get_register


@dataclass(frozen=True, slots=True)
class AlertRow:
    """Mirrors ``AlertRecord`` (without its history, which lives in ``alert_history``)."""

    register_id: str
    rule: str
    severity: str
    status: str
    started_at: datetime
    updated_at: datetime
    acknowledged: bool = False
    acked_by: str | None = None
    acked_at: datetime | None = None
    assignee: str | None = None
    cleared_at: datetime | None = None
    silenced_until: datetime | None = None
    message: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    id: int | None = None  # set when read back


@dataclass(frozen=True, slots=True)
class AlertChangeRow:
    alert_id: int
    at: datetime
    action: str
    actor: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CommentRow:
    id: int
    alert_id: int
    at: datetime
    author: str
    text: str


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    id: int
    received_at: datetime
    topic: str
    reason: str
    detail: str
    raw: bytes  # at most the first DEAD_LETTER_RAW_BYTES of the payload
    size: int | None = None  # of the whole payload; None on rows older than revision 0009
    sha256: str | None = None


@dataclass(frozen=True, slots=True)
class ContractRow:
    register_id: str
    activated: bool
    paid_until: date | None
    tariff: str | None
    updated_at: datetime
    ofd_operator: str | None = None  # the contracted OFD (an ``ofd_operators`` key); None = not known


@dataclass(frozen=True, slots=True)
class SilenceRow:
    id: int
    tenant_id: int
    node_id: int | None
    register_id: str | None
    starts_at: datetime
    until: datetime
    author: str
    reason: str


@dataclass(frozen=True, slots=True)
class NodeRollup:
    """A node with every register below it: counts by worst severity and the earliest block."""

    node_id: int
    parent_id: int | None
    kind: str
    name: str
    path: str
    registers: int
    by_severity: Mapping[str, int]
    earliest_blocks_at: datetime | None  # the earliest stop ahead (registers that can still sell)
    cannot_sell: int = 0  # registers below that cannot sell now
