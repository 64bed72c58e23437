"""Tree rollups: every node with the registers of its whole subtree counted by worst severity,
the earliest stop ahead among those that can still sell, and how many cannot sell now."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from collector.storage.reads import CANNOT_SELL
from collector.storage.register_summary import NO_BLOCK
from collector.storage.rows import SEVERITY_LEVELS, NodeRollup
from collector.storage.schema import nodes
from collector.storage.schema import register_summary as summary
from collector.storage.scope import Scope, node_visible, summary_visible


@dataclass
class _Totals:
    registers: int = 0
    by_severity: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SEVERITY_LEVELS, 0))
    earliest_blocks_at: datetime | None = None
    cannot_sell: int = 0

    def add(self, other: _Totals) -> None:
        self.registers += other.registers
        self.cannot_sell += other.cannot_sell
        for label, count in other.by_severity.items():
            self.by_severity[label] += count
        if other.earliest_blocks_at is not None and (
            self.earliest_blocks_at is None or other.earliest_blocks_at < self.earliest_blocks_at
        ):
            self.earliest_blocks_at = other.earliest_blocks_at


def _per_node_totals(conn: sa.Connection, scope: Scope) -> dict[int, _Totals]:
    """Totals of the registers placed directly at each node (one GROUP BY over the register summary)."""
    per_severity = [
        sa.func.sum(sa.case((summary.c.worst_severity == label, 1), else_=0)).label(label) for label in SEVERITY_LEVELS
    ]
    cannot_sell = summary.c.sell_status == CANNOT_SELL
    # A register that cannot sell has stopped already: its blocks_at is a past, not a stop ahead.
    no_stop_ahead = sa.or_(cannot_sell, summary.c.block_order == sa.literal(NO_BLOCK, summary.c.block_order.type))
    query = (
        sa.select(
            summary.c.node_id,
            sa.func.count().label("registers"),
            sa.func.min(sa.case((no_stop_ahead, None), else_=summary.c.block_order)).label("earliest_blocks_at"),
            sa.func.sum(sa.case((cannot_sell, 1), else_=0)).label("cannot_sell"),
            *per_severity,
        )
        .where(summary_visible(scope), summary.c.node_id.is_not(None))
        .group_by(summary.c.node_id)
    )
    return {
        row.node_id: _Totals(
            registers=int(row.registers),
            by_severity={label: int(row._mapping[label] or 0) for label in SEVERITY_LEVELS},
            earliest_blocks_at=row.earliest_blocks_at,
            cannot_sell=int(row.cannot_sell or 0),
        )
        for row in conn.execute(query)
    }


def node_rollups(
    conn: sa.Connection, scope: Scope, *, node_ids: Sequence[int] | None = None
) -> list[NodeRollup]:
    """Every visible node (or just ``node_ids``), ordered by path, with its subtree rolled up.

    SQL aggregates per node; summing up the tree happens here along each materialised path
    ("/1/5/12/" adds to 1, 5 and 12). Joining every node to every descendant with LIKE in SQL
    instead is quadratic in the number of nodes (~1 k nodes: 4–5× slower when measured).
    """
    tree = conn.execute(
        sa.select(nodes.c.id, nodes.c.parent_id, nodes.c.kind, nodes.c.name, nodes.c.path)
        .where(node_visible(scope, nodes))
        .order_by(nodes.c.path)
    ).all()
    totals = {node.id: _Totals() for node in tree}
    direct = _per_node_totals(conn, scope)
    paths = {node.id: node.path for node in tree}
    for node_id, node_totals in direct.items():
        path = paths.get(node_id)
        if path is None:
            continue
        for ancestor in (int(part) for part in path.strip("/").split("/")):
            if ancestor in totals:  # ancestors above the scope's roots are not shown
                totals[ancestor].add(node_totals)
    wanted = None if node_ids is None else set(node_ids)
    return [
        NodeRollup(
            node_id=node.id,
            parent_id=node.parent_id,
            kind=node.kind,
            name=node.name,
            path=node.path,
            registers=totals[node.id].registers,
            by_severity=totals[node.id].by_severity,
            earliest_blocks_at=totals[node.id].earliest_blocks_at,
            cannot_sell=totals[node.id].cannot_sell,
        )
        for node in tree
        if wanted is None or node.id in wanted
    ]
