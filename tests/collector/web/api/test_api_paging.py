"""Every list of the JSON API pages the same way (collector/web/shared/paging.py): a bounded ``limit``, an
``offset``, and a ``next`` link that walks the whole list once, in order, then ends with null."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from collector.web.shared.paging import MAX_PAGE


def walk(api: Any, path: str, params: dict[str, Any], items_key: str) -> tuple[list[Any], int]:
    """Every item the ``next`` links reach from the first page, and how many pages that took."""
    reply = api.get(path, params=params)
    assert reply.status == 200, reply.text
    items, pages = list(reply.json[items_key]), 1
    while (link := reply.json["next"]) is not None:
        target = urlsplit(link)
        assert target.path == path
        reply = api.get(target.path, params=dict(parse_qsl(target.query)))  # validated against OpenAPI
        assert reply.status == 200
        items += reply.json[items_key]
        pages += 1
    return items, pages


def test_the_register_list_is_walked_by_its_next_links_with_the_filters_kept(api, fleet) -> None:
    whole = api.get("/api/v1/registers", params={"sort": "serial"}).json
    assert whole["next"] is None
    items, pages = walk(api, "/api/v1/registers", {"sort": "serial", "limit": 1}, "items")
    assert items == whole["items"] and pages == whole["total"] == 4


def test_alerts_and_dead_letters_and_rollups_page_alike(api, fleet) -> None:
    for path in ("/api/v1/alerts", "/api/v1/dead-letters", "/api/v1/nodes/rollups"):
        whole = api.get(path).json["items"]
        assert len(whole) >= 2, path
        items, pages = walk(api, path, {"limit": 1}, "items")
        assert items == whole and pages == len(whole), path


def test_a_registers_history_and_events_page_by_offset(api, fleet) -> None:
    register = fleet.registers["tverskaya"]
    for path, key in ((f"/api/v1/registers/{register}/history", "points"), (f"/api/v1/registers/{register}/events", "items")):
        whole = api.get(path).json[key]
        assert whole, path
        items, _ = walk(api, path, {"limit": 1}, key)
        assert items == whole, path


@pytest.mark.parametrize("path", ["/api/v1/registers", "/api/v1/alerts", "/api/v1/dead-letters", "/api/v1/nodes/rollups"])
def test_a_page_larger_than_the_maximum_is_refused(api, fleet, path: str) -> None:
    reply = api.get(path, params={"limit": MAX_PAGE + 1})
    assert reply.status == 400 and "limit" in reply.text


@pytest.mark.parametrize("sort", ["time_to_block", "severity"])
def test_the_register_lists_next_link_resumes_by_cursor(api, fleet, sort: str) -> None:
    whole = api.get("/api/v1/registers", params={"sort": sort}).json
    first = api.get("/api/v1/registers", params={"sort": sort, "limit": 1}).json
    query = dict(parse_qsl(urlsplit(first["next"]).query))
    assert "cursor" in query and "offset" not in query and query["sort"] == sort
    items, pages = walk(api, "/api/v1/registers", {"sort": sort, "limit": 1}, "items")
    assert items == whole["items"] and pages == whole["total"] == 4


def test_a_register_cursor_that_was_not_issued_is_a_bad_request(api, fleet) -> None:
    reply = api.get("/api/v1/registers", params={"cursor": "bm90IGEgY3Vyc29y"})
    assert reply.status == 400 and "cursor" in reply.text
    issued = api.get("/api/v1/registers", params={"limit": 1}).json["next"]
    cursor = dict(parse_qsl(urlsplit(issued).query))["cursor"]
    assert api.get("/api/v1/registers", params={"cursor": cursor, "sort": "serial"}).status == 400
