"""Ties the grouper, the renderer and the channels together.

``run_once(now)`` is one deterministic step (flush what is due, render, deliver, wait for the
deliveries) — tests drive it with a fake clock. ``run(stop)`` is the service loop: it flushes
every ``tick`` seconds and delivers in background tasks, so one slow or failing receiver (which
may spend minutes in retries) never delays the others or the next flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from collector.notify.email import EmailSender
from collector.notify.grouping import NotificationGrouper
from collector.notify.notice import AlertNotice, NotificationGroup
from collector.notify.render import Renderer
from collector.notify.webhook import WebhookSender

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DispatchReport:
    groups: int  # messages that were due
    delivered: int
    failed: int  # dead-lettered, or no channel configured for the receiver


def _utc_now() -> datetime:
    return datetime.now(UTC)


class NotificationDispatcher:
    def __init__(
        self,
        grouper: NotificationGrouper,
        renderer: Renderer,
        *,
        webhook: WebhookSender | None = None,
        email: EmailSender | None = None,
        max_concurrent: int = 20,
    ) -> None:
        self.grouper = grouper
        self.renderer = renderer
        self._webhook = webhook
        self._email = email
        self._slots = asyncio.Semaphore(max_concurrent)
        self._background: set[asyncio.Task[bool]] = set()

    def submit(self, notice: AlertNotice, now: datetime) -> None:
        """Called by the alert engine whenever an alert fires, changes severity or clears."""
        self.grouper.add(notice, now)

    async def run_once(self, now: datetime) -> DispatchReport:
        groups = self.grouper.flush(now)
        results = await asyncio.gather(*(self.deliver(g) for g in groups))
        delivered = sum(results)
        return DispatchReport(groups=len(groups), delivered=delivered, failed=len(groups) - delivered)

    async def run(
        self, stop: asyncio.Event, *, tick: float = 1.0, clock: Callable[[], datetime] = _utc_now
    ) -> None:
        while not stop.is_set():
            for group in self.grouper.flush(clock()):
                task = asyncio.create_task(self.deliver(group))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=tick)
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    async def deliver(self, group: NotificationGroup) -> bool:
        receiver = group.receiver
        key = str(group.key)
        async with self._slots:
            if receiver.channel == "webhook" and self._webhook is not None:
                return await self._webhook.send(receiver, self.renderer.webhook_body(group), key)
            if receiver.channel == "email" and self._email is not None:
                return await self._email.send(receiver, self.renderer.email(group), key)
        log.error("no %s channel configured; dropping notification %s", receiver.channel, key)
        return False
