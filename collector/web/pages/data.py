"""What the pages read, all under the caller's scope. Counters and lists go through the API's own
queries (``queries.count_registers_each``, ``queries.list_register_page``) with the same
``RegisterFilters`` and so the same predicates, so a dashboard counter, the list it links to and the
CSV export of that list cannot disagree."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa

from collector.accounts import tree as account_tree
from collector.accounts.tree_levels import DEFAULT_TITLES
from collector.alerts import RuleId, fix_text
from collector.alerts.verdict import NO_DATA
from collector.storage import repository as repo
from collector.storage.rows import CommentRow, NodeRollup
from collector.storage.schema import alert_comments, nodes, register_summary, register_tags, registers, tags
from collector.storage.scope import Scope, node_visible, register_visible, summary_visible
from collector.web.i18n import DEFAULT_LANGUAGE, labels
from collector.web.shared import fleet_queries as queries
from collector.web.shared import present
from collector.web.shared.fleet_models import RegisterFilters, RegisterSummary

FILTER_KEYS: tuple[str, ...] = ("status", "severity", "rule", "node", "tag", "protocol", "q", "sell", "ofd", "sort")


def filter_query(filters: RegisterFilters, **extra: Any) -> str:
    """The query string of ``filters`` (defaults left out), plus ``extra``."""
    values = {
        key: value for key, value in filters.model_dump(exclude_defaults=True).items() if value is not None
    }
    values.update({key: value for key, value in extra.items() if value is not None})
    return urlencode(values)


@dataclass(frozen=True, slots=True)
class ProblemCounter:
    key: str
    title: str
    filters: RegisterFilters
    count: int = 0
    fix: str | None = None  # what to do, for the person who acts

    @property
    def href(self) -> str:
        return f"/registers?{filter_query(self.filters)}"


_EACH_ITS_OWN = "Откройте список: у каждой кассы написано, почему она не может продавать и что сделать."

# The dashboard's problems, in the order ops look at them. Titles are the interface's own words;
# the fix is the catalogue's (collector.alerts.fixes) for the counter's rule, without one register's numbers.
COUNTERS: tuple[tuple[str, str, RegisterFilters, str | None], ...] = (
    ("cannot_sell", "Сейчас не могут продавать", RegisterFilters(sell="cannot_sell"), _EACH_ITS_OWN),
    ("unknown", "Нет данных", RegisterFilters(sell="unknown"), fix_text(NO_DATA)),
    ("fn_not_fiscal", "Не зарегистрированы в ФНС", RegisterFilters(rule="fn_not_fiscal"), fix_text(RuleId.FN_NOT_FISCAL)),
    ("ofd_not_activated", "ОФД не активирован", RegisterFilters(ofd="not_activated"), fix_text(RuleId.OFD_CONTRACT, {"activated": False})),
    ("offline", "Агент не на связи", RegisterFilters(status="offline"), fix_text(RuleId.AGENT_OFFLINE)),
    ("unreachable", "Касса не отвечает", RegisterFilters(status="unreachable"), fix_text(RuleId.REGISTER_UNREACHABLE)),
    ("ofd_backlog", "Не переданы в ОФД", RegisterFilters(rule="ofd_backlog"), fix_text(RuleId.OFD_BACKLOG)),
    ("fn_validity", "Срок ФН истекает", RegisterFilters(rule="fn_validity"), fix_text(RuleId.FN_VALIDITY)),
    ("fn_memory", "Память ФН", RegisterFilters(rule="fn_memory"), fix_text(RuleId.FN_MEMORY)),
    ("shift_too_long", "Смена 20+ ч или просрочена", RegisterFilters(rule="shift_too_long"), fix_text(RuleId.SHIFT_TOO_LONG)),
    ("ofd_contract", "ОФД не оплачен", RegisterFilters(rule="ofd_contract"), fix_text(RuleId.OFD_CONTRACT)),
    ("paper_out", "Нет бумаги", RegisterFilters(rule="paper_out"), fix_text(RuleId.PAPER_OUT)),
    ("clock_skew", "Часы расходятся", RegisterFilters(rule="clock_skew"), fix_text(RuleId.CLOCK_SKEW)),
)


def problem_counters(conn: sa.Connection, scope: Scope) -> list[ProblemCounter]:
    totals = queries.count_registers_each(conn, scope, [filters for _, _, filters, _ in COUNTERS])
    return [
        ProblemCounter(key, title, filters, total, fix)
        for (key, title, filters, fix), total in zip(COUNTERS, totals, strict=True)
    ]


def shift_summary(conn: sa.Connection, scope: Scope) -> dict[str, int]:
    """Registers in scope by shift status; registers never polled count as ``unknown``."""
    status = sa.func.coalesce(register_summary.c.shift_status, "unknown")
    rows = conn.execute(
        sa.select(status, sa.func.count()).where(summary_visible(conn, scope)).group_by(status)
    )
    counts = {"open": 0, "expired": 0, "closed": 0, "unknown": 0}
    for name, count in rows:
        counts[name if name in counts else "unknown"] += int(count)
    return counts


def register_summaries(
    conn: sa.Connection, scope: Scope, filters: RegisterFilters, at: datetime, *, limit: int, offset: int
) -> tuple[list[RegisterSummary], int]:
    page = queries.list_register_page(conn, scope, filters, limit=limit, offset=offset)
    context = queries.page_context(conn, scope, page.rows)
    return [present.register_summary(row, context, at) for row in page.rows], page.total


def next_to_block(
    conn: sa.Connection, scope: Scope, at: datetime, *, limit: int = 10
) -> list[RegisterSummary]:
    summaries, _ = register_summaries(
        conn, scope, RegisterFilters(sort="time_to_block"), at, limit=limit, offset=0
    )
    # Cannot sell now, unknown, then the stops ahead: the list's own order; "no threat" is left out.
    return [summary for summary in summaries if summary.sell_status != "no_threat"]


@dataclass
class TreeNode:
    rollup: NodeRollup
    depth: int
    children: list[TreeNode] = field(default_factory=list)
    more: bool = False  # has child nodes this view does not show: its own view opens them

    @property
    def problems(self) -> int:
        return sum(count for label, count in self.rollup.by_severity.items() if label != "info")


def node_tree(rollups: Sequence[NodeRollup]) -> list[TreeNode]:
    """Nest the visible nodes (ordered by path); a node whose parent is hidden becomes a root."""
    built: dict[int, TreeNode] = {}
    roots: list[TreeNode] = []
    for rollup in rollups:
        parent = built.get(rollup.parent_id) if rollup.parent_id is not None else None
        node = TreeNode(rollup, depth=0 if parent is None else parent.depth + 1)
        built[rollup.node_id] = node
        (roots if parent is None else parent.children).append(node)
    return roots


def flatten(tree: Sequence[TreeNode]) -> list[TreeNode]:
    out: list[TreeNode] = []
    for node in tree:
        out.append(node)
        out.extend(flatten(node.children))
    return out


def tree(conn: sa.Connection, scope: Scope, *, top: int | None = None) -> list[TreeNode]:
    """One view of the tree page: ``top`` (else the scope's roots) and the levels below it that
    fit a view; a node with more below links to its own view. Costs what it shows, not the tree."""
    shown = repo.view_node_ids(conn, scope, top=top)
    roots = node_tree(repo.node_rollups(conn, scope, node_ids=shown))
    parents = repo.with_children(conn, shown)
    for node in flatten(roots):
        node.more = not node.children and node.rollup.node_id in parents
    return roots


def level_titles(conn: sa.Connection, scope: Scope) -> dict[str, str]:
    """What the tree shows for each node kind: the company's names (defaults across companies)."""
    return dict(DEFAULT_TITLES) if scope.tenant_id is None else account_tree.level_titles(conn, scope.tenant_id)


@dataclass(frozen=True, slots=True)
class FilterChoices:
    """Options of the register filter's selects, as (value, title) pairs."""

    node_options: list[tuple[int, str]]
    tags: list[str]
    protocols: list[str]

    @property
    def tag_options(self) -> list[tuple[str, str]]:
        return [(tag, tag) for tag in self.tags]

    @property
    def protocol_options(self) -> list[tuple[str, str]]:
        names = labels(DEFAULT_LANGUAGE)
        return [(protocol, names.protocol(protocol)) for protocol in self.protocols]


def filter_choices(conn: sa.Connection, scope: Scope) -> FilterChoices:
    visible = sa.select(registers.c.register_id).where(register_visible(scope))
    tag_names = conn.execute(
        sa.select(tags.c.name)
        .distinct()
        .join(register_tags, register_tags.c.tag_id == tags.c.id)
        .where(register_tags.c.register_id.in_(visible))
        .order_by(tags.c.name)
    ).scalars()
    protocols = conn.execute(
        sa.select(registers.c.protocol)
        .distinct()
        .where(register_visible(scope))
        .order_by(registers.c.protocol)
    ).scalars()
    return FilterChoices(node_options=node_options(conn, scope), tags=list(tag_names), protocols=list(protocols))


def node_options(conn: sa.Connection, scope: Scope) -> list[tuple[int, str]]:
    """Every visible node by its path in the caller's tree without the company itself («Продукты у
    дома / Москва»), so two cities of one name under different brands can be told apart. Names
    only: no counts to add up for the 12 500 stores of a big company."""
    rows = conn.execute(
        sa.select(nodes.c.id, nodes.c.parent_id, nodes.c.name).where(node_visible(scope, nodes)).order_by(nodes.c.path)
    )
    above: dict[int, str] = {}  # path order: a node's parent comes first
    options: list[tuple[int, str]] = []
    for node_id, parent_id, name in rows:
        if parent_id is None:  # the company: every node is in it, naming it adds nothing
            above[node_id] = ""
        else:
            parent = above.get(parent_id, "")  # a hidden parent: the node starts the caller's tree
            above[node_id] = f"{parent} / {name}" if parent else name
        options.append((node_id, above[node_id] or name))
    return options


@dataclass(frozen=True, slots=True)
class RegisterBrief:
    register_id: str
    serial: str | None
    node_name: str | None
    node_path: str | None
    tenant_id: int


def register_briefs(
    conn: sa.Connection, scope: Scope, register_ids: Sequence[str]
) -> dict[str, RegisterBrief]:
    """Store names and serials for an alert list (only registers inside the scope)."""
    if not register_ids:
        return {}
    rows = conn.execute(
        sa.select(
            registers.c.register_id, registers.c.serial, nodes.c.name, nodes.c.path, registers.c.tenant_id
        )
        .select_from(registers.outerjoin(nodes, nodes.c.id == registers.c.node_id))
        .where(registers.c.register_id.in_(list(set(register_ids))), register_visible(scope))
    )
    return {row[0]: RegisterBrief(*row) for row in rows}


def comments_by_alert(conn: sa.Connection, alert_ids: Sequence[int]) -> dict[int, list[CommentRow]]:
    """Comments of the listed alerts, oldest first (ids come from a scoped alert query)."""
    found: dict[int, list[CommentRow]] = {alert_id: [] for alert_id in alert_ids}
    if alert_ids:
        rows = conn.execute(
            sa.select(alert_comments)
            .where(alert_comments.c.alert_id.in_(list(alert_ids)))
            .order_by(alert_comments.c.at, alert_comments.c.id)
        )
        for row in rows:
            found[row.alert_id].append(CommentRow(**row._asdict()))
    return found


def actionable_register_ids(
    conn: sa.Connection, action_scope: Scope | None, register_ids: Sequence[str]
) -> set[str]:
    """Of these (already visible) registers, those whose alerts the caller may acknowledge, comment
    on and silence; ``action_scope`` None means wherever they can see. Pages offer the buttons only there."""
    if action_scope is None or not register_ids:
        return set(register_ids)
    rows = conn.execute(
        sa.select(registers.c.register_id).where(
            registers.c.register_id.in_(list(set(register_ids))), register_visible(action_scope)
        )
    )
    return {row[0] for row in rows}
