"""Tree rollups: every node with the registers of its whole subtree counted by worst severity,
the earliest stop ahead among those that can still sell, and how many cannot sell now."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from collector.storage.reads import CANNOT_SELL
from collector.storage.register_summary import NO_BLOCK
from collector.storage.rows import SEVERITY_LEVELS, NodeRollup
from collector.storage.schema import nodes
from collector.storage.schema import register_summary as summary
from collector.storage.scope import Scope, node_visible, summary_visible

# A node's totals as one list, cheap to add up 12 500 stores: [registers, cannot sell, then one
# count per severity in SEVERITY_LEVELS order]; the earliest stop ahead is kept beside it.
_REGISTERS, _CANNOT_SELL, _FIRST_SEVERITY = 0, 1, 2
_WIDTH = _FIRST_SEVERITY + len(SEVERITY_LEVELS)


def _per_node_totals(conn: sa.Connection, scope: Scope) -> dict[int, tuple[list[int], datetime | None]]:
    """Totals of the registers placed directly at each node (one GROUP BY over the register summary)."""
    cannot_sell = summary.c.sell_status == CANNOT_SELL
    # A register that cannot sell has stopped already: its blocks_at is a past, not a stop ahead.
    no_stop_ahead = sa.or_(cannot_sell, summary.c.block_order == sa.literal(NO_BLOCK, summary.c.block_order.type))
    query = (
        sa.select(
            summary.c.node_id,
            sa.func.min(sa.case((no_stop_ahead, None), else_=summary.c.block_order)),
            sa.func.count(),
            sa.func.sum(sa.case((cannot_sell, 1), else_=0)),
            *(sa.func.sum(sa.case((summary.c.worst_severity == label, 1), else_=0)) for label in SEVERITY_LEVELS),
        )
        .where(summary_visible(conn, scope), summary.c.node_id.is_not(None))
        .group_by(summary.c.node_id)
    )
    return {row[0]: ([int(count or 0) for count in row[2:]], row[1]) for row in conn.execute(query)}


def node_rollups(
    conn: sa.Connection, scope: Scope, *, node_ids: Sequence[int] | None = None
) -> list[NodeRollup]:
    """Every visible node (or just ``node_ids``), ordered by path, with its subtree rolled up.

    SQL aggregates per node; summing up the tree happens here: in reverse path order every node
    comes after all of its descendants, so adding each node's totals to its parent's once rolls
    the whole tree up. (Joining every node to every descendant with LIKE in SQL instead is
    quadratic in the number of nodes.)
    """
    tree = conn.execute(
        sa.select(nodes.c.id, nodes.c.parent_id, nodes.c.kind, nodes.c.name, nodes.c.path)
        .where(node_visible(scope, nodes))
        .order_by(nodes.c.path)
    ).all()
    direct = _per_node_totals(conn, scope)
    counts: dict[int, list[int]] = {}
    earliest: dict[int, datetime | None] = {}
    for node in tree:
        own, stop = direct.get(node.id, (None, None))
        counts[node.id] = own if own is not None else [0] * _WIDTH
        earliest[node.id] = stop
    for node in reversed(tree):
        parent = node.parent_id
        if parent not in counts:  # a root of the scope: what is above it is not shown
            continue
        into, mine = counts[parent], counts[node.id]
        for index in range(_WIDTH):
            into[index] += mine[index]
        stop = earliest[node.id]
        if stop is not None and (earliest[parent] is None or stop < earliest[parent]):  # type: ignore[operator]
            earliest[parent] = stop
    wanted = None if node_ids is None else set(node_ids)
    return [
        NodeRollup(
            node_id=node.id,
            parent_id=node.parent_id,
            kind=node.kind,
            name=node.name,
            path=node.path,
            registers=counts[node.id][_REGISTERS],
            by_severity=dict(zip(SEVERITY_LEVELS, counts[node.id][_FIRST_SEVERITY:], strict=True)),
            earliest_blocks_at=earliest[node.id],
            cannot_sell=counts[node.id][_CANNOT_SELL],
        )
        for node in tree
        if wanted is None or node.id in wanted
    ]
