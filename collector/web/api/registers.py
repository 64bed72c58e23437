"""Registers in the JSON API: the list in scope (filtered, sorted, paged), the same list as CSV,
one register with its state, contract, alerts and recent events, its history and its events.

Every handler of the API parses its input through the schema models (bad input → problem details), runs
its database work in a worker thread under the caller's scope, and answers through a response
model. Objects outside the scope are indistinguishable from missing ones (404).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa
from aiohttp import web
from pydantic import BaseModel

from collector.storage import repository as repo
from collector.storage.register_list import KEYSET_SORTS
from collector.storage.rows import RegisterRow
from collector.storage.scope import Scope
from collector.web.api.registers_csv import CSV_MEDIA_TYPE, registers_csv
from collector.web.auth import principal_of
from collector.web.problems import not_found
from collector.web.routing import (
    API,
    Operation,
    in_transaction,
    json_response,
    now,
    parse_query,
)
from collector.web.shared import fleet_queries as queries
from collector.web.shared import present
from collector.web.shared.fleet_models import (
    AlertListQuery,
    EventList,
    EventQuery,
    HistoryOut,
    RegisterCsvQuery,
    RegisterDetail,
    RegisterList,
    RegisterListQuery,
    RegisterSummary,
    TimeWindowQuery,
)
from collector.web.shared.paging import cursor_link, next_link

WindowT = TypeVar("WindowT", bound=TimeWindowQuery)  # the register sub-lists: a time window, paged
CSV_CHUNK = 500  # registers per page-context lookup during an export
RECENT_CLEARED_ALERTS = 20
RECENT_EVENTS = 20


def _scoped_register(conn: sa.Connection, scope: Scope, register_id: str) -> RegisterRow:
    row = repo.get_register(conn, scope, register_id)
    if row is None:
        raise not_found(f"register {register_id!r}")
    return row


# --- registers -----------------------------------------------------------------------------------


async def list_registers(request: web.Request) -> web.Response:
    query = parse_query(request, RegisterListQuery)
    scope, at = principal_of(request).scope, now(request)

    def work(conn: sa.Connection) -> RegisterList:
        page = queries.list_register_page(conn, scope, query, limit=query.limit, offset=query.offset, cursor=query.cursor)
        context = queries.page_context(conn, scope, page.rows)
        items = [present.register_summary(row, context, at) for row in page.rows]
        # Sorts kept in the register summary resume by cursor; the others by offset.
        if page.next_cursor is not None or query.sort in KEYSET_SORTS:
            following = cursor_link(request, page.next_cursor)
        else:
            following = next_link(request, query, len(page.rows), page.total)
        return RegisterList(items=items, total=page.total, limit=query.limit, offset=query.offset, next=following)

    return json_response(await in_transaction(request, work))


async def export_registers_csv(request: web.Request) -> web.Response:
    query = parse_query(request, RegisterCsvQuery)
    scope, at = principal_of(request).scope, now(request)

    def work(conn: sa.Connection) -> bytes:
        rows = queries.list_register_page(conn, scope, query, limit=query.limit, offset=query.offset).rows
        items: list[RegisterSummary] = []
        for start in range(0, len(rows), CSV_CHUNK):
            chunk = rows[start : start + CSV_CHUNK]
            context = queries.page_context(conn, scope, chunk)
            items.extend(present.register_summary(row, context, at) for row in chunk)
        return registers_csv(items)

    body = await in_transaction(request, work)
    return web.Response(
        body=body,
        content_type=CSV_MEDIA_TYPE,
        charset="utf-8",
        headers={"Content-Disposition": 'attachment; filename="registers.csv"'},
    )


async def get_register(request: web.Request) -> web.Response:
    register_id = request.match_info["register_id"]
    scope, at = principal_of(request).scope, now(request)

    def work(conn: sa.Connection) -> RegisterDetail:
        row = _scoped_register(conn, scope, register_id)
        context = queries.page_context(conn, scope, [row])
        active, _ = queries.list_alert_page(conn, scope, AlertListQuery(register_id=register_id, limit=1000))
        cleared, _ = queries.list_alert_page(
            conn,
            scope,
            AlertListQuery(register_id=register_id, state="cleared", sort="time", limit=RECENT_CLEARED_ALERTS),
        )
        events = repo.list_events(conn, scope, register_id, limit=RECENT_EVENTS)
        return present.register_detail(row, context, at, alerts=active + cleared, events=events)

    return json_response(await in_transaction(request, work))


Link = Callable[[int], str | None]  # items returned → the next page's URL


async def _register_subresource(
    request: web.Request, query_model: type[WindowT], build: Callable[[sa.Connection, Scope, str, WindowT, Link], BaseModel]
) -> web.Response:
    """A read about one register: 404 unless the register is in the caller's scope."""
    register_id = request.match_info["register_id"]
    query = parse_query(request, query_model)
    scope = principal_of(request).scope

    def work(conn: sa.Connection) -> BaseModel:
        _scoped_register(conn, scope, register_id)
        return build(conn, scope, register_id, query, lambda returned: next_link(request, query, returned))

    return json_response(await in_transaction(request, work))


def _history(conn: sa.Connection, scope: Scope, register_id: str, query: TimeWindowQuery, link: Link) -> HistoryOut:
    rows = repo.state_history(conn, scope, register_id, query.since, query.until, limit=query.limit, offset=query.offset)
    return HistoryOut(register_id=register_id, points=[present.history_point(row) for row in rows], next=link(len(rows)))


def _events(conn: sa.Connection, scope: Scope, register_id: str, query: EventQuery, link: Link) -> EventList:
    kinds = None if query.kind is None else [query.kind]
    rows = repo.list_events(
        conn, scope, register_id, since=query.since, until=query.until, kinds=kinds, limit=query.limit, offset=query.offset
    )
    return EventList(register_id=register_id, items=[present.event_out(row) for row in rows], next=link(len(rows)))


async def register_history(request: web.Request) -> web.Response:
    return await _register_subresource(request, TimeWindowQuery, _history)


async def register_events(request: web.Request) -> web.Response:
    return await _register_subresource(request, EventQuery, _events)


# --- alerts --------------------------------------------------------------------------------------


# --- tree and dead letters -----------------------------------------------------------------------


_REGISTER_ID = {"register_id": str}

OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", f"{API}/registers", list_registers, "listRegisters", "Registers in scope, filtered, sorted, paged",
              "registers", RegisterList, query=RegisterListQuery, errors=(400,)),
    Operation("GET", f"{API}/registers.csv", export_registers_csv, "exportRegistersCsv",
              "The register list as CSV (same filters)", "registers", media_type=CSV_MEDIA_TYPE,
              query=RegisterCsvQuery, errors=(400,)),
    Operation("GET", f"{API}/registers/{{register_id}}", get_register, "getRegister",
              "A register: identity, latest state, contract, alerts, recent events", "registers", RegisterDetail,
              path_params=_REGISTER_ID, errors=(404,)),
    Operation("GET", f"{API}/registers/{{register_id}}/history", register_history, "getRegisterHistory",
              "State history points of a register, oldest first", "registers", HistoryOut, query=TimeWindowQuery,
              path_params=_REGISTER_ID, errors=(400, 404)),
    Operation("GET", f"{API}/registers/{{register_id}}/events", register_events, "getRegisterEvents",
              "Events of a register, newest first", "registers", EventList, query=EventQuery,
              path_params=_REGISTER_ID, errors=(400, 404)),
)
