"""``node_totals``: per node, the registers placed directly at it, counted as the tree shows them.

Kept in step with ``register_summary``: every refresh of summary rows ends with
:func:`refresh_nodes` for each node those registers were at before or are at now, which recomputes
the node's row from its summary rows (a handful per store, found through the summary's node index)
in one INSERT … SELECT … ON CONFLICT statement. Recomputing instead of adding deltas keeps the
earliest stop exact: a minimum cannot be taken back by a delta. A node left with no register loses
its row; a deleted node loses it through the foreign key's cascade, and a deleted register (its
summary row goes by cascade, with no refresh) through the trigger of :func:`trigger_ddl`. Subtrees are summed when the
tree is read (``collector.storage.rollups``) over a range of ``node_path``; moving a node refreshes
its registers' summary rows, and so these rows' paths.

On PostgreSQL the existing rows are locked in node order before they are recomputed, as the
summary's rows are: two transactions changing registers of one store then recompute it one after
the other, and the second sees the first one's commit.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from collector.storage.errors import UnsupportedDialect
from collector.storage.ranks import CANNOT_SELL, NO_BLOCK
from collector.storage.rows import SEVERITY_LEVELS
from collector.storage.schema import node_totals
from collector.storage.schema import register_summary as summary

SEVERITY_COLUMNS = tuple(node_totals.c[f"severity_{label}"] for label in SEVERITY_LEVELS)
_CHUNK = 500  # node ids per statement, well under every backend's parameter limit


def _computed(node_ids: sa.BindParameter[Any] | None) -> sa.Select[tuple[object, ...]]:
    """The rows of these nodes (None: of every node holding a register), from the summary."""
    cannot_sell = summary.c.sell_status == CANNOT_SELL
    # A register that cannot sell has stopped already: its blocks_at is a past, not a stop ahead.
    no_stop_ahead = sa.or_(cannot_sell, summary.c.block_order == sa.literal(NO_BLOCK, summary.c.block_order.type))
    placed = summary.c.node_id.is_not(None) if node_ids is None else summary.c.node_id.in_(node_ids)
    return (
        sa.select(
            summary.c.node_id,
            sa.func.min(summary.c.node_path),  # one path per node
            sa.func.count(),
            sa.func.sum(sa.case((cannot_sell, 1), else_=0)),
            *(sa.func.sum(sa.case((summary.c.worst_severity == label, 1), else_=0)) for label in SEVERITY_LEVELS),
            sa.func.min(sa.case((no_stop_ahead, None), else_=summary.c.block_order)),
        )
        .where(placed)
        .group_by(summary.c.node_id)
    )


_COLUMNS = [column.name for column in node_totals.columns]


@functools.cache
def _upsert_statement(dialect: str, every: bool) -> sa.Executable:
    """Built once per backend; the node ids go in as the expanding parameter ``ids``."""
    ids: sa.BindParameter[Any] | None = None if every else sa.bindparam("ids", expanding=True)
    insert: sqlite.Insert | postgresql.Insert
    if dialect == "sqlite":
        insert = sqlite.insert(node_totals)
    elif dialect == "postgresql":
        insert = postgresql.insert(node_totals)
    else:
        raise UnsupportedDialect(f"no ON CONFLICT support for database dialect {dialect!r}")
    stmt = insert.from_select(_COLUMNS, _computed(ids))
    kept = [name for name in _COLUMNS if name != "node_id"]
    return stmt.on_conflict_do_update(
        index_elements=[node_totals.c.node_id],
        set_={name: stmt.excluded[name] for name in kept},
        # A batch that changed no register's bucket (a heartbeat, a receipt) writes no new row version.
        where=sa.or_(*(node_totals.c[name].is_distinct_from(stmt.excluded[name]) for name in kept)),
    )


def refresh_nodes(conn: sa.Connection, node_ids: Collection[int | None]) -> None:
    """Recompute the rows of these nodes from the summary (None and unknown ids are ignored)."""
    ordered = sorted({node_id for node_id in node_ids if node_id is not None})
    statement = _upsert_statement(conn.dialect.name, False)
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start : start + _CHUNK]
        if conn.dialect.name == "postgresql":
            conn.execute(
                sa.select(node_totals.c.node_id)
                .where(node_totals.c.node_id.in_(chunk))
                .order_by(node_totals.c.node_id)
                .with_for_update()
            )
        conn.execute(statement, {"ids": chunk})
        still_placed = sa.select(summary.c.node_id).where(summary.c.node_id.in_(chunk))
        conn.execute(
            sa.delete(node_totals).where(node_totals.c.node_id.in_(chunk), node_totals.c.node_id.not_in(still_placed))
        )


def rebuild(conn: sa.Connection) -> None:
    """Recompute every row: the migration's backfill, and a repair after a bulk change by hand."""
    conn.execute(sa.delete(node_totals))
    conn.execute(_upsert_statement(conn.dialect.name, True))


TRIGGER = "node_totals_follow_deleted_registers"


def trigger_ddl(dialect: str) -> list[str]:
    """DDL of the row trigger that recomputes a node's row when a summary row placed there is
    deleted: the register's deletion cascades to the summary, where no refresh runs. Its body is
    this module's statement for one node, rendered when the migration runs."""
    one_node = _computed(None).where(summary.c.node_id == sa.literal_column("OLD.node_id"))
    insert = (sqlite if dialect == "sqlite" else postgresql).insert(node_totals).from_select(_COLUMNS, one_node)
    compiled = insert.compile(dialect=(sqlite if dialect == "sqlite" else postgresql).dialect(),
                              compile_kwargs={"literal_binds": True})
    body = f"DELETE FROM node_totals WHERE node_id = OLD.node_id; {compiled};"
    if dialect == "sqlite":
        return [f"CREATE TRIGGER {TRIGGER} AFTER DELETE ON register_summary WHEN OLD.node_id IS NOT NULL BEGIN {body} END"]
    if dialect == "postgresql":
        return [
            f"CREATE FUNCTION {TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body} RETURN NULL; END $$",
            f"CREATE TRIGGER {TRIGGER} AFTER DELETE ON register_summary FOR EACH ROW WHEN (OLD.node_id IS NOT NULL) "
            f"EXECUTE FUNCTION {TRIGGER}()",
        ]
    raise UnsupportedDialect(f"no trigger for database dialect {dialect!r}")
