"""Writes made by the ingest loop. Every function takes the caller's Connection and never commits:
the loop batches many calls into one transaction and acks the agent only after it commits."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from collector.storage import partitions
from collector.storage.bounds import check_fits, clip, column_limit
from collector.storage.dialect import upsert_insert
from collector.storage.errors import AgentRevoked, RegisterOwnedElsewhere, UnknownAgent
from collector.storage.register_summary import refresh_registers
from collector.storage.rows import (
    AgentEventRow,
    DeadLetterRow,
    EventRow,
    HistoryRow,
    LatestState,
    RegisterEvaluation,
    RegisterIdentity,
    check_seq,
    check_severity,
)
from collector.storage.schema import (
    agent_events,
    agents,
    dead_letters,
    events,
    ingest_marks,
    register_state,
    registers,
    state_history,
)


def _insert_new(conn: sa.Connection, table: sa.Table, values: list[dict[str, Any]]) -> int:
    """Insert rows, skipping any whose (agent, session, seq) is already stored; count the new ones.

    RETURNING yields only the rows actually inserted, on both backends, and lets SQLAlchemy
    send the batch as multi-row INSERTs ("insertmanyvalues") rather than one per row.
    """
    if not values:
        return 0
    if conn.dialect.name == "postgresql" and table.name in partitions.PARTITIONED:
        fresh = partitions.unseen(conn, table, values)
        return len(conn.execute(sa.insert(table).returning(table.c.id), fresh).all()) if fresh else 0
    stmt = (
        upsert_insert(conn, table)
        .on_conflict_do_nothing(index_elements=[table.c.agent_id, table.c.session, table.c.seq])
        .returning(table.c.id)
    )
    return len(conn.execute(stmt, values).all())


def _envelope(row: HistoryRow | EventRow | AgentEventRow) -> dict[str, Any]:
    envelope = {
        "agent_id": row.agent_id,
        "session": check_seq("session", row.session),
        "seq": check_seq("seq", row.seq),
        "ts": row.ts,
        "received_at": row.received_at,
    }
    if not isinstance(row, AgentEventRow):
        envelope["register_id"] = row.register_id
    return envelope


def insert_history(conn: sa.Connection, rows: Iterable[HistoryRow]) -> int:
    """Append state messages to the history; duplicates (same agent, session, seq) are dropped."""
    values = [{**_envelope(r), "state": dict(r.state), "reason": r.reason} for r in rows]
    return _insert_new(conn, state_history, values)


def insert_events(conn: sa.Connection, rows: Iterable[EventRow]) -> int:
    """Append events; duplicates (same agent, session, seq) are dropped. Returns how many were new."""
    values = [{**_envelope(r), "kind": r.kind, "data": dict(r.data)} for r in rows]
    return _insert_new(conn, events, values)


def insert_agent_events(conn: sa.Connection, rows: Iterable[AgentEventRow]) -> int:
    """Append agent-level events; duplicates (same agent, session, seq) are dropped."""
    values = [{**_envelope(r), "kind": r.kind, "data": dict(r.data)} for r in rows]
    return _insert_new(conn, agent_events, values)


def _evaluation_values(evaluation: RegisterEvaluation) -> dict[str, Any]:
    return {
        "worst_severity": check_severity(evaluation.worst_severity),
        "time_to_block_seconds": evaluation.time_to_block_seconds,
        "blocks_at": evaluation.blocks_at,
        "evaluated_at": evaluation.evaluated_at,
        "sell_status": evaluation.sell_status,
        "sell_rank": evaluation.sell_rank,
        "verdict": None if evaluation.verdict is None else dict(evaluation.verdict),
        "verdict_key": evaluation.verdict_key,
    }


def upsert_latest_state(conn: sa.Connection, row: LatestState) -> bool:
    """Store ``row`` as the register's latest state if it is newer than the stored one.

    Newer means a later (session, seq) from the same agent — both grow monotonically per agent,
    so a replayed ``hist`` record never overwrites fresher live state — or, when the register
    moved to another agent (whose counters are unrelated), a later agent timestamp.
    Returns whether the row was written.
    """
    values: dict[str, Any] = {
        "register_id": row.register_id,
        "agent_id": row.agent_id,
        "session": check_seq("session", row.session),
        "seq": check_seq("seq", row.seq),
        "agent_ts": row.agent_ts,
        "received_at": row.received_at,
        "state": dict(row.state),
        "shift_status": row.shift_status,
        "unsent_count": row.unsent_count,
        "oldest_unsent_at": row.oldest_unsent_at,
        "fn_valid_until": row.fn_valid_until,
        "link_up": row.link_up,
    }
    if row.evaluation is not None:
        values.update(_evaluation_values(row.evaluation))
    stmt = upsert_insert(conn, register_state).values(values)
    incoming, stored = stmt.excluded, register_state.c
    later_in_same_agent = sa.and_(
        incoming.agent_id == stored.agent_id,
        sa.or_(
            incoming.session > stored.session,
            sa.and_(incoming.session == stored.session, incoming.seq > stored.seq),
        ),
    )
    later_from_other_agent = sa.and_(
        incoming.agent_id != stored.agent_id, incoming.agent_ts > stored.agent_ts
    )
    updates: dict[str, Any] = {name: incoming[name] for name in values if name != "register_id"}
    updates["link_up"] = sa.func.coalesce(incoming.link_up, stored.link_up)
    upsert = stmt.on_conflict_do_update(
        index_elements=[register_state.c.register_id],
        set_=updates,
        where=sa.or_(later_in_same_agent, later_from_other_agent),
    ).returning(register_state.c.register_id)
    written = conn.execute(upsert).first() is not None
    if written:
        refresh_registers(conn, [row.register_id])
    return written


def set_register_evaluation(conn: sa.Connection, register_id: str, evaluation: RegisterEvaluation) -> bool:
    """Store the alert engine's verdict (worst severity, time to block) beside the latest state."""
    result = conn.execute(
        sa.update(register_state)
        .where(register_state.c.register_id == register_id)
        .values(_evaluation_values(evaluation))
    )
    refresh_registers(conn, [register_id])
    return result.rowcount > 0


def set_link_up(conn: sa.Connection, register_id: str, link_up: bool) -> bool:
    """Record a link lost/regained event between the agent and its register."""
    result = conn.execute(
        sa.update(register_state).where(register_state.c.register_id == register_id).values(link_up=link_up)
    )
    refresh_registers(conn, [register_id])
    return result.rowcount > 0


def advance_ingest_mark(conn: sa.Connection, agent_id: str, session: int, seq: int) -> bool:
    """Raise the committed high-water mark of (agent, session) to ``seq``; never lowers it."""
    stmt = upsert_insert(conn, ingest_marks).values(
        agent_id=agent_id, session=check_seq("session", session), max_seq=check_seq("seq", seq)
    )
    upsert = stmt.on_conflict_do_update(
        index_elements=[ingest_marks.c.agent_id, ingest_marks.c.session],
        set_={"max_seq": stmt.excluded.max_seq},
        where=stmt.excluded.max_seq > ingest_marks.c.max_seq,
    ).returning(ingest_marks.c.max_seq)
    return conn.execute(upsert).first() is not None


def get_ingest_marks(conn: sa.Connection, agent_id: str) -> dict[int, int]:
    """session → highest committed seq, for the agent's ``ack`` topic."""
    rows = conn.execute(
        sa.select(ingest_marks.c.session, ingest_marks.c.max_seq).where(ingest_marks.c.agent_id == agent_id)
    )
    return {int(session): int(max_seq) for session, max_seq in rows}


DEAD_LETTER_RAW_BYTES = 4096  # the payload prefix a dead letter keeps (size and SHA-256 cover the rest)
DEAD_LETTER_DETAIL_CHARS = 2000


def dead_letter(
    conn: sa.Connection,
    topic: str,
    reason: str,
    detail: str,
    raw: bytes,
    *,
    received_at: datetime | None = None,
    whole: tuple[int, str] | None = None,
) -> int:
    """Keep a message we could not use: its first bytes, size and SHA-256, why, and when.

    ``whole``: (size, sha256) of the full payload when ``raw`` is already only its prefix. Every
    field is bounded first (topic and reason clipped to their columns, NULs replaced), so filing
    a dead letter cannot fail on the message's content, whatever it is.
    """
    payload = bytes(raw)
    size, sha256 = whole or (len(payload), hashlib.sha256(payload).hexdigest())
    stmt = (
        sa.insert(dead_letters)
        .values(
            received_at=received_at or datetime.now(UTC),
            topic=clip(topic, column_limit(dead_letters.c.topic)),
            reason=clip(reason, column_limit(dead_letters.c.reason)),
            detail=clip(detail, DEAD_LETTER_DETAIL_CHARS),
            raw=payload[:DEAD_LETTER_RAW_BYTES],
            size=size,
            sha256=sha256,
        )
        .returning(dead_letters.c.id)
    )
    return int(conn.execute(stmt).scalar_one())


def dead_letter_page(conn: sa.Connection, *, limit: int, offset: int = 0) -> list[DeadLetterRow]:
    """Newest first; ``raw`` is at most the bounded prefix even for rows stored before it was bounded.
    Dead letters have no tenant (we could not tell whose they were): admin only."""
    columns = [column for column in dead_letters.c if column.name != "raw"]
    prefix = sa.type_coerce(sa.func.substr(dead_letters.c.raw, 1, DEAD_LETTER_RAW_BYTES), sa.LargeBinary)
    rows = conn.execute(
        sa.select(*columns, prefix.label("raw"))
        .order_by(dead_letters.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [DeadLetterRow(**row._asdict()) for row in rows]


def list_dead_letters(conn: sa.Connection, *, limit: int = 100) -> list[DeadLetterRow]:
    """Newest first (see ``dead_letter_page``)."""
    return dead_letter_page(conn, limit=limit)


def ensure_register(
    conn: sa.Connection, identity: RegisterIdentity, *, agent_id: str, seen_at: datetime
) -> None:
    """Create the register under the agent's tenant and store, or refresh what we know about it.

    The tenant and store come from the agent's enrollment, never from the payload. Identity
    fields the message leaves unknown (None) keep their stored values. A register id already
    owned by another tenant is refused (``RegisterOwnedElsewhere``) instead of being moved.
    """
    agent = conn.execute(
        sa.select(agents.c.tenant_id, agents.c.node_id, agents.c.revoked).where(agents.c.agent_id == agent_id)
    ).first()
    if agent is None:
        raise UnknownAgent(f"agent {agent_id!r} is not enrolled")
    if agent.revoked:
        raise AgentRevoked(f"agent {agent_id!r} was revoked")
    known: Mapping[str, Any] = {
        "serial": identity.serial,
        "rnm": identity.rnm,
        "fn_serial": identity.fn_serial,
        "model": identity.model,
    }
    values = {
        "register_id": identity.register_id,
        "tenant_id": agent.tenant_id,
        "node_id": agent.node_id,
        "agent_id": agent_id,
        "protocol": identity.protocol,
        "first_seen": seen_at,
        "last_seen": seen_at,
        **known,
    }
    check_fits(registers, values)
    stmt = upsert_insert(conn, registers).values(values)
    incoming, stored = stmt.excluded, registers.c
    updates: dict[str, Any] = {name: sa.func.coalesce(incoming[name], stored[name]) for name in known}
    updates.update(
        node_id=incoming.node_id,
        agent_id=incoming.agent_id,
        protocol=incoming.protocol,
        last_seen=sa.case(
            (incoming.last_seen > stored.last_seen, incoming.last_seen), else_=stored.last_seen
        ),
    )
    upsert = stmt.on_conflict_do_update(
        index_elements=[registers.c.register_id],
        set_=updates,
        where=stored.tenant_id == incoming.tenant_id,
    ).returning(registers.c.register_id)
    if conn.execute(upsert).first() is None:
        raise RegisterOwnedElsewhere(f"register {identity.register_id!r} belongs to another tenant")
    refresh_registers(conn, [identity.register_id])
