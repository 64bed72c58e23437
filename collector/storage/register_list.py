"""The register list, answered from ``register_summary``: filters, counts and sort keys on one
indexed table, then the page's own rows (≤ a page of primary-key lookups) from the full join.

Sorts whose keys all live in the summary (``KEYSET_SORTS``) page with a cursor — the last row's
key values, resumed with a row-value comparison that the sort's index serves — so a deep page
costs what the first one does and a page never repeats or skips a register while others are
inserted. ``offset`` still works for every sort; sorts on columns outside the summary (store
name, serial, last seen) page by offset only.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from collector.storage.coltypes import UtcDateTime
from collector.storage.errors import InvalidValue
from collector.storage.reads import (
    CANNOT_SELL,
    MAX_PAGE,
    REGISTER_COLUMNS,
    REGISTER_FROM,
    REGISTER_STATUSES,
)
from collector.storage.rows import RegisterRow, check_severity
from collector.storage.schema import (
    alerts,
    nodes,
    ofd_contracts,
    register_state,
    register_tags,
    registers,
    tags,
)
from collector.storage.schema import register_summary as summary
from collector.storage.scope import Scope, summary_below, summary_visible

CONNECTIVITY: tuple[str, ...] = ("online", "offline", "unreachable")
SELL_STATUSES: tuple[str, ...] = (CANNOT_SELL, "unknown", "will_stop", "no_threat")

# Every key ascending and NOT NULL, ending with the id: what a row-value cursor needs.
KEYSET_SORTS: dict[str, tuple[sa.Column[Any], ...]] = {
    "time_to_block": (summary.c.sell_rank, summary.c.block_order, summary.c.severity_order, summary.c.register_id),
    "severity": (summary.c.severity_order, summary.c.sell_rank, summary.c.block_order, summary.c.register_id),
    "register": (summary.c.register_id,),
}
# Sorts on columns the summary does not keep: joined for the order, paged by offset.
_JOINED_SORTS: dict[str, tuple[sa.FromClause, ColumnElement[bool], list[ColumnElement[Any]]]] = {
    "store": (nodes, nodes.c.id == summary.c.node_id, [sa.nulls_last(nodes.c.name.asc())]),
    "last_seen": (registers, registers.c.register_id == summary.c.register_id, [registers.c.last_seen.desc()]),
    "serial": (registers, registers.c.register_id == summary.c.register_id, [sa.nulls_last(registers.c.serial.asc())]),
}
SORTS: tuple[str, ...] = (*KEYSET_SORTS, *_JOINED_SORTS)
_IN_CHUNK = 900  # ids per IN (...) list, well under every backend's parameter limit
SMALL_RESULT = 2_000  # this few matches are sorted after filtering, not found along the sort's index


@dataclass(frozen=True, slots=True)
class RegisterQuery:
    """What a register list asks for. ``status``: ok / problem / offline (agent or link down);
    ``connectivity``: online / offline (agent not up) / unreachable (agent up, link down);
    ``severities``: worst active severity in this set; ``rule``: has an active alert of this rule;
    ``node_id``: in this node's subtree; ``search``: substring of the id, serial, РНМ, ФН number
    or store name, in any case; ``sell``: the verdict's status (``unknown`` includes never evaluated)."""

    status: str | None = None
    connectivity: str | None = None
    severities: Collection[str] | None = None
    rule: str | None = None
    node_id: int | None = None
    tag: str | None = None
    search: str | None = None
    protocol: str | None = None
    sell: str | None = None
    ofd_not_activated: bool = False


def _one_of(kind: str, value: str | None, allowed: Collection[str]) -> None:
    if value is not None and value not in allowed:
        raise InvalidValue(f"unknown {kind} {value!r}; expected one of {', '.join(allowed)}")


def _active_alert(rule: str | None = None) -> ColumnElement[bool]:
    """Uncorrelated ``IN``: the list of registers with an active alert is built once, not per row."""
    query = sa.select(alerts.c.register_id).where(alerts.c.status == "active")
    if rule is not None:
        query = query.where(alerts.c.rule == rule)
    return summary.c.register_id.in_(query)


def _connectivity(status: str) -> ColumnElement[bool]:
    # ``IS TRUE``/``IS FALSE`` are never NULL: an unknown agent counts as down, an unknown link as up.
    agent_up = summary.c.agent_online.is_(True)
    link_down = summary.c.link_up.is_(False)
    if status == "online":
        return sa.and_(agent_up, sa.not_(link_down))
    if status == "unreachable":
        return sa.and_(agent_up, link_down)
    return sa.not_(agent_up)


def _search(term: str) -> ColumnElement[bool]:
    """Identifiers are matched in the summary's lowered ``search_text``, store names once per store."""
    lowered = term.lower()
    # A term without letters (serials, РНМ and ФН numbers) needs no case folding of the names.
    names = nodes.c.name if lowered == term.upper() else sa.func.lower(nodes.c.name)
    in_store_names = summary.c.node_id.in_(sa.select(nodes.c.id).where(names.contains(lowered, autoescape=True)))
    if not term.isascii():  # ids follow the MQTT id pattern and numbers are digits: Cyrillic is a store name
        return in_store_names
    return sa.or_(summary.c.search_text.contains(lowered, autoescape=True), in_store_names)


def _tagged(tag: str) -> ColumnElement[bool]:
    return (
        sa.select(register_tags.c.register_id)
        .join(tags, tags.c.id == register_tags.c.tag_id)
        .where(register_tags.c.register_id == summary.c.register_id, tags.c.tenant_id == summary.c.tenant_id, tags.c.name == tag)
        .exists()
    )


def _ofd_not_activated() -> ColumnElement[bool]:
    # Uncorrelated, like the rule filter: the dashboard counts it over every register in one pass.
    return summary.c.register_id.in_(sa.select(ofd_contracts.c.register_id).where(ofd_contracts.c.activated.is_(False)))


def _in_subtree(conn: sa.Connection, node_id: int) -> ColumnElement[bool]:
    path = conn.execute(sa.select(nodes.c.path).where(nodes.c.id == node_id)).scalar_one_or_none()
    return sa.false() if path is None else summary_below(path)


def conditions(conn: sa.Connection, query: RegisterQuery) -> list[ColumnElement[bool]]:
    """The query's filters as predicates on ``register_summary`` (the scope is added by the caller)."""
    _one_of("register status", query.status, REGISTER_STATUSES)
    _one_of("connectivity", query.connectivity, CONNECTIVITY)
    _one_of("sell status", query.sell, SELL_STATUSES)
    found: list[ColumnElement[bool]] = []
    if query.status == "ok":
        found.append(~summary.c.problem)
    elif query.status == "problem":
        found.append(summary.c.problem)
    elif query.status == "offline":
        found.append(sa.or_(summary.c.agent_online.is_(False), summary.c.link_up.is_(False)))
    if query.connectivity is not None:
        found.append(_connectivity(query.connectivity))
    if query.severities is not None:
        for label in query.severities:
            check_severity(label)
        found.append(summary.c.worst_severity.in_(list(query.severities)))
    if query.rule is not None:
        found.append(_active_alert(query.rule))
    if query.node_id is not None:
        found.append(_in_subtree(conn, query.node_id))
    if query.tag is not None:
        found.append(_tagged(query.tag))
    if query.search is not None and query.search.strip():
        found.append(_search(query.search.strip()))
    if query.protocol is not None:
        found.append(summary.c.protocol == query.protocol)
    if query.sell == "unknown":
        found.append(sa.or_(summary.c.sell_status.is_(None), summary.c.sell_status == "unknown"))
    elif query.sell is not None:
        found.append(summary.c.sell_status == query.sell)
    if query.ofd_not_activated:
        found.append(_ofd_not_activated())
    return found


# --- cursors -------------------------------------------------------------------------------------


def encode_cursor(sort: str, values: Sequence[Any]) -> str:
    plain = [value.isoformat() if isinstance(value, datetime) else value for value in values]
    return base64.urlsafe_b64encode(json.dumps([sort, plain], ensure_ascii=False).encode()).decode().rstrip("=")


def _bad_cursor(detail: str) -> InvalidValue:
    return InvalidValue(f"invalid cursor: {detail}; start again from the first page")


def decode_cursor(sort: str, cursor: str) -> list[Any]:
    """The key values a cursor of ``sort`` resumes after, typed like the sort's columns."""
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _bad_cursor("not one this list issued") from None
    if not (isinstance(decoded, list) and len(decoded) == 2 and isinstance(decoded[1], list)):
        raise _bad_cursor("not one this list issued")
    cursor_sort, plain = decoded
    columns = KEYSET_SORTS.get(sort)
    if columns is None or cursor_sort != sort:
        raise _bad_cursor(f"it was issued for sort {cursor_sort!r}, not {sort!r}")
    if len(plain) != len(columns):
        raise _bad_cursor("wrong number of keys")
    return [_typed(column, value) for column, value in zip(columns, plain, strict=True)]


def _typed(column: sa.Column[Any], value: Any) -> Any:
    if isinstance(column.type, UtcDateTime):
        try:
            parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            raise _bad_cursor(f"{column.name} is not an instant")
        return parsed
    expected = int if isinstance(column.type, sa.Integer) else str
    if type(value) is not expected:
        raise _bad_cursor(f"{column.name} is not a {expected.__name__}")
    return value


# --- the list ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegisterPage:
    rows: list[RegisterRow]
    total: int
    next_cursor: str | None  # resumes after this page; None on the last page or for an offset-only sort


def _check_sort(sort: str) -> None:
    if sort not in SORTS:
        raise InvalidValue(f"unknown sort {sort!r}; expected one of {', '.join(SORTS)}")


def count_registers(conn: sa.Connection, scope: Scope, query: RegisterQuery) -> int:
    found = conn.execute(
        sa.select(sa.func.count()).select_from(summary).where(summary_visible(conn, scope), *conditions(conn, query))
    )
    return int(found.scalar_one())


def _only_rule(query: RegisterQuery) -> str | None:
    """The rule of a query that filters on one rule and nothing else; None for any other query."""
    return query.rule if query.rule is not None and dataclasses.replace(query, rule=None) == RegisterQuery() else None


def _count_by_rule(conn: sa.Connection, scope: Scope, rules: Collection[str]) -> dict[str, int]:
    """Registers in scope with an active alert of each rule, counted from the active alerts (a
    register has at most one row per rule): the list's ``rule`` filter, read from the other side."""
    if not rules:
        return {}
    found = conn.execute(
        sa.select(alerts.c.rule, sa.func.count())
        .join(summary, summary.c.register_id == alerts.c.register_id)
        .where(alerts.c.status == "active", alerts.c.rule.in_(sorted(set(rules))), summary_visible(conn, scope))
        .group_by(alerts.c.rule)
    )
    return {rule: int(count) for rule, count in found}


def count_each(conn: sa.Connection, scope: Scope, queries: Sequence[RegisterQuery]) -> list[int]:
    """How many registers in scope match each query, with the predicates the list uses (a counter
    and the list it links to cannot disagree): queries on one rule alone are counted from the active
    alerts in one GROUP BY, every other query in one pass over the summary."""
    rules = [_only_rule(query) for query in queries]
    by_rule = _count_by_rule(conn, scope, [rule for rule in rules if rule is not None])
    sums = [
        sa.func.coalesce(sa.func.sum(sa.case((sa.and_(sa.true(), *conditions(conn, query)), 1), else_=0)), 0)
        for query, rule in zip(queries, rules, strict=True)
        if rule is None
    ]
    passed = iter(conn.execute(sa.select(*sums).select_from(summary).where(summary_visible(conn, scope))).one() if sums else ())
    return [int(next(passed)) if rule is None else by_rule.get(rule, 0) for rule in rules]


def _filter_first(keys: Sequence[sa.Column[Any]]) -> list[ColumnElement[Any]]:
    """The same order, led by an expression no index provides: the database then filters first
    and sorts what matched, instead of walking the sort's index past rows that do not match."""
    first = keys[0]
    lead = first + 0 if isinstance(first.type, sa.Integer) else first.concat("")
    return [lead, *keys[1:]]


Rows = Sequence[sa.Row[Any]]


def _count(conn: sa.Connection, where: list[ColumnElement[bool]]) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(summary).where(*where)).scalar_one())


def _page_keys(
    conn: sa.Connection, keys: Sequence[sa.Column[Any]], where: list[ColumnElement[bool]], *, few: bool,
    window: int | None, offset: int, counted: bool = False,
) -> Rows:
    """The sort keys of one page (``window`` rows: the page and one more); ``counted`` adds every
    match's count to each row (column ``total``), from the same scan."""
    extra = [sa.func.count().over().label("total")] if counted else []
    query = sa.select(*keys, *extra).where(*where).order_by(*(_filter_first(keys) if few else keys)).offset(offset or None)
    return conn.execute(query if window is None else query.limit(window)).all()


def _searched_page(
    conn: sa.Connection, keys: Sequence[sa.Column[Any]], where: list[ColumnElement[bool]], window: int | None, offset: int
) -> tuple[Rows, int]:
    found = _page_keys(conn, keys, where, few=True, window=window, offset=offset, counted=True)
    return found, (int(found[0].total) if found else _count(conn, where))  # past the end the window counts nothing


def list_page(
    conn: sa.Connection,
    scope: Scope,
    query: RegisterQuery,
    *,
    sort: str = "time_to_block",
    limit: int | None = 100,
    offset: int = 0,
    cursor: str | None = None,
    with_state: bool = False,
) -> RegisterPage:
    """One page of the registers in scope matching ``query``, in ``sort`` order, and the total.

    ``cursor`` (from a previous page's ``next_cursor``) resumes after that page and takes the place
    of ``offset``; ``limit`` None returns every matching register (the CSV export).

    A text search matches few registers and no index serves it: one scan filters, counts and sorts
    the matches. Otherwise the total is counted first; a small one is sorted after filtering too, a
    large one is read in order along the sort's index until the page is full.
    """
    _check_sort(sort)
    if (limit is not None and not 0 < limit <= MAX_PAGE) or offset < 0:
        raise InvalidValue(f"page limit must be 1..{MAX_PAGE} and offset ≥ 0 (got {limit}, {offset})")
    where = [summary_visible(conn, scope), *conditions(conn, query)]
    window = None if limit is None else limit + 1  # one more tells whether a next page exists
    keys = KEYSET_SORTS.get(sort)
    searching = bool(query.search and query.search.strip())
    found: Rows
    if keys is not None and searching and cursor is None:
        found, total = _searched_page(conn, keys, where, window, offset)
    else:
        total = _count(conn, where)
        if keys is not None:
            if cursor is not None:
                after = decode_cursor(sort, cursor)
                where.append(sa.tuple_(*keys) > sa.tuple_(*(sa.literal(v, k.type) for k, v in zip(keys, after, strict=True))))
            few = total <= SMALL_RESULT
            found = _page_keys(conn, keys, where, few=few, window=window, offset=0 if cursor else offset)
        else:
            if cursor is not None:
                raise InvalidValue(f"sort {sort!r} pages by offset; it issues no cursor")
            joined, on, order = _JOINED_SORTS[sort]
            by_join = (
                sa.select(summary.c.register_id)
                .select_from(summary.outerjoin(joined, on))
                .where(*where)
                .order_by(*order, summary.c.register_id)
                .offset(offset or None)
            )
            found = conn.execute(by_join if window is None else by_join.limit(window)).all()
    more = limit is not None and len(found) > limit
    found = found[:limit] if limit is not None else found
    next_cursor = encode_cursor(sort, tuple(found[-1])[: len(keys)]) if more and keys is not None else None
    rows = _rows_in_order(conn, [row.register_id for row in found], with_state)
    return RegisterPage(rows, total, next_cursor)


def _rows_in_order(conn: sa.Connection, register_ids: list[str], with_state: bool) -> list[RegisterRow]:
    columns = (*REGISTER_COLUMNS, register_state.c.state) if with_state else REGISTER_COLUMNS
    by_id: dict[str, RegisterRow] = {}
    for start in range(0, len(register_ids), _IN_CHUNK):
        chunk = register_ids[start : start + _IN_CHUNK]
        for row in conn.execute(sa.select(*columns).select_from(REGISTER_FROM).where(registers.c.register_id.in_(chunk))):
            by_id[row.register_id] = RegisterRow(**row._mapping)
    # A register deleted between the two reads is left out rather than failing the page.
    return [by_id[register_id] for register_id in register_ids if register_id in by_id]



def list_registers(
    conn: sa.Connection,
    scope: Scope,
    *,
    status: str | None = None,
    severities: Collection[str] | None = None,
    rule: str | None = None,
    node_id: int | None = None,
    tag: str | None = None,
    search: str | None = None,
    sort: str = "time_to_block",
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[RegisterRow], int]:
    """One page of the registers in scope that match every given filter, and the total count
    (the storage API's form of :func:`list_page`; see ``RegisterQuery`` for the filters)."""
    query = RegisterQuery(status=status, severities=severities, rule=rule, node_id=node_id, tag=tag, search=search)
    page = list_page(conn, scope, query, sort=sort, limit=limit, offset=offset)
    return page.rows, page.total
