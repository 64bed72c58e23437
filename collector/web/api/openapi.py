"""The OpenAPI 3.1 document, built in code from the operation table and the pydantic models.

OpenAPI 3.1 schemas are JSON Schema 2020-12, which is what pydantic emits, so the component
schemas are pydantic's own output with references rewritten to ``#/components/schemas/…``.
Query parameters are the properties of each operation's query model. Every operation that is
not public requires the bearer scheme and answers 401 without it; errors are problem details.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import metadata
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, JsonSchemaValue, models_json_schema
from pydantic_core import core_schema

from collector.web.problems import PROBLEM_CONTENT_TYPE, ProblemDetails
from collector.web.routing import JSON, OPERATIONS_KEY, Operation

REF_TEMPLATE = "#/components/schemas/{model}"
BEARER = "bearerAuth"
_PROBLEM_TITLES = {
    400: "Invalid parameter or malformed body",
    401: "Missing or wrong credentials",
    403: "Not allowed for this caller",
    404: "Not found or outside the caller's scope",
    415: "Body is not application/json",
    422: "Body failed validation, or the action does not apply",
    500: "Server failure (details in the server log only)",
    503: "Not ready",
}
_UNTYPED_BODIES: dict[str, dict[str, Any]] = {
    "text/csv": {"type": "string"},
    "text/plain": {"type": "string"},
    JSON: {"type": "object"},
}


# ISO 8601 date and time with an optional UTC offset; without one it is a register's local wall clock.
_LOCAL_OR_OFFSET = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?$"
_LOCAL = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?$"


class _HonestDateTimes(GenerateJsonSchema):
    """``format: date-time`` (RFC 3339) promises an offset; only aware fields get it.

    Register-local times (ФН, shift, oldest unsent document) are naive wall-clock values, so a
    naive or unconstrained ``datetime`` is documented as an ISO 8601 pattern instead.
    """

    def datetime_schema(self, schema: core_schema.DatetimeSchema) -> JsonSchemaValue:
        constraint = schema.get("tz_constraint")
        if constraint == "aware":
            return {"type": "string", "format": "date-time"}
        return {"type": "string", "pattern": _LOCAL if constraint == "naive" else _LOCAL_OR_OFFSET}


def _version() -> str:
    try:
        return metadata.version("kassa-monitor")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def _model_modes(operations: Iterable[Operation]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {(ProblemDetails, "serialization"): None}
    for op in operations:
        if op.response is not None:
            wanted[(op.response, "serialization")] = None
        for model in (op.query, op.body):
            if model is not None:
                wanted[(model, "validation")] = None
    return list(wanted)


class _Schemas:
    """Component schemas plus the reference of each (model, mode)."""

    def __init__(self, operations: Iterable[Operation]) -> None:
        refs, top = models_json_schema(
            _model_modes(operations), ref_template=REF_TEMPLATE, schema_generator=_HonestDateTimes
        )
        self.refs = refs
        self.components: dict[str, Any] = top.get("$defs", {})

    def ref(self, model: type[BaseModel], mode: Literal["validation", "serialization"]) -> dict[str, Any]:
        return dict(self.refs[(model, mode)])

    def resolve(self, model: type[BaseModel], mode: Literal["validation", "serialization"]) -> dict[str, Any]:
        reference = self.ref(model, mode).get("$ref")
        if reference is None:
            return self.ref(model, mode)
        schema: dict[str, Any] = self.components[reference.rsplit("/", 1)[1]]
        return schema


def _query_parameters(op: Operation, schemas: _Schemas) -> list[dict[str, Any]]:
    if op.query is None:
        return []
    schema = schemas.resolve(op.query, "validation")
    required = set(schema.get("required", ()))
    parameters = []
    for name, prop in schema.get("properties", {}).items():
        parameter: dict[str, Any] = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if "description" in prop:
            parameter["description"] = prop["description"]
        parameters.append(parameter)
    return parameters


def _path_parameters(op: Operation) -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "integer" if kind is int else "string"}}
        for name, kind in op.path_params.items()
    ]


def _problem_response(status: int) -> dict[str, Any]:
    return {
        "description": _PROBLEM_TITLES.get(status, "Error"),
        "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": REF_TEMPLATE.format(model=ProblemDetails.__name__)}}},
    }


def _success_body(op: Operation, schemas: _Schemas) -> dict[str, Any]:
    schema = _UNTYPED_BODIES[op.media_type] if op.response is None else schemas.ref(op.response, "serialization")
    return {op.media_type: {"schema": schema}}


def _operation(op: Operation, schemas: _Schemas) -> dict[str, Any]:
    responses: dict[str, Any] = {str(op.status): {"description": op.summary, "content": _success_body(op, schemas)}}
    # Every operation refuses unknown or invalid parameters (400) and may fail (500).
    statuses = {*op.errors, 400, 500} | (set() if op.public else {401})
    for status in sorted(statuses):
        if status == 503 and op.response is not None:  # readiness answers 503 with its own body
            responses["503"] = {"description": _PROBLEM_TITLES[503], "content": _success_body(op, schemas)}
        else:
            responses[str(status)] = _problem_response(status)
    document: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": _path_parameters(op) + _query_parameters(op, schemas),
        "responses": responses,
        "security": [] if op.public else [{BEARER: []}],
        "x-kassa-scoped": not op.public,
        "x-kassa-admin-only": op.admin_only,
    }
    if op.body is not None:
        document["requestBody"] = {
            "required": True,
            "content": {JSON: {"schema": schemas.ref(op.body, "validation")}},
        }
    return document


def build_document(operations: Iterable[Operation]) -> dict[str, Any]:
    ops = list(operations)
    schemas = _Schemas(ops)
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "kassa-monitor collector API",
            "version": _version(),
            "description": "Fleet monitoring of cash registers (ККТ, 54-ФЗ). Every list is limited to the "
            "caller's scope; errors are RFC 7807 problem details.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas.components,
            "securitySchemes": {BEARER: {"type": "http", "scheme": "bearer"}},
        },
        "security": [{BEARER: []}],
    }


def openapi_document(app: web.Application) -> dict[str, Any]:
    """The document of every operation registered on ``app`` (see ``routing.add_operations``)."""
    operations: list[Operation] = app[OPERATIONS_KEY]
    return build_document(operations)


async def serve_openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(request.app))
