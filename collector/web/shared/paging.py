"""One way to page the JSON API's lists: ``limit`` (bounded) and ``offset`` in; the page's items
and a ``next`` link out (the same request with the offset moved on; null on the last page).

Lists the database pages in SQL pass the rows they fetched (and the total when they count it);
short lists held in memory (a company's levels, tags, groups …) are cut with :func:`page_slice`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeVar, cast

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

MAX_PAGE = 1000
T = TypeVar("T")


class Page(BaseModel):
    """Query parameters of every list (unknown parameters refused, as in every query model)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    limit: int = Field(50, ge=1, le=MAX_PAGE, description=f"page size, at most {MAX_PAGE}")
    offset: int = Field(0, ge=0, description="items to skip")


class Paged(BaseModel):
    """What every list answer carries besides its items."""

    next: str | None = Field(None, description="URL of the next page (same filters); null on the last page")


class PageQuery(Protocol):
    """Any query with a page's two fields (``Page`` and its subclasses, or a time window with its own maximum)."""

    @property
    def limit(self) -> int: ...

    @property
    def offset(self) -> int: ...


def next_link(request: web.Request, page: PageQuery, returned: int, total: int | None = None) -> str | None:
    """The next page's URL, or None when this page is the last: with a ``total``, when nothing is
    left after it; without one, when it came back short of ``limit``."""
    more = page.offset + returned < total if total is not None else returned >= page.limit
    if not more or returned == 0:
        return None
    return str(request.rel_url.update_query(offset=page.offset + returned, limit=page.limit))


def cursor_link(request: web.Request, cursor: str | None) -> str | None:
    """The next page's URL of a list paged by cursor: the same request resumed after ``cursor``
    (None on the last page)."""
    if cursor is None:
        return None
    return str(request.rel_url.update_query(cursor=cursor).without_query_params("offset"))


def repaged(request: web.Request, page: PageQuery, answer: T) -> T:
    """A ``Paged`` list answer built whole from a short in-memory list, cut to the requested page
    (or, from a query that fetched ``offset + limit`` rows, to its last ``limit``)."""
    whole = cast(Any, answer)
    chunk, total = page_slice(whole.items, page)
    return cast(T, whole.model_copy(update={"items": chunk, "next": next_link(request, page, len(chunk), total)}))


def page_slice(items: Sequence[T], page: PageQuery) -> tuple[list[T], int]:
    """The page of an in-memory list, and the list's length (for :func:`next_link`)."""
    return list(items[page.offset : page.offset + page.limit]), len(items)
