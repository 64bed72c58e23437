"""Refuse control characters in the URL before any handler sees it.

A ``%00`` in a query or path parameter used to reach the database: PostgreSQL refuses NUL in text
and the request died as a 500. Control characters (NUL, line breaks, ESC, DEL, the C1 range) and
lone surrogates are never part of a serial, a tag, a search or an id, so one middleware refuses
them in every query parameter (name and value) and every path parameter with a 400 problem
document naming each offending parameter — no handler needs to check on its own.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator

from aiohttp import web

from collector.web.problems import Handler, InvalidParam, Problem

_REFUSED_CATEGORIES = frozenset({"Cc", "Cs"})  # control characters; surrogates (not encodable as UTF-8)


def control_character(text: str) -> str | None:
    """The first refused character of ``text`` as ``U+0000``, or None when there is none."""
    for char in text:
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            return f"U+{ord(char):04X}"
    return None


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
    return await handler(request)
