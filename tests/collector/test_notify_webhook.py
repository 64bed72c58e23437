"""WebhookSender against a real aiohttp server on 127.0.0.1: signing, retries, dead letters."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from aiohttp import web

from collector.notify.delivery import DeadLetterList, RetryPolicy
from collector.notify.dispatcher import NotificationDispatcher
from collector.notify.grouping import NotificationGrouper
from collector.notify.notice import AlertNotice, Receiver
from collector.notify.render import Renderer
from collector.notify.webhook import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookSender,
    sign,
    verify_signature,
)

SECRET = "s3cr3t-ключ"
FAST = RetryPolicy(attempts=3, initial_backoff=0.01, max_backoff=0.02, jitter=0.005)
BODY = json.dumps({"hello": "касса"}, ensure_ascii=False).encode()


@dataclass
class Hook:
    """A webhook receiver that answers with scripted statuses and records what it got."""

    statuses: list[int]
    delay: float = 0.0
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        if self.delay:
            await asyncio.sleep(self.delay)
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return web.Response(status=status, text="ok" if status < 300 else "nope")


@asynccontextmanager
async def serving(hook: Hook) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        await runner.cleanup()


def receiver(url: str) -> Receiver:
    return Receiver("hook-1", "t1", "webhook", url, secret=SECRET)


def run_send(
    hook: Hook, *, policy: RetryPolicy = FAST, timeout: float = 2.0, url: str | None = None
) -> tuple[bool, DeadLetterList]:
    letters = DeadLetterList()

    async def go() -> bool:
        async with serving(hook) as served, WebhookSender(policy, letters, timeout=timeout) as sender:
            return await sender.send(receiver(url or served), BODY, "t1/s1/hook-1")

    return asyncio.run(go()), letters


def test_signature_round_trip_and_tampering() -> None:
    ts = "1764234000"
    header = sign(SECRET, ts, BODY)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert verify_signature(SECRET, ts, BODY, header)
    assert not verify_signature("other", ts, BODY, header)
    assert not verify_signature(SECRET, ts, BODY + b" ", header)
    assert not verify_signature(SECRET, "1764234001", BODY, header)  # the timestamp is signed too
    assert not verify_signature(SECRET, ts, BODY, header.removeprefix("sha256="))
    assert not verify_signature(SECRET, "12ab", BODY, header)
    assert verify_signature(SECRET, ts, BODY, header, now=1764234000 + 299)
    assert not verify_signature(SECRET, ts, BODY, header, now=1764234000 + 301)  # replay of an old message


def test_delivered_request_is_signed_and_verifiable_by_the_receiver() -> None:
    hook = Hook([204])
    ok, letters = run_send(hook)
    assert ok and letters.letters == []
    ((headers, body),) = hook.requests
    assert body == BODY
    assert headers["Content-Type"].startswith("application/json")
    assert verify_signature(
        SECRET, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER], now=time.time()
    )


def test_server_errors_are_retried_until_success_with_one_delivery_id() -> None:
    hook = Hook([500, 503, 200])
    ok, letters = run_send(hook)
    assert ok and letters.letters == []
    assert len(hook.requests) == 3
    assert len({h[DELIVERY_HEADER] for h, _ in hook.requests}) == 1
    for headers, body in hook.requests:
        assert verify_signature(SECRET, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])


def test_persistent_failure_ends_in_the_dead_letter_list_with_the_last_error() -> None:
    hook = Hook([500, 500, 502])
    ok, letters = run_send(hook)
    assert not ok and len(hook.requests) == 3
    (letter,) = letters.letters
    assert (
        letter.channel == "webhook" and letter.receiver_id == "hook-1" and letter.group_key == "t1/s1/hook-1"
    )
    assert letter.attempts == 3
    assert "HTTP 502" in letter.last_error


def test_client_error_is_not_retried() -> None:
    hook = Hook([401])
    ok, letters = run_send(hook)
    assert not ok and len(hook.requests) == 1
    assert letters.letters[0].attempts == 1 and "HTTP 401" in letters.letters[0].last_error


def test_too_many_requests_is_retried() -> None:
    hook = Hook([429, 200])
    ok, _ = run_send(hook)
    assert ok and len(hook.requests) == 2


def test_slow_receiver_times_out_and_is_retried() -> None:
    hook = Hook([200], delay=0.3)
    ok, letters = run_send(
        hook, policy=RetryPolicy(attempts=2, initial_backoff=0.01, max_backoff=0.01, jitter=0), timeout=0.1
    )
    assert not ok and len(hook.requests) == 2
    assert "timed out" in letters.letters[0].last_error


def test_unreachable_receiver_is_dead_lettered() -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ok, letters = run_send(Hook([200]), url=f"http://127.0.0.1:{port}/hook")
    assert not ok
    assert letters.letters[0].attempts == 3 and "ClientConnector" in letters.letters[0].last_error


def test_dispatcher_sends_one_signed_grouped_body_per_store() -> None:
    hook = Hook([200])
    t0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)

    def notice(register: str, store: str) -> AlertNotice:
        return AlertNotice(
            "t1",
            store,
            f"Магазин {store}",
            register,
            f"SN{register}",
            "ofd_backlog",
            "major",
            "firing",
            "Нет связи с ОФД",
        )

    async def go() -> tuple[int, int]:
        async with serving(hook) as url, WebhookSender(FAST) as sender:
            recv = receiver(url)
            receivers_for: Callable[[str], list[Receiver]] = lambda tenant: [recv]  # noqa: E731
            dispatcher = NotificationDispatcher(
                NotificationGrouper(receivers_for, can_see=lambda r, n: True),
                Renderer("https://kassa.example.ru"),
                webhook=sender,
            )
            for register in ("1", "2", "3"):
                dispatcher.submit(notice(register, "s1"), t0)
            dispatcher.submit(notice("4", "s2"), t0)
            early = await dispatcher.run_once(t0 + timedelta(seconds=5))
            report = await dispatcher.run_once(t0 + timedelta(seconds=30))
            return early.groups, report.delivered

    early_groups, delivered = asyncio.run(go())
    assert early_groups == 0 and delivered == 2
    docs = {}
    for headers, body in hook.requests:
        assert verify_signature(SECRET, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
        doc = json.loads(body)
        docs[doc["store"]["node_id"]] = doc
    assert docs["s1"]["counts"]["firing"] == 3 and docs["s1"]["counts"]["registers"] == 3
    assert docs["s2"]["counts"]["firing"] == 1


def test_service_loop_flushes_by_its_clock_and_stops_cleanly() -> None:
    hook = Hook([200])
    t0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    clock = {"now": t0}
    notice = AlertNotice(
        "t1", "s1", "Ленина 5", "r1", "SN1", "shift_open", "critical", "firing", "Смена 23 ч 40 мин"
    )

    async def go() -> int:
        async with serving(hook) as url, WebhookSender(FAST) as sender:
            recv = receiver(url)
            dispatcher = NotificationDispatcher(
                NotificationGrouper(lambda tenant: [recv], can_see=lambda r, n: True),
                Renderer("https://kassa.example.ru"),
                webhook=sender,
            )
            stop = asyncio.Event()
            loop_task = asyncio.create_task(dispatcher.run(stop, tick=0.01, clock=lambda: clock["now"]))
            dispatcher.submit(notice, t0)
            await asyncio.sleep(0.05)
            before = len(hook.requests)  # still inside group_wait
            clock["now"] = t0 + timedelta(seconds=30)
            for _ in range(200):
                if hook.requests:
                    break
                await asyncio.sleep(0.01)
            stop.set()
            await asyncio.wait_for(loop_task, timeout=2)
            return before

    assert asyncio.run(go()) == 0
    assert len(hook.requests) == 1
    assert json.loads(hook.requests[0][1])["alerts"][0]["rule"] == "shift_open"


def test_receiver_without_a_configured_channel_counts_as_failed() -> None:
    mail_user = Receiver("u1", "t1", "email", "u1@example.ru")
    dispatcher = NotificationDispatcher(
        NotificationGrouper(lambda tenant: [mail_user], can_see=lambda r, n: True),
        Renderer("https://kassa.example.ru"),
    )
    t0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    dispatcher.submit(
        AlertNotice("t1", "s1", "Ленина 5", "r1", "SN1", "paper", "warning", "firing", "Нет бумаги"), t0
    )
    report = asyncio.run(dispatcher.run_once(t0 + timedelta(minutes=1)))
    assert (report.groups, report.delivered, report.failed) == (1, 0, 1)
