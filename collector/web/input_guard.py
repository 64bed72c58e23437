"""Refuse control characters in parameters before any handler sees them.

A ``%00`` in a query or path parameter used to reach the database: PostgreSQL refuses NUL in text
and the request died as a 500. Control characters (NUL, line breaks, ESC, DEL, the C1 range) and
lone surrogates are never part of a serial, a tag, a search or an id, so one middleware refuses
them in every query parameter (name and value) and every path parameter with a 400 problem
document naming each offending parameter — no handler needs to check on its own.

Bodies (JSON documents and forms) may hold multi-line text (a comment, a CSV pasted into a form),
so there only what no text column can store is refused: NUL and lone surrogates. A malformed JSON
body is left to the handler, which names the syntax error.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from collector.web.problems import Handler, InvalidParam, Problem

_REFUSED_CATEGORIES = frozenset({"Cc", "Cs"})  # control characters; surrogates (not encodable as UTF-8)
_FORMS = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


def control_character(text: str) -> str | None:
    """The first refused character of ``text`` as ``U+0000``, or None when there is none."""
    for char in text:
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            return f"U+{ord(char):04X}"
    return None


def unstorable_character(text: str) -> str | None:
    """The first character of ``text`` no database text column can hold (NUL, a lone surrogate)."""
    for char in text:
        if char == "\x00" or unicodedata.category(char) == "Cs":
            return f"U+{ord(char):04X}"
    return None


def _json_offenders(document: Any, where: str) -> Iterator[InvalidParam]:
    if isinstance(document, str):
        found = unstorable_character(document)
        if found is not None:
            yield InvalidParam(name=where, reason=f"contains the character {found}")
    elif isinstance(document, dict):
        for key, value in document.items():
            name = f"{where}.{key}" if where else str(key)
            if unstorable_character(str(key)) is not None:
                yield InvalidParam(name=name.encode("unicode_escape").decode("ascii"), reason="the field name holds a NUL")
            yield from _json_offenders(value, name)
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from _json_offenders(value, f"{where}.{index}" if where else str(index))


async def _body_offenders(request: web.Request) -> list[InvalidParam]:
    if not request.body_exists:
        return []
    if request.content_type == "application/json":
        try:
            document = json.loads(await request.text())  # read once: aiohttp keeps it for the handler
        except (json.JSONDecodeError, UnicodeDecodeError):
            return []
        return list(_json_offenders(document, ""))
    if request.content_type in _FORMS:
        form = await request.post()  # parsed once: the handler gets the same
        return [
            InvalidParam(name=name, reason=f"contains the character {found}")
            for name, value in form.items()
            if isinstance(value, str) and (found := unstorable_character(name + value)) is not None
        ]
    return []


def _offenders(request: web.Request) -> Iterator[InvalidParam]:
    for name, value in request.match_info.items():
        found = control_character(value)
        if found is not None:
            yield InvalidParam(name=name, reason=f"contains the control character {found}")
    for name, value in request.query.items():
        found = control_character(name) or control_character(value)
        if found is not None:
            yield InvalidParam(name=name.encode("unicode_escape").decode("ascii"), reason=f"contains the control character {found}")


@web.middleware
async def input_guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    offenders = list(_offenders(request))
    if offenders:
        names = ", ".join(param.name for param in offenders)
        raise Problem(
            400,
            "invalid-parameter",
            "Invalid parameter",
            f"control characters are not allowed in URL parameters: {names}",
            invalid_params=offenders,
        )
    in_body = await _body_offenders(request)
    if in_body:
        names = ", ".join(param.name for param in in_body)
        raise Problem(
            400, "invalid-parameter", "Invalid parameter", f"NUL is not allowed in the body: {names}", invalid_params=in_body
        )
    return await handler(request)
