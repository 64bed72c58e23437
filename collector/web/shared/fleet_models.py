"""Pydantic models of the fleet in the JSON API — registers, alerts, the tree, events, dead
letters, health: query parameters, request bodies and responses. The monitoring pages parse
their filters and render their lists with the same models.

The OpenAPI document is generated from these models, and the handlers build their answers
through them, so the document and the real responses cannot drift apart silently.
Instants are aware UTC; register-local times (shift opened, oldest unsent document, ФН
valid-until) stay naive wall-clock values exactly as the register reported them.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from collector.web.shared.paging import MAX_PAGE, Page, Paged
from protocol.kkt.state import RegisterState

SeverityLabel = Literal["info", "warning", "major", "critical", "blocked"]
RuleLabel = Literal[
    "agent_offline",
    "register_unreachable",
    "ofd_backlog",
    "fn_validity",
    "fn_memory",
    "fn_critical",
    "fn_not_fiscal",
    "shift_too_long",
    "ofd_contract",
    "paper_out",
    "cover_open",
    "clock_skew",
    "agent_clock",
    "kep_validity",
]
# Why it cannot sell now / what stops it next (collector.alerts.verdict); no_data: unknown.
BlockCause = Literal[
    "ofd_backlog",
    "fn_validity",
    "fn_memory",
    "ofd_contract",
    "shift_too_long",
    "fn_not_fiscal",
    "fn_refusal",
    "no_data",
]
SellStatusLabel = Literal["cannot_sell", "unknown", "will_stop", "no_threat"]


class _Query(BaseModel):
    """Query strings: unknown parameters are refused so a typo never silently widens a list."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RegisterFilters(_Query):
    status: Literal["online", "offline", "unreachable"] | None = Field(
        None,
        description="online: agent up and talking to the register; offline: agent down; "
        "unreachable: agent up but its driver cannot talk to the register",
    )
    severity: SeverityLabel | None = Field(None, description="minimum worst active severity")
    rule: RuleLabel | None = Field(None, description="has an active alert of this rule")
    node: int | None = Field(None, description="inside this company-tree node's subtree")
    tag: str | None = Field(None, min_length=1, max_length=100)
    protocol: str | None = Field(None, min_length=1, max_length=30)
    q: str | None = Field(None, max_length=100, description="text search: register id, serial, RNM, ФН serial, store")
    sell: Literal["cannot_sell", "unknown", "will_stop", "no_threat"] | None = Field(
        None, description="can it sell now: cannot_sell, unknown (never reported or stale data), will_stop, no_threat"
    )
    ofd: Literal["not_activated"] | None = Field(None, description="not_activated: OFD contract never activated")
    sort: Literal["time_to_block", "serial", "severity"] = Field(
        "time_to_block",
        description="time_to_block: cannot sell now first, then unknown, then soonest stop; no threat last",
    )


class RegisterListQuery(RegisterFilters, Page):
    cursor: str | None = Field(
        None,
        max_length=1000,
        description="resume after the page that issued it (its next link); replaces offset. "
        "The time_to_block and severity sorts page by cursor, serial by offset",
    )


class RegisterCsvQuery(RegisterFilters):
    limit: int | None = Field(None, ge=1, description="export at most this many rows (default: all)")
    offset: int = Field(0, ge=0)


class TimeWindowQuery(_Query):
    since: AwareDatetime | None = Field(None, description="inclusive, ISO 8601 with zone")
    until: AwareDatetime | None = Field(None, description="exclusive, ISO 8601 with zone")
    limit: int = Field(500, ge=1, le=10_000)
    offset: int = Field(0, ge=0, description="items to skip")


class EventQuery(TimeWindowQuery):
    kind: str | None = Field(None, min_length=1, max_length=50)


class AlertListQuery(Page):
    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True)

    state: Literal["active", "cleared", "all"] = "active"
    acknowledged: bool | None = None
    severity: SeverityLabel | None = Field(None, description="minimum severity")
    rule: RuleLabel | None = None
    node: int | None = Field(None, description="registers inside this node's subtree")
    register_id: str | None = Field(None, alias="register", min_length=1, max_length=100)
    sort: Literal["severity", "time"] = Field("severity", description="severity: worst first; time: newest first")


class DeadLetterQuery(Page):
    pass


# --- request bodies ------------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CommentBody(_Body):
    text: str = Field(min_length=1, max_length=4000)


class SilenceBody(_Body):
    until: AwareDatetime | None = Field(description="silence notifications until then; null lifts the silence")


class BulkAckBody(_Body):
    ids: list[int] = Field(min_length=1, max_length=MAX_PAGE)


# --- responses -----------------------------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class NodeRef(_Out):
    id: int
    name: str
    path: list[str] = Field(description="names from the tree root down to this node")


class ShiftOut(_Out):
    status: str | None
    opened_at: datetime | None = Field(description="register local time")


class FnOut(_Out):
    serial: str | None
    valid_until: date | None
    warnings: list[str]


class OfdOut(_Out):
    unsent_count: int | None
    first_unsent_at: datetime | None = Field(description="register local time of the oldest unsent document")


class OfdCauseOut(_Out):
    """Why documents do not reach the OFD (issue 10 §2): one row of ``collector.alerts.rules.ofd_cause``."""

    cause: str = Field(description="agent_offline, register_unreachable, autonomous, wrong_ofd_host, no_internet, ofd_not_acking or exchange_stuck")
    text: str = Field(description="the cause in Russian, e.g. «нет интернета в магазине»")
    fix: str = Field(description="what to do, in Russian")
    details: dict[str, Any] = Field(description="the signals it was told from: server host/port, exchange bits, the agent's connect test")


class AlertBrief(_Out):
    id: int
    rule: str
    severity: SeverityLabel
    since: AwareDatetime
    message: str
    fix: str | None = Field(description="what to do, in Russian")
    acknowledged: bool
    silenced_until: AwareDatetime | None


class RegisterSummary(_Out):
    register_id: str
    serial: str | None
    rnm: str | None
    protocol: str
    model: str | None
    node: NodeRef | None
    agent_id: str | None
    online: bool | None = Field(description="the agent is connected; null when unknown")
    link_up: bool | None = Field(description="the agent can talk to the register; null when unknown")
    shift: ShiftOut
    fn: FnOut
    ofd: OfdOut
    active_alerts: list[AlertBrief]
    worst_severity: SeverityLabel | None
    time_to_block_seconds: int | None = Field(description="until blocks_at, now; ≤ 0 once blocked; null when nothing threatens")
    blocks_at: AwareDatetime | None = Field(
        description="will_stop: when it stops; cannot_sell: since when, if known; unknown: the stop the last data projected"
    )
    block_cause: BlockCause | None = Field(description="why it cannot sell now, or what stops it next")
    sell_status: SellStatusLabel = Field(description="can it sell now (issue 16 §1)")
    sell_text: str = Field(description="the answer in Russian: «Сейчас не может продавать: …», «через 9 дн. 3 ч: истекает ФН», «Не грозит»")
    sell_reasons: list[str] = Field(description="every reason it cannot sell now, the shown one first")
    fix: str | None = Field(description="what to do, in Russian, for the person who acts; null when nothing threatens")
    ofd_note: str | None = Field(description="the OFD contract in words (its own kind: it stops the transfer, not the register)")
    ofd_problem: bool = Field(description="the OFD contract was never activated or its paid period is over")
    ofd_cause: OfdCauseOut | None = Field(
        None, description="why documents do not reach the OFD; null when nothing waits or no cause fits"
    )
    last_seen: AwareDatetime
    state_received_at: AwareDatetime | None


class RegisterList(Paged, _Out):
    items: list[RegisterSummary]
    total: int
    limit: int
    offset: int


class ContractOut(_Out):
    activated: bool
    paid_until: date | None
    tariff: str | None
    updated_at: AwareDatetime
    ofd_operator: str | None = Field(None, description="the contracted OFD's key; null when not known")


class AlertOut(_Out):
    id: int
    register_id: str
    rule: str
    severity: SeverityLabel
    status: Literal["active", "cleared"]
    acknowledged: bool
    acked_by: str | None
    acked_at: AwareDatetime | None
    assignee: str | None
    started_at: AwareDatetime
    updated_at: AwareDatetime
    cleared_at: AwareDatetime | None
    silenced_until: AwareDatetime | None
    message: str
    fix: str | None = Field(description="what to do, in Russian, with the alert's numbers filled in")
    details: dict[str, Any]


class AlertList(Paged, _Out):
    items: list[AlertOut]
    total: int
    limit: int
    offset: int


class AlertChangeOut(_Out):
    at: AwareDatetime
    action: str
    actor: str | None
    details: dict[str, Any]


class CommentOut(_Out):
    id: int
    at: AwareDatetime
    author: str
    text: str


class AlertDetail(AlertOut):
    history: list[AlertChangeOut]
    comments: list[CommentOut]


class BulkAckResult(_Out):
    acknowledged: list[int] = Field(description="ids this request acknowledged")
    unchanged: list[int] = Field(description="ids that were already acknowledged")


class EventOut(_Out):
    kind: str
    ts: AwareDatetime
    received_at: AwareDatetime
    agent_id: str
    session: int
    seq: int
    data: dict[str, Any]


class RegisterDetail(RegisterSummary):
    fn_serial: str | None
    tags: list[str]
    first_seen: AwareDatetime
    state: RegisterState | None = Field(description="the latest full state the agent sent")
    contract: ContractOut | None = Field(description="OFD contract; null when no contract data exists")
    alerts: list[AlertOut] = Field(description="active alerts and recent cleared ones, worst first")
    recent_events: list[EventOut]


class HistoryPoint(_Out):
    ts: AwareDatetime = Field(description="agent time of the state")
    received_at: AwareDatetime
    shift_status: str | None
    shift_opened_at: datetime | None
    unsent_count: int | None
    first_unsent_at: datetime | None
    oldest_unsent_age_seconds: int | None = Field(description="on the register clock at that poll")
    fn_valid_until: date | None
    fn_warnings: list[str]


class HistoryOut(Paged, _Out):
    register_id: str
    points: list[HistoryPoint]


class EventList(Paged, _Out):
    register_id: str
    items: list[EventOut]


class AgentEventQuery(Page):
    limit: int = Field(100, ge=1, le=MAX_PAGE, description="newest first, at most this many")


class AgentEventOut(_Out):
    kind: str = Field(
        description="outbox_gap (states the agent had to drop), command_error, or agent_reinstalled "
        "(the collector saw its sessions restart under a new outbox)"
    )
    ts: AwareDatetime
    received_at: AwareDatetime
    session: int
    seq: int
    data: dict[str, Any] = Field(description="message, and for outbox_gap the dropped count and range")


class AgentEventList(Paged, _Out):
    agent_id: str
    items: list[AgentEventOut]


class NodeTree(_Out):
    id: int
    parent_id: int | None
    kind: str
    name: str
    children: list[NodeTree]


class NodeTreeOut(_Out):
    roots: list[NodeTree]


class NodeRollupOut(_Out):
    id: int
    parent_id: int | None
    kind: str
    name: str
    registers: int = Field(description="registers in the node and all its descendants")
    by_severity: dict[SeverityLabel, int] = Field(description="registers by their worst active severity")
    earliest_blocks_at: AwareDatetime | None = Field(description="the earliest stop ahead among registers that can still sell")
    cannot_sell: int = Field(description="registers in the subtree that cannot sell now")


class NodeRollupList(Paged, _Out):
    items: list[NodeRollupOut]


class DeadLetterOut(_Out):
    id: int
    received_at: AwareDatetime
    topic: str
    reason: str
    detail: str
    raw_base64: str = Field(description="the payload's first bytes (at most 4096)")
    size: int | None = Field(description="bytes of the whole payload; null for letters kept before sizes were")
    sha256: str | None = Field(description="hex SHA-256 of the whole payload")


class DeadLetterList(Paged, _Out):
    items: list[DeadLetterOut]
    total: int
    limit: int
    offset: int


class Health(_Out):
    status: Literal["ok"]


class ReadinessCheck(_Out):
    name: str
    ok: bool | None = Field(description="null when the component does not report")
    detail: str


class Readiness(_Out):
    ready: bool
    checks: list[ReadinessCheck]
