"""What a caller may see, and the SQL predicates that enforce it in every scoped query.

A scope is one tenant plus the company-tree nodes whose subtrees are visible (the union of a
user's grants). Default deny: an empty set of nodes sees nothing; only ``Scope.admin()`` crosses
tenants. Subtrees use the materialised ``nodes.path`` ("/1/5/12/"): a node is inside root R
when its path starts with R's path.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from collector.storage.schema import agents, nodes, register_summary, registers


@dataclass(frozen=True, slots=True)
class Scope:
    """``tenant_id`` None = every tenant (admin); ``node_ids`` None = the whole tenant."""

    tenant_id: int | None
    node_ids: frozenset[int] | None = None

    def __post_init__(self) -> None:
        if self.tenant_id is None and self.node_ids is not None:
            raise ValueError("a scope limited to nodes must name its tenant")

    @classmethod
    def admin(cls) -> Scope:
        """Everything in every tenant: the collector's own jobs, and the API until accounts exist."""
        return cls(tenant_id=None)

    @classmethod
    def tenant(cls, tenant_id: int) -> Scope:
        return cls(tenant_id=tenant_id)

    @classmethod
    def subtrees(cls, tenant_id: int, node_ids: Iterable[int]) -> Scope:
        return cls(tenant_id=tenant_id, node_ids=frozenset(node_ids))

    @property
    def is_admin(self) -> bool:
        return self.tenant_id is None


def visible_node_ids(scope: Scope) -> sa.Select[tuple[int]]:
    """Ids of every node inside a node-limited scope (its roots and all their descendants)."""
    if scope.tenant_id is None or scope.node_ids is None:
        raise ValueError("only a node-limited scope has a node list")
    root = nodes.alias("scope_root")
    below = nodes.alias("scope_node")
    return (
        sa.select(below.c.id)
        .join(root, below.c.path.startswith(root.c.path))
        .where(root.c.id.in_(sorted(scope.node_ids)), root.c.tenant_id == scope.tenant_id)
    )


def _inside(scope: Scope, tenant_id: ColumnElement[int], node_id: ColumnElement[int | None]) -> ColumnElement[bool]:
    if scope.tenant_id is None:
        return sa.true()
    same_tenant = tenant_id == scope.tenant_id
    if scope.node_ids is None:
        return same_tenant
    return sa.and_(same_tenant, node_id.in_(visible_node_ids(scope)))


def node_visible(scope: Scope, node: sa.FromClause) -> ColumnElement[bool]:
    """Predicate on a ``nodes`` table (or alias) in the query: the node is inside the scope."""
    return _inside(scope, node.c.tenant_id, node.c.id)


def register_visible(scope: Scope) -> ColumnElement[bool]:
    """Predicate on the ``registers`` table in the query: the register is inside the scope.

    A register not yet placed in the tree (node_id NULL) is visible to its whole tenant only.
    """
    return _inside(scope, registers.c.tenant_id, registers.c.node_id)


def agent_visible(scope: Scope) -> ColumnElement[bool]:
    """Predicate on the ``agents`` table: the agent's store is inside the scope (an agent not placed
    in the tree is visible to its whole tenant only, like an unplaced register)."""
    return _inside(scope, agents.c.tenant_id, agents.c.node_id)


def in_subtree(node_column: ColumnElement[int | None], root_id: int) -> ColumnElement[bool]:
    """``node_column`` is ``root_id`` or one of its descendants."""
    root = nodes.alias("filter_root")
    inner = nodes.alias("filter_node")
    below = sa.select(inner.c.id).join(root, inner.c.path.startswith(root.c.path)).where(root.c.id == root_id)
    return node_column.in_(below)


def summary_below(path: str) -> ColumnElement[bool]:
    """Predicate on ``register_summary``: placed at the node with this path or below it. Paths are
    ids and slashes ordered bytewise, so "/1/5/…" is the range ["/1/5/", "/1/50"): an index range."""
    return sa.and_(
        register_summary.c.node_id.is_not(None),
        register_summary.c.node_path >= path,
        register_summary.c.node_path < path[:-1] + "0",
    )


def summary_visible(conn: sa.Connection, scope: Scope) -> ColumnElement[bool]:
    """Predicate on ``register_summary``: the register is inside the scope — the rule of
    :func:`register_visible` on the summary's tenant and node path, with the scope's roots looked
    up once (an unplaced register, node NULL, is visible to its whole tenant only)."""
    if scope.tenant_id is None:
        return sa.true()
    same_tenant: ColumnElement[bool] = register_summary.c.tenant_id == scope.tenant_id
    if conn.dialect.name == "sqlite":
        # SQLite keeps no statistics: told nothing, it reads a whole tenant (usually every row)
        # through the tenant index one row at a time, 5× slower than a scan. likely() says so.
        same_tenant = sa.func.likely(same_tenant)  # untyped: a Boolean would render "likely(…) = 1"
    if scope.node_ids is None:
        return same_tenant
    roots = conn.execute(
        sa.select(nodes.c.path).where(nodes.c.id.in_(sorted(scope.node_ids)), nodes.c.tenant_id == scope.tenant_id)
    ).scalars()
    return sa.and_(same_tenant, sa.or_(sa.false(), *(summary_below(path) for path in sorted(set(roots)))))
