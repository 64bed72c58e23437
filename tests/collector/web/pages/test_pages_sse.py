"""The live-update hub and ``GET /events/stream``: scope filtering, thread-safe publishing,
Last-Event-ID replay, reset on unknown ids and overflow, heartbeats, and the feeds the service
wires into ingest and the alert engine."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from collector.storage.scope import Scope
from collector.web import Principal
from collector.web.pages.feeds import alert_notice_feed, register_change_feed
from collector.web.pages.sse import EventHub

sys.path.insert(0, str(Path(__file__).parents[2]))  # importlib mode: make the shared helper importable
import pages_testkit as kit

NOW = kit.FIXED_NOW


# --- the hub alone ---------------------------------------------------------------------------------


def test_scope_filtering_mirrors_register_visibility() -> None:
    hub = EventHub()
    hub.publish("register", "r-moscow", "/1/2/3/", {"x": 1}, tenant_id=1)
    hub.publish("register", "r-spb", "/1/5/6/", {}, tenant_id=1)
    hub.publish("register", "r-unplaced", None, {}, tenant_id=1)
    hub.publish("alert", "r-other", "/9/10/", {}, tenant_id=2)
    hub.publish("register", "r-unknown-tenant", "/1/2/", {})

    def seen(scope: Scope) -> list[str]:
        return [notice.register_id for notice in hub.recent(scope)]

    assert seen(Scope.admin()) == ["r-moscow", "r-spb", "r-unplaced", "r-other", "r-unknown-tenant"]
    assert seen(Scope.tenant(1)) == ["r-moscow", "r-spb", "r-unplaced"]
    assert seen(Scope.subtrees(1, [2])) == ["r-moscow"]
    assert seen(Scope.subtrees(1, [5, 2])) == ["r-moscow", "r-spb"]
    assert seen(Scope.tenant(2)) == ["r-other"]


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown event kind"):
        EventHub().publish("shift", "r", None, {})


def test_last_event_id_replays_what_was_missed() -> None:
    hub = EventHub(replay_size=3)

    async def scenario() -> None:
        first = hub.publish("register", "a", "/1/", {}, tenant_id=1)
        hub.publish("register", "b", "/1/", {}, tenant_id=1)
        hub.publish("register", "c", "/2/", {}, tenant_id=2)
        _, missed = hub.subscribe(Scope.tenant(1), first)
        assert missed is not None and [n.register_id for n in missed] == ["b"]
        _, current = hub.subscribe(Scope.tenant(1), hub.recent()[-1].id)
        assert current == []
        _, foreign = hub.subscribe(Scope.tenant(1), "deadbeef-1")  # another hub incarnation
        assert foreign is None
        _, future = hub.subscribe(Scope.tenant(1), f"{hub.epoch}-99")
        assert future is None
        hub.publish("register", "d", "/1/", {}, tenant_id=1)
        hub.publish("register", "e", "/1/", {}, tenant_id=1)
        _, lost = hub.subscribe(Scope.tenant(1), first)  # "b" fell out of the 3-notice buffer
        assert lost is None

    asyncio.run(scenario())


def test_publishing_from_another_thread_reaches_the_subscriber() -> None:
    hub = EventHub()

    async def scenario() -> None:
        sub, _ = hub.subscribe(Scope.subtrees(1, [2]), None)
        worker = threading.Thread(
            target=lambda: [
                hub.publish("register", f"r{i}", f"/1/{2 + i % 2}/", {}, tenant_id=1) for i in range(10)
            ]
        )
        worker.start()
        got = [await asyncio.wait_for(sub.queue.get(), 2) for _ in range(5)]
        worker.join()
        assert [n.register_id for n in got if n] == ["r0", "r2", "r4", "r6", "r8"]
        assert sub.queue.empty()
        hub.unsubscribe(sub)
        assert hub.subscriber_count == 0

    asyncio.run(scenario())


def test_a_slow_subscriber_is_told_to_reset_instead_of_blocking_publishers() -> None:
    hub = EventHub()

    async def scenario() -> None:
        sub, _ = hub.subscribe(Scope.admin(), None)
        for i in range(400):
            hub.publish("register", f"r{i}", None, {})
        await asyncio.sleep(0.05)  # let the loop run the deliveries
        assert sub.overflowed
        assert await asyncio.wait_for(sub.queue.get(), 1) is None
        assert sub.queue.empty()

    asyncio.run(scenario())


def test_frame_is_valid_sse_with_json_data() -> None:
    hub = EventHub()
    hub.publish("alert", "r-1", "/1/", {"severity": "major", "text": "строка\nвторая"}, tenant_id=1)
    frame = hub.recent()[0].frame().decode()
    lines = frame.split("\n")
    assert lines[0] == f"id: {hub.epoch}-1" and lines[1] == "event: alert" and frame.endswith("\n\n")
    assert json.loads(lines[2].removeprefix("data: ")) == {
        "register_id": "r-1",
        "severity": "major",
        "text": "строка\nвторая",
    }


# --- the HTTP stream -------------------------------------------------------------------------------


# Fixtures shared with the other page tests: a migrated SQLite file per module, reseeded per test.
engine = kit.module_engine
fleet = kit.seeded_fleet


async def next_frame(response: ClientResponse, timeout: float = 3.0) -> dict[str, str]:
    """The next SSE frame as {field: value}; comment lines come back as {"comment": text}."""
    raw = await asyncio.wait_for(response.content.readuntil(b"\n\n"), timeout)
    fields: dict[str, str] = {}
    for line in raw.decode().strip("\n").split("\n"):
        name, _, value = line.partition(":")
        fields["comment" if name == "" else name] = value.strip()
    return fields


def stream_session(engine: sa.Engine, principal: Principal, body: Any, heartbeat: float = 15.0) -> None:
    hub = EventHub()
    app = kit.build_app(
        engine, authenticator=kit.FixedPrincipal(principal), hub=hub, heartbeat_seconds=heartbeat
    )

    async def go() -> None:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            await body(client, hub)

    asyncio.run(go())


def test_stream_delivers_scoped_notices_and_heartbeats(engine: sa.Engine, fleet: Any) -> None:
    moscow = Principal("москва", Scope.subtrees(fleet.tenant_a, [fleet.nodes["moscow"]]))

    async def body(client: TestClient, hub: EventHub) -> None:
        response = await client.get("/events/stream")
        assert response.status == 200 and response.content_type == "text/event-stream"
        assert (await next_frame(response)) == {"retry": "3000", "comment": "connected"}
        assert (await next_frame(response, 2))["comment"] == "ping"  # heartbeat keeps proxies from timing out
        await asyncio.to_thread(hub.publish, "register", "spb", "/1/5/6/", {}, tenant_id=fleet.tenant_a)
        path = f"/{fleet.nodes['legal']}/{fleet.nodes['moscow']}/{fleet.nodes['arbat']}/"
        await asyncio.to_thread(
            hub.publish, "alert", "arbat", path, {"severity": "major"}, tenant_id=fleet.tenant_a
        )
        frame = await next_frame(response)
        while "comment" in frame:
            frame = await next_frame(response)
        assert frame["event"] == "alert" and json.loads(frame["data"])["register_id"] == "arbat"
        response.close()

    stream_session(engine, moscow, body, heartbeat=0.2)


def test_stream_replays_after_last_event_id_and_resets_on_a_foreign_id(engine: sa.Engine, fleet: Any) -> None:
    admin = Principal("admin", Scope.admin())

    async def body(client: TestClient, hub: EventHub) -> None:
        first = hub.publish("register", "a", None, {})
        hub.publish("register", "b", None, {})
        response = await client.get("/events/stream", headers={"Last-Event-ID": first})
        await next_frame(response)
        replayed = await next_frame(response)
        assert replayed["event"] == "register" and json.loads(replayed["data"])["register_id"] == "b"
        response.close()
        stale = await client.get("/events/stream", headers={"Last-Event-ID": "00000000-5"})
        await next_frame(stale)
        assert (await next_frame(stale))["event"] == "reset"
        stale.close()

    stream_session(engine, admin, body)


# --- the feeds the service wires in ----------------------------------------------------------------


def test_feeds_publish_with_tenant_and_path_and_never_raise(engine: sa.Engine, fleet: Any) -> None:
    hub = EventHub()
    passed_on: list[Any] = []
    changed = register_change_feed(engine, hub)
    notify = alert_notice_feed(engine, hub, then=passed_on.append)
    notice = SimpleNamespace(
        register_id=fleet.registers["nevsky-1"], rule="fn_validity", severity="major", status="firing"
    )

    async def scenario() -> None:
        listener, _ = hub.subscribe(Scope.admin(), None)
        changed([fleet.registers["tverskaya-1"]], ["agent-kazan"])
        notify(notice)
        notices = hub.recent()
        assert sorted(n.register_id for n in notices[:2]) == sorted(
            [fleet.registers["tverskaya-1"], fleet.registers["kazan"]]
        )
        moscow_only = hub.recent(Scope.subtrees(fleet.tenant_a, [fleet.nodes["moscow"]]))
        assert [n.register_id for n in moscow_only] == [fleet.registers["tverskaya-1"]]
        alert = notices[-1]
        assert alert.kind == "alert" and alert.payload["rule"] == "fn_validity"
        assert alert.tenant_id == fleet.tenant_a and alert.payload["worst_severity"] == "major"

        broken = register_change_feed(
            sa.create_engine("sqlite:///file:/nonexistent/x.db?mode=ro&uri=true"), hub
        )
        broken(["x"], [])  # logged, not raised: the ingest writer's loop must go on

        # Nobody listening: no lookups, and a browser coming back with an older id must reload.
        hub.unsubscribe(listener)
        last_seen = hub.recent()[-1].id
        changed([fleet.registers["arbat"]], [])
        notify(notice)
        _, missed = hub.subscribe(Scope.admin(), last_seen)
        assert missed is None and hub.recent() == []

    asyncio.run(scenario())
    assert passed_on == [notice, notice]  # the notifier behind the feed always gets the notice
