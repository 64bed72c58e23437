"""Tree rollups: nodes with the registers of their whole subtree counted by worst severity, the
earliest stop ahead among those that can still sell, and how many cannot sell now.

Each node's own registers come counted in ``node_totals``; a node's subtree is one range of its
``node_path``, so the database sums it through the index, and a view of the tree costs what it
shows (the company with its brands and cities sums 25 ranges), not the whole tree. A node inside a
scope has its whole subtree inside it, so its totals never include what the scope may not see.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from collector.storage.node_totals import SEVERITY_COLUMNS
from collector.storage.rows import SEVERITY_LEVELS, NodeRollup
from collector.storage.schema import node_totals, nodes
from collector.storage.scope import Scope, node_visible

_COUNTS = (node_totals.c.registers, node_totals.c.cannot_sell, *SEVERITY_COLUMNS)
_NONE = (0,) * len(_COUNTS) + (None,)  # the counts and earliest stop of a subtree with no register


def _bytewise(conn: sa.Connection, path: ColumnElement[Any]) -> ColumnElement[Any]:
    """``path`` compared byte by byte, as ``node_totals.node_path`` is ordered (PostgreSQL's
    ``nodes.path`` has the database's collation)."""
    return path.collate("C") if conn.dialect.name == "postgresql" else path


def _subtree_totals(conn: sa.Connection, shown: sa.Select[tuple[int]]) -> dict[int, tuple[Any, ...]]:
    """Per node id in ``shown``: its subtree's counts (in ``_COUNTS`` order) and earliest stop."""
    node = nodes.alias("shown_node")
    # "/1/5/…" is the range ["/1/5/", "/1/50"): ids and slashes, and "/" sorts just before "0".
    low = _bytewise(conn, node.c.path)
    high = _bytewise(conn, sa.func.substr(node.c.path, 1, sa.func.length(node.c.path) - 1).concat("0"))
    query = (
        sa.select(node.c.id, *(sa.func.sum(count) for count in _COUNTS), sa.func.min(node_totals.c.earliest_stop))
        .select_from(node.join(node_totals, sa.and_(node_totals.c.node_path >= low, node_totals.c.node_path < high)))
        .where(node.c.id.in_(shown))
        .group_by(node.c.id)
    )
    return {row[0]: (*(int(count) for count in row[1:-1]), row[-1]) for row in conn.execute(query)}


def node_rollups(
    conn: sa.Connection, scope: Scope, *, node_ids: Collection[int] | None = None
) -> list[NodeRollup]:
    """Every visible node (or the visible ones of ``node_ids``), ordered by path, each with its
    whole subtree rolled up (including the nodes below it that were not asked for)."""
    wanted = node_visible(scope, nodes)
    if node_ids is not None:
        wanted = sa.and_(wanted, nodes.c.id.in_(sorted(node_ids)))
    shown = conn.execute(
        sa.select(nodes.c.id, nodes.c.parent_id, nodes.c.kind, nodes.c.name, nodes.c.path)
        .where(wanted)
        .order_by(nodes.c.path)
    ).all()
    totals = _subtree_totals(conn, sa.select(nodes.c.id).where(wanted))
    rollups: list[NodeRollup] = []
    for node_id, parent_id, kind, name, path in shown:
        *counts, earliest = totals.get(node_id, _NONE)
        rollups.append(
            NodeRollup(
                node_id=node_id,
                parent_id=parent_id,
                kind=kind,
                name=name,
                path=path,
                registers=counts[0],
                by_severity=dict(zip(SEVERITY_LEVELS, counts[2:], strict=True)),
                earliest_blocks_at=earliest,
                cannot_sell=counts[1],
            )
        )
    return rollups


VIEW_SIZE = 200  # nodes: a view shows one more level while it stays this small


def _roots(conn: sa.Connection, scope: Scope) -> list[int]:
    """The scope's top nodes: the tenant's roots, or the granted nodes not inside another grant."""
    if scope.node_ids is None:
        query = sa.select(nodes.c.id).where(node_visible(scope, nodes), nodes.c.parent_id.is_(None))
        return list(conn.execute(query.order_by(nodes.c.path)).scalars())
    granted = conn.execute(
        sa.select(nodes.c.id, nodes.c.path)
        .where(nodes.c.id.in_(sorted(scope.node_ids)), nodes.c.tenant_id == scope.tenant_id)
        .order_by(nodes.c.path)
    ).all()
    paths = [path for _, path in granted]
    return [node_id for node_id, path in granted if not any(path != other and path.startswith(other) for other in paths)]


def view_node_ids(conn: sa.Connection, scope: Scope, *, top: int | None = None) -> list[int]:
    """The nodes of one view of the tree — what the tree page shows, one drill-down at a time:
    ``top`` (else the scope's roots), its children, and further levels while the view holds at
    most ``VIEW_SIZE`` nodes. Only visible nodes; an invisible ``top`` gives an empty view."""
    if top is None:
        level = _roots(conn, scope)
    else:
        level = list(conn.execute(sa.select(nodes.c.id).where(node_visible(scope, nodes), nodes.c.id == top)).scalars())
    found = list(level)
    first = True
    while level:
        room = VIEW_SIZE - len(found)
        if not first and room <= 0:
            break
        below = sa.select(nodes.c.id).where(nodes.c.parent_id.in_(level))  # children of visible nodes are visible
        if not first:
            below = below.limit(room + 1)  # enough to tell whether the level fits
        level = list(conn.execute(below).scalars())
        if not first and len(level) > room:
            break
        found += level
        first = False
    return found


def with_children(conn: sa.Connection, node_ids: Sequence[int]) -> set[int]:
    """Which of these nodes have child nodes (a view links those it does not open to their own view)."""
    if not node_ids:
        return set()
    return set(conn.execute(sa.select(nodes.c.parent_id).distinct().where(nodes.c.parent_id.in_(node_ids))).scalars())


def node_page(conn: sa.Connection, scope: Scope, *, limit: int, offset: int) -> tuple[list[int], int]:
    """A page of the visible nodes' ids in path order, and how many are visible (a paged list of
    rollups sums only its page's subtrees)."""
    visible = node_visible(scope, nodes)
    page = sa.select(nodes.c.id).where(visible).order_by(nodes.c.path).limit(limit).offset(offset)
    total = conn.execute(sa.select(sa.func.count()).select_from(nodes).where(visible)).scalar_one()
    return list(conn.execute(page).scalars()), int(total)
