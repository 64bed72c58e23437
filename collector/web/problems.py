"""RFC 7807 problem details: every error the web layer returns is ``application/problem+json``.

Handlers raise ``Problem`` (or its helpers); the middleware also turns aiohttp's own HTTP errors
(unknown route, wrong method), storage refusals and anything unexpected into the same shape.
An unexpected exception is logged with its traceback and answered with a bare 500: the client
never sees a stack trace.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from collector.storage.errors import InvalidValue

log = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
_TYPE_PREFIX = "urn:kassa-monitor:problem:"


class InvalidParam(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    reason: str


class ProblemDetails(BaseModel):
    """The body of every error response."""

    model_config = ConfigDict(frozen=True)

    type: str = Field(description="URN naming the kind of problem")
    title: str
    status: int
    detail: str
    invalid_params: list[InvalidParam] = Field(default_factory=list, description="one entry per rejected parameter")


class Problem(Exception):
    """Raise from a handler to answer with problem details."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        *,
        invalid_params: Iterable[InvalidParam] = (),
        headers: Mapping[str, str] | None = None,
        ru: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.ru = ru  # the refusal in Russian for the pages; not part of the API's body
        self.body = ProblemDetails(
            type=_TYPE_PREFIX + slug, title=title, status=status, detail=detail, invalid_params=list(invalid_params)
        )
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        return web.Response(
            status=self.body.status,
            text=self.body.model_dump_json(),
            content_type=PROBLEM_CONTENT_TYPE,
            headers=self.headers,
        )


def not_found(what: str) -> Problem:
    # Out of scope and nonexistent look the same, so ids cannot be probed across tenants.
    return Problem(404, "not-found", "Not found", f"{what} does not exist or is outside your scope")


def invalid_params(errors: ValidationError, *, status: int, location: str) -> Problem:
    """A pydantic validation error, naming each offending parameter (``limit``, ``ids.2``…)."""
    params = [
        InvalidParam(name=".".join(str(part) for part in error["loc"]) or location, reason=error["msg"])
        for error in errors.errors(include_url=False)
    ]
    names = ", ".join(param.name for param in params)
    if status == 400:
        return Problem(400, "invalid-parameter", "Invalid query parameter", f"invalid {location}: {names}", invalid_params=params)
    return Problem(422, "invalid-body", "Invalid request body", f"invalid {location}: {names}", invalid_params=params)


def _from_http_error(error: web.HTTPException) -> Problem:
    headers: dict[str, str] = {}
    if isinstance(error, web.HTTPMethodNotAllowed):
        headers["Allow"] = ", ".join(sorted(error.allowed_methods))
        detail = f"{error.method} is not allowed here; allowed: {headers['Allow']}"
    elif isinstance(error, web.HTTPNotFound):
        detail = "no such endpoint"
    else:
        detail = error.text or error.reason
    slug = error.reason.lower().replace(" ", "-")
    return Problem(error.status, slug, error.reason, detail, headers=headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Problem as problem:
        return problem.response()
    except InvalidValue as exc:  # storage refused a filter value the schema let through
        return Problem(400, "invalid-parameter", "Invalid query parameter", str(exc)).response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and the like are not errors
        return _from_http_error(exc).response()
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return Problem(500, "internal-error", "Internal server error", "the server failed; see its log").response()


async def read_json_body(request: web.Request) -> Any:
    """The request's JSON document; 415 for another media type, 400 for malformed JSON."""
    if request.content_type != "application/json":
        raise Problem(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            f"send the body as application/json (got {request.content_type or 'nothing'})",
        )
    try:
        return json.loads(await request.text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Problem(400, "malformed-json", "Malformed JSON", f"the body is not valid JSON: {exc}") from None
