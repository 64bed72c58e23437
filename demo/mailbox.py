"""The demo's mail: nothing is sent. Every account e-mail (sign-up confirmation, invitation,
password reset, failed-login notice) is written to ``demo.log`` and kept for the page
``/demo/mail``, with links on the demo's real address (its ``--port``/``DEMO_PORT``)."""

from __future__ import annotations

import html
import logging
import threading
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

log = logging.getLogger(__name__)

MAILBOX_PATH = "/demo/mail"
MAILBOX_ROUTE = "demo-mailbox"
KEPT = 200  # newest messages shown; the log keeps all


@dataclass(frozen=True, slots=True)
class Letter:
    at: datetime
    to: str
    subject: str
    text: str


class DemoMailbox:
    """A ``Mailer`` for ``AccountService``: logs each message and keeps the newest for the page."""

    def __init__(self) -> None:
        self._letters: deque[Letter] = deque(maxlen=KEPT)
        self._lock = threading.Lock()

    def send(self, to: str, subject: str, text: str) -> None:
        log.warning("demo mail (not sent) to %s: %s\n%s", to, subject, text)
        with self._lock:
            self._letters.appendleft(Letter(datetime.now(UTC), to, subject, text))

    def letters(self) -> list[Letter]:
        with self._lock:
            return list(self._letters)

    async def page(self, request: web.Request) -> web.Response:
        items = "".join(
            f"<article><h2>{html.escape(letter.subject)}</h2>"
            f"<p>Кому: {html.escape(letter.to)} · {letter.at:%Y-%m-%d %H:%M:%S} UTC</p>"
            f"<pre>{html.escape(letter.text)}</pre></article>"
            for letter in self.letters()
        ) or "<p>Писем пока нет.</p>"
        body = (
            "<!doctype html><html lang='ru'><head><meta charset='utf-8'><title>Почта демо</title>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'></head><body>"
            "<h1>Почта демо</h1><p>Демо не отправляет письма: они все здесь (новые сверху) и в "
            "<code>demo-data/demo.log</code>.</p>"
            f"{items}<p><a href='/'>На главную</a></p></body></html>"
        )
        return web.Response(text=body, content_type="text/html", headers={"Cache-Control": "no-store"})
