"""Tree rollups: every node with the registers of its whole subtree counted by worst severity,
the earliest stop ahead among those that can still sell, and how many cannot sell now."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from collector.storage.node_totals import SEVERITY_COLUMNS
from collector.storage.rows import SEVERITY_LEVELS, NodeRollup
from collector.storage.schema import node_totals, nodes
from collector.storage.scope import Scope, node_visible

_COUNTS = (node_totals.c.registers, node_totals.c.cannot_sell, *SEVERITY_COLUMNS)
# A node's totals as one list, cheap to add up 12 500 stores: [registers, cannot sell, then one
# count per severity in SEVERITY_LEVELS order]; the earliest stop ahead is kept beside it.
_REGISTERS, _CANNOT_SELL, _FIRST_SEVERITY = 0, 1, 2
_NONE = (0,) * len(_COUNTS)
# Positions in a row of the tree query: id, parent id, the counts, the earliest stop, kind, name, path.
_OWN = slice(2, 2 + len(_COUNTS))
_EARLIEST = 2 + len(_COUNTS)
_KIND = _EARLIEST + 1


def node_rollups(
    conn: sa.Connection, scope: Scope, *, node_ids: Sequence[int] | None = None
) -> list[NodeRollup]:
    """Every visible node (or just ``node_ids``), ordered by path, with its subtree rolled up.

    Each node's own registers come counted from ``node_totals``; summing up the tree happens
    here: in reverse path order every node comes after all of its descendants, so adding each
    node's totals to its parent's once rolls the whole tree up. Only visible nodes are summed, so
    a scope's totals never include what it may not see (the nodes above its grants are not shown).
    """
    query = (
        sa.select(nodes.c.id, nodes.c.parent_id, *_COUNTS, node_totals.c.earliest_stop, nodes.c.kind, nodes.c.name,
                  nodes.c.path)
        .select_from(nodes.outerjoin(node_totals, node_totals.c.node_id == nodes.c.id))
        .where(node_visible(scope, nodes))
        .order_by(nodes.c.path)
    )
    # Plain tuples, read by position: 12 500 stores make Row attribute lookups a third of the time.
    tree = [tuple(row) for row in conn.execute(query)]
    counts: dict[int, list[int]] = {}
    earliest: dict[int, datetime | None] = {}
    for node in tree:
        own = node[_OWN]
        counts[node[0]] = list(_NONE if own[0] is None else own)
        earliest[node[0]] = node[_EARLIEST]
    for node_id, parent, *_ in reversed(tree):
        if parent not in counts:  # a root of the scope: what is above it is not shown
            continue
        counts[parent] = [total + mine for total, mine in zip(counts[parent], counts[node_id], strict=True)]
        stop = earliest[node_id]
        if stop is not None and (earliest[parent] is None or stop < earliest[parent]):  # type: ignore[operator]
            earliest[parent] = stop
    wanted = None if node_ids is None else set(node_ids)
    rollups: list[NodeRollup] = []
    for node in tree:
        node_id = node[0]
        if wanted is not None and node_id not in wanted:
            continue
        total = counts[node_id]
        rollups.append(
            NodeRollup(
                node_id=node_id,
                parent_id=node[1],
                kind=node[_KIND],
                name=node[_KIND + 1],
                path=node[_KIND + 2],
                registers=total[_REGISTERS],
                by_severity=dict(zip(SEVERITY_LEVELS, total[_FIRST_SEVERITY:], strict=True)),
                earliest_blocks_at=earliest[node_id],
                cannot_sell=total[_CANNOT_SELL],
            )
        )
    return rollups
