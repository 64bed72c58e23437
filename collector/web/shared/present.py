"""Storage rows → API response models (the monitoring pages render the same models).

``time_to_block_seconds`` is recomputed from the stored ``blocks_at`` at answer time: the stored
seconds are the value at the last evaluation and go stale, the instant does not. "Can it sell now"
is the verdict the alert engine stored (``collector.alerts.Verdict``), put into words here at
answer time; a register the engine has not evaluated yet gets one computed from its stored state
with the default thresholds.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from dataclasses import fields
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from collector.alerts import (
    OfdContract,
    RuleId,
    RuleInput,
    Thresholds,
    Verdict,
    evaluate_all,
    fix_text,
    ofd_text,
    sell_text,
    sell_verdict,
)
from collector.alerts.rules.ofd_cause import OfdCause, diagnose
from collector.storage.rows import (
    AlertChangeRow,
    AlertRow,
    CommentRow,
    ContractRow,
    DeadLetterRow,
    EventRow,
    HistoryRow,
    NodeRollup,
    RegisterRow,
)
from collector.web.shared.fleet_models import (
    AlertBrief,
    AlertChangeOut,
    AlertDetail,
    AlertOut,
    CommentOut,
    ContractOut,
    DeadLetterOut,
    EventOut,
    FnOut,
    HistoryPoint,
    NodeRef,
    NodeRollupOut,
    NodeTree,
    OfdCauseOut,
    OfdOut,
    RegisterDetail,
    RegisterSummary,
    ShiftOut,
)
from collector.web.shared.fleet_queries import PageContext, node_ids_on_path
from protocol.kkt.state import RegisterState

log = logging.getLogger(__name__)
_DEFAULT_THRESHOLDS = Thresholds()


def parse_state(register_id: str, document: Mapping[str, Any] | None) -> RegisterState | None:
    """The stored state JSON as a ``RegisterState``; None (logged) when it no longer validates."""
    if document is None:
        return None
    try:
        return RegisterState.model_validate(document)
    except ValidationError as exc:
        log.warning("stored state of %s does not validate: %s", register_id, exc)
        return None


def register_verdict(
    row: RegisterRow, state: RegisterState | None, contract: ContractRow | None, now: datetime
) -> Verdict:
    """The stored verdict; for a register not evaluated yet, one from its stored state."""
    if row.verdict is not None:
        try:
            return Verdict.model_validate(row.verdict)
        except ValidationError as exc:
            log.warning("stored verdict of %s does not validate: %s", row.register_id, exc)
    inp = RuleInput(
        register_id=row.register_id,
        now=now,
        state=state,
        state_received_at=row.state_received_at,
        agent_online=row.agent_online,
        link_up=row.link_up,
        contract=None if contract is None else OfdContract(contract.activated, contract.paid_until, contract.ofd_operator),
    )
    return sell_verdict(inp, _DEFAULT_THRESHOLDS, evaluate_all(inp, _DEFAULT_THRESHOLDS))


def verdict_fields(verdict: Verdict, now: datetime) -> dict[str, Any]:
    """The verdict in words: status, the one-line answer, its reasons, the fix and the OFD note."""
    return {
        "block_cause": verdict.cause,
        "sell_status": verdict.status.value,
        "sell_text": sell_text(verdict, now),
        "sell_reasons": list(verdict.reasons),
        "fix": fix_text(verdict.cause, verdict.details),
        "ofd_note": ofd_text(verdict.ofd, now),
        "ofd_problem": verdict.ofd_problem,
    }


def alert_brief(alert: AlertRow) -> AlertBrief:
    return AlertBrief(
        id=_alert_id(alert),
        rule=alert.rule,
        severity=alert.severity,
        since=alert.started_at,
        message=alert.message,
        fix=fix_text(alert.rule, alert.details),
        acknowledged=alert.acknowledged,
        silenced_until=alert.silenced_until,
    )


def _alert_id(alert: AlertRow) -> int:
    if alert.id is None:
        raise ValueError(f"alert {alert.register_id}/{alert.rule} was not read back from the database")
    return alert.id


def _node_ref(row: RegisterRow, names: Mapping[int, str]) -> NodeRef | None:
    if row.node_id is None or row.node_name is None:
        return None
    path = [names[node_id] for node_id in node_ids_on_path(row.node_path) if node_id in names]
    return NodeRef(id=row.node_id, name=row.node_name, path=path)


def ofd_cause(
    row: RegisterRow, state: RegisterState | None, contract: ContractRow | None, now: datetime
) -> OfdCause | None:
    """Why documents do not reach the OFD, from the stored state, the agent's and link's status and
    the operator the contract names."""
    inp = RuleInput(
        register_id=row.register_id, now=now, state=state, agent_online=row.agent_online, link_up=row.link_up,
        contract=None if contract is None else OfdContract(contract.activated, contract.paid_until, contract.ofd_operator),
    )
    return diagnose(inp)


def _with_cause(brief: AlertBrief, cause: OfdCause | None) -> AlertBrief:
    """The OFD backlog alert names its cause and that cause's fix in place of the generic one."""
    if cause is None or brief.rule != RuleId.OFD_BACKLOG:
        return brief
    return brief.model_copy(update={"fix": f"Причина: {cause.text}. {cause.fix}"})


def _summary_fields(row: RegisterRow, state: RegisterState | None, context: PageContext, now: datetime) -> dict[str, Any]:
    alerts = context.active_alerts.get(row.register_id, [])
    cause = ofd_cause(row, state, context.contracts.get(row.register_id), now)
    verdict = register_verdict(row, state, context.contracts.get(row.register_id), now)
    blocks_at = row.blocks_at if row.verdict is not None else verdict.at
    seconds = None if blocks_at is None else int((blocks_at - now).total_seconds())
    return {
        "register_id": row.register_id,
        "serial": row.serial,
        "rnm": row.rnm,
        "protocol": row.protocol,
        "model": row.model,
        "node": _node_ref(row, context.node_names),
        "agent_id": row.agent_id,
        "online": row.agent_online,
        "link_up": row.link_up,
        "shift": ShiftOut(
            status=state.shift.status.value if state else row.shift_status,
            opened_at=state.shift.opened_at if state else None,
        ),
        "fn": FnOut(
            serial=state.fn.serial if state and state.fn.serial else row.fn_serial,
            valid_until=state.fn.valid_until if state else row.fn_valid_until,
            warnings=list(state.fn.warnings) if state else [],
        ),
        "ofd": OfdOut(
            unsent_count=state.ofd.unsent_count if state else row.unsent_count,
            first_unsent_at=state.ofd.first_unsent_at if state else row.oldest_unsent_at,
        ),
        "active_alerts": [_with_cause(alert_brief(alert), cause) for alert in alerts],
        "worst_severity": row.worst_severity,
        "time_to_block_seconds": seconds,
        "blocks_at": blocks_at,
        **verdict_fields(verdict, now),
        "ofd_cause": None if cause is None else OfdCauseOut(**cause.as_json()),
        "last_seen": row.last_seen,
        "state_received_at": row.state_received_at,
    }


def register_summary(row: RegisterRow, context: PageContext, now: datetime) -> RegisterSummary:
    state = parse_state(row.register_id, row.state)
    return RegisterSummary(**_summary_fields(row, state, context, now))


def register_detail(
    row: RegisterRow,
    context: PageContext,
    now: datetime,
    *,
    alerts: list[AlertRow],
    events: list[EventRow],
) -> RegisterDetail:
    state = parse_state(row.register_id, row.state)
    contract = context.contracts.get(row.register_id)
    return RegisterDetail(
        **_summary_fields(row, state, context, now),
        fn_serial=row.fn_serial,
        tags=list(row.tags),
        first_seen=row.first_seen,
        state=state,
        contract=None if contract is None else contract_out(contract),
        alerts=[alert_out(alert) for alert in alerts],
        recent_events=[event_out(event) for event in events],
    )


def contract_out(contract: ContractRow) -> ContractOut:
    return ContractOut.model_validate(contract, from_attributes=True)


def alert_out(alert: AlertRow) -> AlertOut:
    _alert_id(alert)
    row = {field.name: getattr(alert, field.name) for field in fields(alert)}
    return AlertOut.model_validate({**row, "fix": fix_text(alert.rule, alert.details)})


def alert_detail(alert: AlertRow, history: list[AlertChangeRow], comments: list[CommentRow]) -> AlertDetail:
    return AlertDetail(
        **dict(alert_out(alert)),
        history=[AlertChangeOut.model_validate(change, from_attributes=True) for change in history],
        comments=[comment_out(comment) for comment in comments],
    )


def comment_out(comment: CommentRow) -> CommentOut:
    return CommentOut.model_validate(comment, from_attributes=True)


def event_out(event: EventRow) -> EventOut:
    return EventOut.model_validate(event, from_attributes=True)


def history_point(row: HistoryRow) -> HistoryPoint:
    state = parse_state(row.register_id, row.state)
    age = None if state is None else state.oldest_unsent_age()
    return HistoryPoint(
        ts=row.ts,
        received_at=row.received_at,
        shift_status=state.shift.status.value if state else None,
        shift_opened_at=state.shift.opened_at if state else None,
        unsent_count=state.ofd.unsent_count if state else None,
        first_unsent_at=state.ofd.first_unsent_at if state else None,
        oldest_unsent_age_seconds=None if age is None else int(age.total_seconds()),
        fn_valid_until=state.fn.valid_until if state else None,
        fn_warnings=list(state.fn.warnings) if state else [],
    )


def _node_fields(rollup: NodeRollup) -> dict[str, Any]:
    return {"id": rollup.node_id, "parent_id": rollup.parent_id, "kind": rollup.kind, "name": rollup.name}


def rollup_out(rollup: NodeRollup) -> NodeRollupOut:
    return NodeRollupOut(
        **_node_fields(rollup),
        registers=rollup.registers,
        by_severity=dict(rollup.by_severity),
        earliest_blocks_at=rollup.earliest_blocks_at,
        cannot_sell=rollup.cannot_sell,
    )


def node_forest(rollups: list[NodeRollup]) -> list[NodeTree]:
    """Nest the visible nodes; a node whose parent is not visible becomes a root."""
    children: dict[int | None, list[NodeRollup]] = {}
    visible = {rollup.node_id for rollup in rollups}
    for rollup in rollups:  # ordered by path, so a parent comes before its children
        parent = rollup.parent_id if rollup.parent_id in visible else None
        children.setdefault(parent, []).append(rollup)

    def build(node: NodeRollup) -> NodeTree:
        return NodeTree(**_node_fields(node), children=[build(child) for child in children.get(node.node_id, [])])

    return [build(root) for root in children.get(None, [])]


def dead_letter_out(letter: DeadLetterRow) -> DeadLetterOut:
    return DeadLetterOut(
        id=letter.id,
        received_at=letter.received_at,
        topic=letter.topic,
        reason=letter.reason,
        detail=letter.detail,
        raw_base64=base64.b64encode(letter.raw).decode("ascii"),
        size=letter.size,
        sha256=letter.sha256,
    )
