"""Browser security headers (issue 13, item 8) on every route of the app, and pages that need no
inline script or style: CSP, X-Frame-Options, X-Content-Type-Options and Referrer-Policy on each
answer — pages, API, static files, redirects, refusals, the router's 404 and the live stream."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import security_testkit as kit
from test_security_routes import READ, ROUTES, call, fill

from collector.web.security_headers import SECURITY_HEADERS

TEMPLATES = Path(__file__).resolve().parents[3] / "collector" / "web" / "templates"

# What a policy without 'unsafe-inline' would block: inline script, handler attributes,
# javascript: URLs and style attributes. A JSON data block (<script type="application/json">) is
# never executed, so CSP does not apply to it.
INLINE = {
    "inline script": re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I),
    "handler attribute": re.compile(r"<[^>]+\son[a-z]+\s*=", re.I),
    "javascript: URL": re.compile(r"javascript:", re.I),
    "style attribute": re.compile(r"<[^>]+\sstyle\s*=", re.I),
    "style element": re.compile(r"<style\b", re.I),
}


def _assert_headers(reply: kit.Reply, where: str) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert reply.headers.get(name) == value, f"{where}: {name} is {reply.headers.get(name)!r}"


def _inline_code(html: str) -> list[str]:
    return [what for what, pattern in INLINE.items() if pattern.search(html)]


def test_the_policy_forbids_framing_and_anything_inline() -> None:
    policy = dict(part.split(" ", 1) for part in SECURITY_HEADERS["Content-Security-Policy"].split("; "))
    assert policy["frame-ancestors"] == "'none'" and SECURITY_HEADERS["X-Frame-Options"] == "DENY"
    for directive in ("default-src", "script-src", "style-src"):
        assert policy[directive] == "'self'", directive  # no 'unsafe-inline', no 'unsafe-eval', no other origin
    assert SECURITY_HEADERS["X-Content-Type-Options"] == "nosniff"


def test_every_route_answers_with_the_headers(client: kit.Client, world: kit.World) -> None:
    """Each route anonymously (public answers, 401s, login redirects) and every readable GET as the
    owner (the pages and API bodies themselves)."""
    for (method, template), route in sorted(ROUTES.items()):
        if route.access == "stream":
            continue
        anonymous = call(client, method, template, route, world.a, None)
        _assert_headers(anonymous, f"anonymous {method} {template} ({anonymous.status})")
        if method == "GET" and route.access not in ("public", "admin"):
            reply = call(client, method, template, route, world.a, "owner_a")
            assert reply.status == 200, f"{method} {template}: {reply.status}"
            _assert_headers(reply, f"{method} {template}")


def test_static_files_errors_and_redirects_carry_them(client: kit.Client) -> None:
    script = client.call("GET", client.app.router["static"].url_for(filename="app.js").path)
    assert script.status == 200
    _assert_headers(script, "/static/app.js")
    _assert_headers(client.call("GET", "/no/such/page"), "404")
    _assert_headers(client.call("DELETE", "/healthz"), "405")
    redirect = client.call("GET", "/reset", params={"token": "x"})
    assert 300 <= redirect.status < 400
    _assert_headers(redirect, "/reset redirect")


def test_the_live_stream_carries_them(client: kit.Client) -> None:
    async def headers_only() -> kit.Reply:
        async with client.client.get(
            "/events/stream", headers={"Authorization": f"Bearer {client.world.tokens['owner_a']}"}
        ) as response:
            return kit.Reply(response.status, response.headers, b"")

    reply = client.loop.run_until_complete(asyncio.wait_for(headers_only(), 30))
    assert reply.status == 200
    _assert_headers(reply, "/events/stream")


def test_no_rendered_page_needs_inline_code(client: kit.Client, world: kit.World) -> None:
    pages = 0
    for (method, template), route in sorted(ROUTES.items()):
        if method != "GET" or template.startswith(("/api/", "/static", "/events")) or route.access == "admin":
            continue
        who = None if route.access == "public" else "owner_a"
        reply = call(client, method, template, route, world.a, who)
        if reply.media_type != "text/html":
            continue
        assert not _inline_code(reply.text), f"{template}: {_inline_code(reply.text)}"
        pages += 1
    register = fill("/registers/{register_id}", world.a)
    assert 'id="history-data"' in call(client, "GET", register, READ, world.a, "owner_a").text  # a data block, kept
    assert pages >= 20


def test_no_template_holds_inline_code() -> None:
    for template in sorted(TEMPLATES.glob("*.html")):
        found = _inline_code(template.read_text(encoding="utf-8"))
        assert not found, f"{template.name}: {found}"
