"""Batch forms of the per-row ingest writes of ``collector.storage`` (same SQL semantics, one
``executemany`` per batch instead of one freshly built statement per row).

Why here: building an ``INSERT … ON CONFLICT … WHERE excluded…`` statement costs ~2 ms of Python
in SQLAlchemy, so the per-row repository functions capped ingest near 400 msg/s. Each statement
below is built once per dialect and executed with a parameter list; the three written for every
message (history, latest state, ingest marks) go through the driver with fixed SQL text
(``pg_rows`` on PostgreSQL, ``sqlite_rows`` on SQLite), counted rather than ``RETURNING``. The semantics mirror
``collector.storage.ingest``/``agents`` (see those docstrings); the storage owner may fold these
in as ``*_many`` variants.

Rows are always sent in key order, so the ingest writer and the alert evaluator (both updating
``register_state``) lock rows in the same order and cannot deadlock on PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from collector.ingest import pg_rows, sqlite_rows
from collector.ingest.row_values import REGISTER_COLUMNS
from collector.storage.bounds import check_fits
from collector.storage.dialect import member_of, upsert_insert
from collector.storage.errors import (
    AgentRevoked,
    RegisterOwnedElsewhere,
    UnknownAgent,
    UnknownNode,
    UnsupportedDialect,
)
from collector.storage.rows import (
    HistoryRow,
    LatestState,
    RegisterEvaluation,
    RegisterIdentity,
    check_seq,
    check_severity,
)
from collector.storage.schema import agents, nodes, register_state, registers

_REGISTER_NAMES = tuple(name for name, _ in REGISTER_COLUMNS)

_cache: dict[tuple[str, str], Any] = {}


def _statement(conn: sa.Connection, name: str, build: Callable[[sa.Connection], Any]) -> Any:
    key = (conn.dialect.name, name)
    if key not in _cache:
        _cache[key] = build(conn)
    return _cache[key]


def ensure_registers(conn: sa.Connection, claims: Sequence[tuple[RegisterIdentity, str, datetime]]) -> None:
    """``storage.ensure_register`` for many (identity, agent, seen_at); same refusals."""
    if not claims:
        return
    owners = {
        row.agent_id: row
        for row in conn.execute(
            sa.select(agents.c.agent_id, agents.c.tenant_id, agents.c.node_id, agents.c.revoked).where(
                member_of(conn, agents.c.agent_id, {agent for _, agent, _ in claims})
            )
        )
    }
    rounds: list[list[tuple[Any, ...]]] = []
    placed: list[set[str]] = []
    for identity, agent_id, seen_at in sorted(claims, key=lambda claim: (claim[0].register_id, claim[1])):
        owner = owners.get(agent_id)
        if owner is None:
            raise UnknownAgent(f"agent {agent_id!r} is not enrolled")
        if owner.revoked:
            raise AgentRevoked(f"agent {agent_id!r} was revoked")
        row = (
            identity.register_id, owner.tenant_id, owner.node_id, agent_id, identity.protocol,
            identity.serial, identity.rnm, identity.fn_serial, identity.model, seen_at, seen_at,
        )
        # The state's free-text identity fields are unbounded; the driver-level write has no types.
        check_fits(registers, dict(zip(_REGISTER_NAMES, row, strict=True)))
        # One register twice in one multi-row upsert is an error on PostgreSQL: later rounds.
        index = next((i for i, ids in enumerate(placed) if identity.register_id not in ids), len(rounds))
        if index == len(rounds):
            rounds.append([])
            placed.append(set())
        rounds[index].append(row)
        placed[index].add(identity.register_id)
    backend = _backend(conn)
    for batch in rounds:
        # Counted, not returned: only a register of another tenant is left unwritten.
        if backend.upsert_registers(conn, batch) < len(batch):
            _refuse_foreign(conn, batch)


def _refuse_foreign(conn: sa.Connection, batch: Sequence[tuple[Any, ...]]) -> None:
    """Raise for the registers of ``batch`` (rows of ``REGISTER_COLUMNS``) stored under another tenant."""
    claimed = {row[0]: row[1] for row in batch}
    stored = conn.execute(
        sa.select(registers.c.register_id, registers.c.tenant_id).where(member_of(conn, registers.c.register_id, claimed))
    )
    refused = sorted(row.register_id for row in stored if row.tenant_id != claimed[row.register_id])
    if refused:
        raise RegisterOwnedElsewhere(f"register(s) {', '.join(map(repr, refused))} belong to another tenant")


def _backend(conn: sa.Connection) -> Any:
    """The driver-level forms of the hot writes for this connection's database."""
    name = conn.dialect.name
    if name == "postgresql":
        return pg_rows
    if name == "sqlite":
        return sqlite_rows
    raise UnsupportedDialect(f"no batch ingest writes for database dialect {name!r}")


def _holding(conn: sa.Connection, rows: Sequence[LatestState]) -> set[str]:
    """The registers whose stored latest state is now the given row's version."""
    wanted = {row.register_id: (row.agent_id, row.session, row.seq) for row in rows}
    stored = conn.execute(
        sa.select(register_state.c.register_id, register_state.c.agent_id, register_state.c.session, register_state.c.seq)
        .where(member_of(conn, register_state.c.register_id, wanted))
    )
    return {row.register_id for row in stored if wanted[row.register_id] == (row.agent_id, row.session, row.seq)}


def upsert_latest_states(conn: sa.Connection, rows: Sequence[LatestState]) -> set[str]:
    """``storage.upsert_latest_state`` for many registers (one row each); returns those written.

    Counted, not returned, by the database: when some row lost to a newer stored one (another
    collector, a replay) the stored versions tell which were written.
    """
    if not rows:
        return set()
    ordered = sorted(rows, key=lambda r: r.register_id)  # one lock order for every writer
    if _backend(conn).upsert_latest_states(conn, ordered) == len(ordered):
        return {row.register_id for row in ordered}
    return _holding(conn, ordered)


def insert_history(conn: sa.Connection, rows: Sequence[HistoryRow]) -> int:
    """``storage.insert_history`` for a batch; returns how many were new."""
    if not rows:
        return 0
    return int(_backend(conn).insert_history(conn, rows))


def _link_update(conn: sa.Connection) -> Any:
    return (
        sa.update(register_state)
        .where(register_state.c.register_id == sa.bindparam("b_register"))
        .values(link_up=sa.bindparam("b_up"))
    )


def set_links(conn: sa.Connection, links: dict[str, bool]) -> None:
    if links:
        conn.execute(
            _statement(conn, "link_update", _link_update),
            [{"b_register": register_id, "b_up": links[register_id]} for register_id in sorted(links)],
        )


def _evaluation_update(conn: sa.Connection) -> Any:
    return (
        sa.update(register_state)
        .where(register_state.c.register_id == sa.bindparam("b_register"))
        .values(
            worst_severity=sa.bindparam("b_worst"),
            time_to_block_seconds=sa.bindparam("b_ttb"),
            blocks_at=sa.bindparam("b_blocks_at", type_=register_state.c.blocks_at.type),
            evaluated_at=sa.bindparam("b_evaluated_at", type_=register_state.c.evaluated_at.type),
            sell_status=sa.bindparam("b_sell_status"),
            sell_rank=sa.bindparam("b_sell_rank"),
            verdict=sa.bindparam("b_verdict", type_=register_state.c.verdict.type),
            verdict_key=sa.bindparam("b_verdict_key"),
        )
    )


def set_evaluations(conn: sa.Connection, evaluations: dict[str, RegisterEvaluation]) -> None:
    """``storage.set_register_evaluation`` for many registers."""
    params = [
        {
            "b_register": register_id,
            "b_worst": check_severity(e.worst_severity),
            "b_ttb": e.time_to_block_seconds,
            "b_blocks_at": e.blocks_at,
            "b_evaluated_at": e.evaluated_at,
            "b_sell_status": e.sell_status,
            "b_sell_rank": e.sell_rank,
            "b_verdict": None if e.verdict is None else dict(e.verdict),
            "b_verdict_key": e.verdict_key,
        }
        for register_id, e in sorted(evaluations.items())
    ]
    if params:
        conn.execute(_statement(conn, "evaluation_update", _evaluation_update), params)


def lock_idle_agents(conn: sa.Connection, agent_ids: Collection[str]) -> set[str]:
    """Lock (in key order) and return those of ``agent_ids`` that no other transaction holds.

    For bookkeeping that may wait for a later batch (``last_seen``, the clock offset): it runs at
    the end of a batch, when this transaction already holds register rows, so waiting there for an
    agent row that another collector's batch holds (it wrote the agent's status or enrolled it
    first, and now waits for our registers) would close a deadlock cycle. Skipping never waits.
    SQLite has one writer at a time: every agent is free.
    """
    if not agent_ids:
        return set()
    if conn.dialect.name != "postgresql":
        return set(agent_ids)
    query = (
        sa.select(agents.c.agent_id)
        .where(member_of(conn, agents.c.agent_id, sorted(agent_ids)))
        .order_by(agents.c.agent_id)
        .with_for_update(key_share=True, skip_locked=True)  # FOR NO KEY UPDATE: registers' FK checks pass
    )
    return set(conn.execute(query).scalars())


# (online, status session, revoked) of the agents about to be marked seen; on PostgreSQL only
# those no other transaction holds, locked in key order (see lock_idle_agents).
_SEEN_AGENTS = "SELECT agent_id, online, status_session, revoked FROM agents WHERE agent_id IN "
_SEEN_AGENTS_SQL = {
    "sqlite": _SEEN_AGENTS + "(SELECT value FROM json_each(?))",
    "postgresql": _SEEN_AGENTS
    + "(SELECT json_array_elements_text(%s::json)) ORDER BY agent_id FOR NO KEY UPDATE SKIP LOCKED",
}


def mark_agents_seen(conn: sa.Connection, seen: dict[str, tuple[datetime, int]]) -> tuple[set[str], set[str]]:
    """``storage.mark_agent_seen`` for many agents: last_seen/last_session only move forward.

    Agents another transaction holds are skipped (as ``lock_idle_agents`` does). Returns those
    written, and those of them it brought online (a newer session than their status): only
    these changed anything the register list shows.
    """
    if not seen:
        return set(), set()
    backend = _backend(conn)
    stored: dict[str, tuple[bool, int | None, bool]] = {
        row[0]: (bool(row[1]), row[2], bool(row[3]))
        for row in conn.exec_driver_sql(_SEEN_AGENTS_SQL[conn.dialect.name], (json.dumps(sorted(seen)),))
    }
    free = set(stored) if conn.dialect.name == "postgresql" else set(seen)  # SQLite: one writer at a time
    rows = [(agent, at, session) for agent, (at, session) in sorted(seen.items()) if agent in free]
    if rows:
        backend.mark_agents_seen(conn, rows)
    woken = set()
    for agent, _, session in rows:
        online, status_session, revoked = stored.get(agent, (True, None, True))  # unknown: nothing to change
        if not online and not revoked and (status_session is None or status_session < session):
            woken.add(agent)
    return free, woken


def _agent_enroll(conn: sa.Connection) -> Any:
    stmt = upsert_insert(conn, agents)
    return stmt.on_conflict_do_update(
        index_elements=[agents.c.agent_id],
        set_={
            "tenant_id": stmt.excluded.tenant_id,
            "node_id": stmt.excluded.node_id,
            "enrolled_at": stmt.excluded.enrolled_at,
            "revoked": False,
        },
    )


def _agent_admit(conn: sa.Connection) -> Any:
    return upsert_insert(conn, agents).on_conflict_do_nothing(index_elements=[agents.c.agent_id])


def enroll_agents(
    conn: sa.Connection,
    agent_ids: Sequence[str],
    *,
    tenant_id: int,
    node_id: int,
    enrolled_at: datetime,
    rebind: bool = True,
) -> None:
    """``storage.enroll_agent`` for many agents into one node (same re-bind semantics).

    ``rebind=False`` (auto-registration of newcomers) leaves an agent that exists meanwhile as it
    is: another collector registered it a moment ago, and re-binding would lock its row for the
    rest of this batch — the first step of a deadlock with that collector's batch.
    """
    if not agent_ids:
        return
    if conn.execute(sa.select(nodes.c.id).where(nodes.c.id == node_id, nodes.c.tenant_id == tenant_id)).first() is None:
        raise UnknownNode(f"node {node_id} does not exist in tenant {tenant_id}")
    params = [
        {"agent_id": agent, "tenant_id": tenant_id, "node_id": node_id, "enrolled_at": enrolled_at, "revoked": False}
        for agent in sorted(agent_ids)
    ]
    name, build = ("agent_enroll", _agent_enroll) if rebind else ("agent_admit", _agent_admit)
    conn.execute(_statement(conn, name, build), params)


def advance_ingest_marks(conn: sa.Connection, marks: dict[tuple[str, int], int]) -> None:
    """``storage.advance_ingest_mark`` for many (agent, session): never lowers a mark."""
    if marks:
        _backend(conn).advance_ingest_marks(conn, [(agent, session, seq) for (agent, session), seq in sorted(marks.items())])


SUPERSEDED_SESSION = 0  # below every real session (they start at 1): any message of the agent wins


def _superseded_states(conn: sa.Connection) -> Any:
    owned = sa.select(registers.c.register_id).where(registers.c.agent_id == sa.bindparam("b_agent"))
    return (
        sa.update(register_state)
        .where(
            register_state.c.register_id.in_(owned),  # through the registers' agent index
            register_state.c.agent_id == sa.bindparam("b_agent"),
            register_state.c.session > sa.bindparam("b_session"),
        )
        .values(session=SUPERSEDED_SESSION, seq=0)
    )


def _lowered_last_session(conn: sa.Connection) -> Any:
    return (
        sa.update(agents)
        .where(agents.c.agent_id == sa.bindparam("b_agent"), agents.c.last_session > sa.bindparam("b_session"))
        .values(last_session=sa.bindparam("b_session"))
    )


def _lowered_status_session(conn: sa.Connection) -> Any:
    return (
        sa.update(agents)
        .where(agents.c.agent_id == sa.bindparam("b_agent"), agents.c.status_session > sa.bindparam("b_session"))
        .values(status_session=sa.bindparam("b_session"), online=True)  # a birth is only sent while connected
    )


def supersede_sessions(conn: sa.Connection, births: dict[str, int]) -> None:
    """A birth says which session its agent is in now, and an agent's sessions only grow: what is
    stored from a *higher* session of that agent was forged (or comes from a reinstalled agent),
    so it must stop outranking the agent. Its register states are marked superseded (the birth's
    own states, written next, replace them; a register the birth cannot read yet is replaced by
    its next state) and the agent's session bookkeeping comes back down to the birth's session."""
    if not births:
        return
    params = [{"b_agent": agent, "b_session": check_seq("session", session)} for agent, session in sorted(births.items())]
    for name, build in (
        ("superseded_states", _superseded_states),
        ("lowered_last_session", _lowered_last_session),
        ("lowered_status_session", _lowered_status_session),
    ):
        conn.execute(_statement(conn, name, build), params)
