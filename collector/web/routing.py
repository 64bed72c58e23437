"""One table of operations drives both the router and the OpenAPI document.

An ``Operation`` names its method, path, handler and the pydantic models of its query string,
body and response; ``add_operations`` registers exactly these routes and ``api.openapi``
documents exactly these operations, so a route cannot exist without being documented (a test checks the router).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

import sqlalchemy as sa
from aiohttp import web
from pydantic import BaseModel, ValidationError

from collector.security import allow_anonymous
from collector.storage import begin_write
from collector.web.problems import Problem, invalid_params, read_json_body

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ModelT = TypeVar("ModelT", bound=BaseModel)
ResultT = TypeVar("ResultT")

ENGINE_KEY = web.AppKey("engine", sa.Engine)
CLOCK_KEY: web.AppKey[Callable[[], datetime]] = web.AppKey("clock")
JSON = "application/json"
API = "/api/v1"  # the prefix of every JSON API path


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    handler: Handler
    operation_id: str
    summary: str
    tag: str
    response: type[BaseModel] | None = None  # the 200 body; None with media_type for non-JSON bodies
    media_type: str = JSON
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    path_params: Mapping[str, type[int] | type[str]] = field(default_factory=dict)
    status: int = 200
    errors: tuple[int, ...] = ()  # problem statuses this operation documents besides 401/500
    public: bool = False
    admin_only: bool = False


OPERATIONS_KEY = web.AppKey("operations", list[Operation])  # what the OpenAPI document lists


def parse_query(request: web.Request, model: type[ModelT]) -> ModelT:
    """The query string as ``model``; a repeated or invalid parameter is a 400 naming it."""
    values: dict[str, str] = {}
    for name in request.query:
        given = request.query.getall(name)
        if len(given) > 1:
            raise Problem(
                400, "invalid-parameter", "Invalid query parameter", f"parameter {name!r} given {len(given)} times"
            )
        values[name] = given[0]
    try:
        return model.model_validate(values)
    except ValidationError as errors:
        raise invalid_params(errors, status=400, location="query parameter") from None


def without_query(handler: Handler) -> Handler:
    """For operations that take no query parameters: any given is refused, as a typo would be."""

    async def checked(request: web.Request) -> web.StreamResponse:
        if request.query:
            names = ", ".join(sorted(set(request.query)))
            raise Problem(400, "invalid-parameter", "Invalid query parameter", f"this endpoint takes no query parameters (got {names})")
        return await handler(request)

    return checked


async def parse_body(request: web.Request, model: type[ModelT]) -> ModelT:
    document = await read_json_body(request)
    try:
        return model.model_validate(document)
    except ValidationError as errors:
        raise invalid_params(errors, status=422, location="body field") from None


def int_path_param(request: web.Request, name: str) -> int:
    text = request.match_info[name]
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise Problem(400, "invalid-parameter", "Invalid path parameter", f"{name} must be a positive integer, got {text!r}",
                      ru=f"Неверный адрес страницы: {name} — это номер, а в адресе «{text}».")
    return int(text)


def now(request: web.Request) -> datetime:
    """The app's clock (aware UTC); tests inject a fixed one."""
    clock = request.app[CLOCK_KEY]
    return clock()


def json_response(model: BaseModel, *, status: int = 200) -> web.Response:
    return web.Response(status=status, text=model.model_dump_json(), content_type=JSON)


async def in_transaction(request: web.Request, work: Callable[[sa.Connection], ResultT], *, write: bool = False) -> ResultT:
    """Run blocking database work in a worker thread so the event loop keeps serving.

    Reads run in a transaction that is rolled back (nothing to keep); writes commit.
    """
    engine = request.app[ENGINE_KEY]

    def run() -> ResultT:
        if write:
            # begin_write: on SQLite a deferred transaction that reads first fails at once with
            # "database is locked" when the ingest writer commits in between.
            with begin_write(engine) as conn:
                return work(conn)
        with engine.connect() as conn:
            return work(conn)

    return await asyncio.to_thread(run)


def add_operations(app: web.Application, operations: Iterable[Operation]) -> None:
    """Route and document operations; other modules (e.g. enrollment) add theirs the same way, so
    every JSON route appears in the OpenAPI document and is private unless declared public."""
    for operation in operations:
        handler = operation.handler if operation.query is not None else without_query(operation.handler)
        app.router.add_route(operation.method, operation.path, handler, name=operation.operation_id)
        app[OPERATIONS_KEY].append(operation)
        if operation.public:
            allow_anonymous(app, operation.operation_id)
