"""Browser security headers on every response the app sends (pages, API, static files, errors).

The pages load only their own script and stylesheet (``/static/app.js``, ``/static/app.css``: no
inline script, handler attribute or style attribute), so the policy allows nothing inline and no
other origin; framing is refused twice (CSP ``frame-ancestors`` and, for older browsers,
``X-Frame-Options``) against clickjacking. No page links elsewhere, and reset and invitation
links carry their token in the URL, so no Referer is sent at all.

Set from ``on_response_prepare`` rather than a middleware, so that also the answers no handler
wrote (static files, the router's 404/405, a stream already started) carry them.
"""

from __future__ import annotations

from aiohttp import web

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def _add_security_headers(_request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def add_security_headers(app: web.Application) -> None:
    app.on_response_prepare.append(_add_security_headers)
