"""Live updates: an in-process hub of "register changed" / "alert changed" notices, streamed to
browsers as Server-Sent Events filtered by each caller's scope.

``EventHub.publish`` is thread-safe: the ingest writer and the alert evaluator run on their own
threads, the web app on its event-loop thread. Each subscriber owns a bounded asyncio queue fed
with ``call_soon_threadsafe``; a subscriber that falls behind is told to reload instead of
making the publisher wait.

Reconnects: event ids are ``<hub epoch>-<n>``. The hub keeps the last ``replay_size`` notices; a
browser reconnecting with ``Last-Event-ID`` gets what it missed, or a ``reset`` event (reload the
page) when the id is from another hub incarnation or older than the buffer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from collector.storage.scope import Scope
from collector.web.auth import principal_of

log = logging.getLogger(__name__)

EventKind = Literal["register", "alert"]
EVENT_KINDS: tuple[str, ...] = ("register", "alert")
_QUEUE_SIZE = 256


@dataclass(frozen=True, slots=True)
class Notice:
    id: str
    seq: int
    kind: str
    register_id: str
    tenant_id: int | None
    node_ids: tuple[int, ...]
    payload: Mapping[str, Any]

    def visible_to(self, scope: Scope) -> bool:
        """Mirrors ``storage.scope.register_visible``: same tenant, and inside a granted subtree
        (a register outside the tree is visible to its whole tenant only)."""
        if scope.tenant_id is None:
            return True
        if self.tenant_id != scope.tenant_id:
            return False
        if scope.node_ids is None:
            return True
        return any(node_id in scope.node_ids for node_id in self.node_ids)

    def frame(self) -> bytes:
        data = json.dumps({"register_id": self.register_id, **self.payload}, ensure_ascii=False, default=str)
        return f"id: {self.id}\nevent: {self.kind}\ndata: {data}\n\n".encode()


def _path_ids(node_path: str | None) -> tuple[int, ...]:
    # "/1/5/12/" → (1, 5, 12); anything unparseable means "outside the tree" rather than an error.
    ids = []
    for part in (node_path or "").split("/"):
        if part.isdigit():
            ids.append(int(part))
    return tuple(ids)


@dataclass(eq=False)
class _Subscriber:
    scope: Scope
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Notice | None] = field(default_factory=lambda: asyncio.Queue(_QUEUE_SIZE))
    overflowed: bool = False

    def offer(self, notice: Notice | None) -> None:
        """Runs on the subscriber's loop."""
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(notice)
        except asyncio.QueueFull:
            # The stream sends "reset" and ends; the browser reloads the page instead of
            # showing a state with holes in it.
            self.overflowed = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)


class EventHub:
    def __init__(self, *, replay_size: int = 1000) -> None:
        self.epoch = secrets.token_hex(4)
        self._lock = threading.Lock()
        self._seq = 0
        self._recent: deque[Notice] = deque(maxlen=replay_size)
        self._subscribers: set[_Subscriber] = set()

    def publish(
        self,
        kind: str,
        register_id: str,
        node_path: str | None,
        payload: Mapping[str, Any] | None = None,
        *,
        tenant_id: int | None = None,
    ) -> str:
        """Announce a change; returns the event id. ``tenant_id`` None = visible to administrators
        only (fail closed when the publisher does not know the tenant)."""
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {kind!r}; expected one of {', '.join(EVENT_KINDS)}")
        with self._lock:
            self._seq += 1
            notice = Notice(
                id=f"{self.epoch}-{self._seq}",
                seq=self._seq,
                kind=kind,
                register_id=register_id,
                tenant_id=tenant_id,
                node_ids=_path_ids(node_path),
                payload=dict(payload or {}),
            )
            self._recent.append(notice)
            targets = [sub for sub in self._subscribers if notice.visible_to(sub.scope)]
        for sub in targets:
            _deliver(sub, notice)
        return notice.id

    def subscribe(self, scope: Scope, last_event_id: str | None) -> tuple[_Subscriber, list[Notice] | None]:
        """Register a subscriber on the running loop; also returns the missed notices to replay,
        or None when they cannot be known (the client must reload)."""
        sub = _Subscriber(scope=scope, loop=asyncio.get_running_loop())
        with self._lock:
            self._subscribers.add(sub)
            missed = self._missed(scope, last_event_id)
        return sub, missed

    def unsubscribe(self, sub: _Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(sub)

    def close(self) -> None:
        """End every open stream (application shutdown)."""
        with self._lock:
            subs = list(self._subscribers)
        for sub in subs:
            _deliver(sub, None)

    def skipped(self) -> None:
        """A publisher skipped building notices because nobody listened (saving its database
        lookups): replay can no longer be complete, so a browser reconnecting with an older id
        gets "reset" and reloads."""
        with self._lock:
            self._seq += 1
            self._recent.clear()

    def recent(self, scope: Scope | None = None) -> list[Notice]:
        """The notices still in the replay buffer (those visible to ``scope``), oldest first."""
        with self._lock:
            return [n for n in self._recent if scope is None or n.visible_to(scope)]

    @property
    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def _missed(self, scope: Scope, last_event_id: str | None) -> list[Notice] | None:
        if not last_event_id:
            return []
        epoch, _, number = last_event_id.partition("-")
        if epoch != self.epoch or not number.isdigit():
            return None
        after = int(number)
        if after > self._seq:
            return None
        oldest = self._recent[0].seq if self._recent else self._seq + 1
        if after + 1 < oldest:
            return None  # fell out of the buffer
        return [n for n in self._recent if n.seq > after and n.visible_to(scope)]


def _deliver(sub: _Subscriber, notice: Notice | None) -> None:
    try:
        sub.loop.call_soon_threadsafe(sub.offer, notice)
    except RuntimeError:  # the subscriber's loop is closed: its stream is gone
        log.debug("dropping a notice for a subscriber whose loop is closed")


EVENT_HUB_KEY = web.AppKey("event_hub", EventHub)
HEARTBEAT_KEY = web.AppKey("sse_heartbeat_seconds", float)
RESET_FRAME = b"event: reset\ndata: {}\n\n"


async def event_stream(request: web.Request) -> web.StreamResponse:
    """``GET /events/stream``: the caller's notices as SSE, with heartbeat comments."""
    hub = request.app[EVENT_HUB_KEY]
    heartbeat = request.app.get(HEARTBEAT_KEY, 15.0)
    scope = principal_of(request).scope
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache, no-transform",
            "X-Accel-Buffering": "no",  # nginx must not buffer the stream
        }
    )
    await response.prepare(request)
    sub, missed = hub.subscribe(scope, request.headers.get("Last-Event-ID"))
    try:
        await response.write(b"retry: 3000\n: connected\n\n")
        if missed is None:
            await response.write(RESET_FRAME)
        else:
            for notice in missed:
                await response.write(notice.frame())
        while True:
            try:
                item = await asyncio.wait_for(sub.queue.get(), timeout=heartbeat)
            except TimeoutError:
                await response.write(b": ping\n\n")
                continue
            if item is None:
                if sub.overflowed:
                    await response.write(RESET_FRAME)
                break
            await response.write(item.frame())
    except (ConnectionResetError, ConnectionError):
        pass  # the browser went away; it reconnects with Last-Event-ID
    finally:
        hub.unsubscribe(sub)
    return response
