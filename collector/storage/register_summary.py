"""Keeping ``register_summary`` in step with the tables it summarises.

A summary row is never edited column by column: :func:`refresh_registers` recomputes the rows of
the named registers from ``registers``, ``register_state``, ``agents``, ``alerts`` and ``nodes``
(the path) in one prebuilt INSERT … SELECT … ON CONFLICT statement, so every caller (the writer
once per batch, the alert evaluator once per chunk, the one-row repository functions, placing a
register, moving a node) runs the same SQL, a repeated refresh is harmless, and a row whose values
did not change is not rewritten. Deleted registers lose their row through the foreign key's
cascade; a deleted node leaves ``node_id`` NULL through its ON DELETE SET NULL, as on ``registers``
(scopes ignore the path of an unplaced register).

On PostgreSQL existing rows are locked (in id order) before they are recomputed: two transactions
that changed different source tables of one register then refresh one after the other, and the
second statement's snapshot sees the first one's commit, so neither overwrites the other with
stale values. (Two transactions creating the same register's first row race without that lock;
:func:`refresh_all` rebuilds every row.)

The writer names most of its registers as ``settled``: all it changed is the latest state's shift
status and link flag, so the row (read under that lock, hence the latest committed version) is
recomputed only when it shows other values — which, every change to a source being refreshed in
its own transaction, is exactly when the recomputation would change it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Collection, Mapping

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement

from collector.storage import node_totals
from collector.storage.dialect import member_of, member_of_param, member_values
from collector.storage.errors import UnsupportedDialect
from collector.storage.ranks import NO_BLOCK as NO_BLOCK
from collector.storage.ranks import UNKNOWN_SELL_RANK, severity_rank
from collector.storage.rows import SEVERITY_LEVELS
from collector.storage.schema import agents, alerts, nodes, register_state, register_summary, registers

NO_SEVERITY_ORDER = len(SEVERITY_LEVELS)  # severity_order of a register without an active alert
SEARCH_SEPARATOR = "\n"  # between the identifiers in search_text; never inside a search term
_CHUNK = 500  # ids per refresh statement, well under every backend's parameter limit


def severity_order(column: ColumnElement[str | None]) -> ColumnElement[int]:
    """0 for the worst severity … ``NO_SEVERITY_ORDER`` for none: ascending = worst first."""
    return NO_SEVERITY_ORDER - severity_rank(column)


def _search_text() -> ColumnElement[str]:
    parts: list[ColumnElement[str]] = [registers.c.register_id]
    parts += [sa.func.coalesce(column, "") for column in (registers.c.serial, registers.c.rnm, registers.c.fn_serial)]
    joined = parts[0]
    for part in parts[1:]:
        joined = joined.concat(SEARCH_SEPARATOR).concat(part)
    return sa.func.lower(joined)


def _computed(dialect: str, ids: str | None) -> sa.Select[tuple[object, ...]]:
    """The summary rows of the registers in the parameter named ``ids`` (None: of every
    register), computed from the source tables."""
    # Uncorrelated IN, built once per statement: SQLite, without statistics, ran a correlated
    # EXISTS through alerts' (status, severity) index, i.e. over every active alert per register.
    active = sa.select(alerts.c.register_id).where(alerts.c.status == "active")
    if ids is not None:
        active = active.where(member_of_param(dialect, alerts.c.register_id, ids))
    has_active_alert = registers.c.register_id.in_(active)
    return (
        sa.select(
            registers.c.register_id,
            registers.c.tenant_id,
            registers.c.node_id,
            nodes.c.path.label("node_path"),
            registers.c.protocol,
            _search_text().label("search_text"),
            sa.func.coalesce(register_state.c.sell_rank, UNKNOWN_SELL_RANK).label("sell_rank"),
            register_state.c.sell_status,
            sa.func.coalesce(register_state.c.blocks_at, sa.literal(NO_BLOCK, register_summary.c.block_order.type)).label(
                "block_order"
            ),
            severity_order(register_state.c.worst_severity).label("severity_order"),
            register_state.c.worst_severity,
            has_active_alert.label("problem"),
            agents.c.online.label("agent_online"),
            register_state.c.link_up,
            register_state.c.shift_status,
        )
        .select_from(
            registers.outerjoin(register_state, register_state.c.register_id == registers.c.register_id)
            .outerjoin(agents, agents.c.agent_id == registers.c.agent_id)
            .outerjoin(nodes, nodes.c.id == registers.c.node_id)
        )
        .where(sa.true() if ids is None else member_of_param(dialect, registers.c.register_id, ids))
    )


_COLUMNS = [column.name for column in register_summary.columns]


@functools.cache
def _upsert_statement(dialect: str, every: bool) -> sa.Executable:
    """Built once per backend (building it costs more than running it on 500 registers); the ids
    go in as the one parameter ``ids`` (``member_values``), so its text is the same for every batch."""
    ids = None if every else "ids"
    insert: sqlite.Insert | postgresql.Insert
    if dialect == "sqlite":
        insert = sqlite.insert(register_summary)
    elif dialect == "postgresql":
        insert = postgresql.insert(register_summary)
    else:
        raise UnsupportedDialect(f"no ON CONFLICT support for database dialect {dialect!r}")
    stmt = insert.from_select(_COLUMNS, _computed(dialect, ids))
    kept = [name for name in _COLUMNS if name != "register_id"]
    upsert = stmt.on_conflict_do_update(
        index_elements=[register_summary.c.register_id],
        set_={name: stmt.excluded[name] for name in kept},
        # Most batches change nothing the list sorts on (a heartbeat, a receipt): write no new row version.
        where=sa.or_(*(register_summary.c[name].is_distinct_from(stmt.excluded[name]) for name in kept)),
    )
    # The rows written (new or changed) say which node totals to recompute; a full rebuild needs none.
    return upsert if every else upsert.returning(register_summary.c.register_id, register_summary.c.node_id)


def _upsert(conn: sa.Connection, register_ids: list[str]) -> list[tuple[str, int | None]]:
    """Recompute these rows; returns (register, node now) of the rows that were written."""
    stmt = _upsert_statement(conn.dialect.name, False)
    return [(row[0], row[1]) for row in conn.execute(stmt, {"ids": member_values(conn.dialect.name, register_ids)})]


_BEFORE = "SELECT register_id, node_id, shift_status, link_up FROM register_summary WHERE register_id IN "
_BEFORE_SQL = {
    "sqlite": _BEFORE + "(SELECT value FROM json_each(?))",
    # Locked in id order: LockRows runs above the sort.
    "postgresql": _BEFORE + "(SELECT json_array_elements_text(%s::json)) ORDER BY register_id FOR UPDATE",
}


def _rows_before(conn: sa.Connection, register_ids: list[str]) -> dict[str, tuple[int | None, str | None, bool | None]]:
    """(node, shift status, link flag) of these registers' summary rows now, locking the rows on
    PostgreSQL (in id order, as every refresh does): locked, they show the latest committed version.

    Fixed SQL text with the ids as one JSON parameter: read for every batch, a row per register,
    where SQLAlchemy's typed result rows cost twice what the query does."""
    sql = _BEFORE_SQL.get(conn.dialect.name)
    if sql is None:
        raise UnsupportedDialect(f"no summary refresh for database dialect {conn.dialect.name!r}")
    rows = conn.exec_driver_sql(sql, (json.dumps(register_ids),))
    return {row[0]: (row[1], row[2], None if row[3] is None else bool(row[3])) for row in rows}


def refresh_registers(
    conn: sa.Connection, register_ids: Collection[str], settled: Mapping[str, tuple[str | None, bool]] | None = None
) -> None:
    """Recompute the summary rows of these registers (unknown ids are ignored), then the node
    totals of the nodes a changed row left or joined (after every summary lock, in node order).

    ``settled``: more registers, of which this transaction changed nothing the summary reads but
    the latest state's shift status and link flag, to these values. Such a row is recomputed only
    when it is missing or shows other values; otherwise the recomputation would write nothing."""
    settled = settled or {}
    required = set(register_ids)
    ordered = sorted(required | set(settled))
    touched: set[int | None] = set()
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start : start + _CHUNK]
        before = _rows_before(conn, chunk)
        stale = [
            register_id for register_id in chunk
            if register_id in required or register_id not in before or before[register_id][1:] != settled[register_id]
        ]  # fmt: skip
        if not stale:
            continue  # every row already shows what this transaction wrote
        for register_id, node_id in _upsert(conn, stale):
            touched |= {before.get(register_id, (None,))[0], node_id}
    node_totals.refresh_nodes(conn, touched)


def refresh_agents(
    conn: sa.Connection,
    agent_ids: Collection[str],
    also: Collection[str] = (),
    settled: Mapping[str, tuple[str | None, bool]] | None = None,
) -> None:
    """Recompute the rows of every register these agents poll (their online flag changed), and of
    the registers ``also`` (and ``settled``, see :func:`refresh_registers`), in one sorted pass of
    locks (two passes could lock crosswise)."""
    found: list[str] = []
    if agent_ids:
        owned = sa.select(registers.c.register_id).where(member_of(conn, registers.c.agent_id, sorted(set(agent_ids))))
        found = list(conn.execute(owned).scalars())
    refresh_registers(conn, [*found, *also], settled)


def refresh_subtree(conn: sa.Connection, tenant_id: int, path: str) -> None:
    """Recompute the rows of every register placed at or below the node with this path (it moved)."""
    below = sa.select(nodes.c.id).where(nodes.c.tenant_id == tenant_id, nodes.c.path.startswith(path))
    found = conn.execute(sa.select(registers.c.register_id).where(registers.c.node_id.in_(below)))
    refresh_registers(conn, found.scalars().all())


def refresh_all(conn: sa.Connection, *, with_node_totals: bool = True) -> None:
    """Recompute every row, and every node's totals: a repair after a bulk change by hand (revision
    0018's backfill, older than ``node_totals``, leaves them out)."""
    conn.execute(_upsert_statement(conn.dialect.name, True))
    if with_node_totals:
        node_totals.rebuild(conn)
