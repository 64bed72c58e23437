"""End to end: notifications and live page updates from the running collector service.

Real servers on loopback: a private Mosquitto, the collector (SQLite) serving its web app, an
aiosmtpd SMTP server and an aiohttp webhook receiver. Company Ромашка: Москва → {Тверская 1 (two
registers), Арбат 5 (one, under maintenance)}, Петербург → Невский 10 (one). A viewer granted
Москва gets an e-mail and a signed webhook receiver, created through the API by the owner.
Every register reports a 21-day OFD backlog (critical), so every store has a problem; the viewer
must get exactly one e-mail and one webhook for Тверская (both registers in it) and nothing for
Арбат (silenced) or Невский (not granted). An SSE client sees the alert change live, a receiver
that refuses connections ends in the failed-deliveries list, and a test message goes out.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiosmtpd.controller import Controller

from collector.accounts.audit import Actor
from collector.accounts.groups import add_member, create_group, grant_role
from collector.accounts.passwords import FAST_TEST_COST, Passwords
from collector.accounts.rights import Role
from collector.accounts.service import AccountService, AccountSettings, create_user
from collector.accounts.sessions import create_api_token
from collector.accounts.tree import create_node
from collector.config import load_config
from collector.notify import verify_signature
from collector.service import CollectorService
from collector.storage import create_engine_from_url, migrate
from collector.storage import repository as repo
from collector.storage.schema import registers
from collector.storage.silences import add_silence
from collector.web import create_app
from collector.web.api.notifications import OPERATIONS as NOTIFY_OPERATIONS

sys.path.insert(0, str(Path(__file__).parent.parent / "collector"))  # the ingest tests' helpers
sys.path.insert(0, str(Path(__file__).parent.parent))
import ingest_testkit as kit
from netkit import free_port, wait_for

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]

INN = "7707083893"  # a valid ИНН (Сбербанк's, a public example)
GROUP_WAIT = 1.0  # long enough for every register of a store to land in the first message






# --- the outside world: SMTP and webhook servers -------------------------------------------------


@dataclass
class Mailbox:
    messages: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 OK"

    def bodies(self) -> list[str]:
        return [str(m["Subject"]) + "\n" + m.get_body(("plain",)).get_content() for m in self.messages]  # type: ignore[union-attr]


@dataclass
class Hook:
    headers: dict[str, str]
    body: bytes


class WebhookServer:
    """An aiohttp receiver on its own loop thread, keeping every POST."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[Hook] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    async def _receive(self, request: web.Request) -> web.Response:
        self.received.append(Hook(dict(request.headers), await request.read()))
        return web.Response(status=204)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._receive)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield box, controller.port
    finally:
        controller.stop()


@pytest.fixture
def webhook_server() -> Iterator[WebhookServer]:
    server = WebhookServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --- the company ---------------------------------------------------------------------------------


@dataclass
class Company:
    tenant_id: int
    viewer_id: int
    owner_token: str
    viewer_token: str
    nodes: dict[str, int]


class NoMail:
    def send(self, to: str, subject: str, text: str) -> None:
        return None


def build_company(engine: sa.Engine) -> Company:
    at = datetime.now(UTC)
    cli = Actor.cli()
    accounts = AccountService(NoMail(), Passwords(FAST_TEST_COST), AccountSettings(base_url="http://kassa.test"))
    with engine.begin() as conn:
        owner = accounts.sign_up(
            conn, email="owner@romashka.test", password="correct horse battery", company="Ромашка", inn=INN, at=at
        )
        t = owner.tenant_id
        n: dict[str, int] = {}
        n["brand"] = create_node(conn, cli, t, parent_id=owner.root_node_id, kind="brand", name="Ромашка", at=at)
        n["moscow"] = create_node(conn, cli, t, parent_id=n["brand"], kind="city", name="Москва", at=at)
        n["tverskaya"] = create_node(conn, cli, t, parent_id=n["moscow"], kind="store", name="Тверская 1", at=at)
        n["arbat"] = create_node(conn, cli, t, parent_id=n["moscow"], kind="store", name="Арбат 5", at=at)
        n["spb"] = create_node(conn, cli, t, parent_id=n["brand"], kind="city", name="Петербург", at=at)
        n["nevsky"] = create_node(conn, cli, t, parent_id=n["spb"], kind="store", name="Невский 10", at=at)
        for store in ("tverskaya", "arbat", "nevsky"):
            repo.enroll_agent(conn, f"agent-{store}", tenant_id=t, node_id=n[store], enrolled_at=at)
        viewer = create_user(
            conn, Passwords(FAST_TEST_COST), cli, t, email="moscow@romashka.test", password="correct horse battery",
            at=at, confirmed=True,
        )
        group = create_group(conn, cli, t, "Москва", at=at)
        grant_role(conn, cli, t, group, Role.VIEWER, n["moscow"], at=at)
        add_member(conn, cli, t, group, viewer, at=at)
        # Арбат is under maintenance for the next hour.
        add_silence(conn, t, node_id=n["arbat"], starts_at=at - timedelta(minutes=1), until=at + timedelta(hours=1),
                    author="e2e", reason="ремонт")  # fmt: skip
        return Company(
            tenant_id=t,
            viewer_id=viewer,
            owner_token=create_api_token(conn, owner.user_id, "e2e", at=at).token,
            viewer_token=create_api_token(conn, viewer, "e2e", at=at).token,
            nodes=n,
        )


def app_with_notify_api(
    config: Any, *, engine: Any = None, metrics_registry: Any = None, broker_ready: Any = None, event_hub: Any = None
) -> web.Application:
    """``create_app`` as the service calls it (it serves the notification operations itself)."""
    app = create_app(
        config, engine=engine, metrics_registry=metrics_registry, broker_ready=broker_ready, event_hub=event_hub
    )
    assert any(r.canonical == NOTIFY_OPERATIONS[0].path for r in app.router.resources())
    return app


# --- HTTP helpers --------------------------------------------------------------------------------


def call(port: int, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None
    finally:
        connection.close()


class SseClient:
    """Reads ``/events/stream`` on a thread; keeps (event, data) pairs."""

    def __init__(self, port: int, token: str) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.connected = threading.Event()
        self._connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self._connection.request("GET", "/events/stream", headers={"Authorization": f"Bearer {token}"})
        self._socket = self._connection.sock
        self._response = self._connection.getresponse()
        assert self._response.status == 200, self._response.read()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        kind = ""
        try:
            for raw in self._response:
                line = raw.decode().rstrip("\n")
                if line == ": connected":
                    self.connected.set()
                elif line.startswith("event: "):
                    kind = line[len("event: ") :]
                elif line.startswith("data: ") and kind:
                    self.events.append((kind, json.loads(line[len("data: ") :])))
        except (OSError, ValueError, AttributeError):
            return  # closed under the reader by the test (http.client drops its file: AttributeError)

    def close(self) -> None:
        # Shut the socket first: closing the reader's buffer while it blocks would wait for the
        # next heartbeat (15 s).
        if self._socket is not None:
            self._socket.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)
        self._connection.close()


# --- the test ------------------------------------------------------------------------------------


def problem_state(serial: str) -> Any:
    now = datetime.now(UTC)
    local = datetime.now().replace(microsecond=0)
    return kit.register_state(serial, clock=local, unsent=7, oldest_unsent_age=timedelta(days=21), read_at=now)


def test_grouped_notifications_follow_grants_and_silences_and_pages_update_live(
    mqtt_broker: Any, mqtt_recorder: Any, mailbox: tuple[Mailbox, int], webhook_server: WebhookServer,
    tmp_path: Path,
) -> None:
    box, smtp_port = mailbox
    db_url = f"sqlite:///{tmp_path}/notify-{uuid.uuid4().hex[:6]}.db"
    engine = create_engine_from_url(db_url)
    migrate(engine)
    company = build_company(engine)
    web_port = free_port()
    config = load_config(None, env={}, overrides={
        "broker_url": mqtt_broker.url, "db_url": db_url, "client_id": "collector-notify-e2e",
        "listen": f"127.0.0.1:{web_port}", "evaluator_period": 0.5,
        "notify": {
            "smtp_host": "127.0.0.1", "smtp_port": smtp_port, "smtp_security": "none",
            "smtp_sender": "Касса-Монитор <alerts@kassa.test>", "public_url": "https://kassa.test",
            "group_wait": GROUP_WAIT, "group_interval": 60, "repeat_interval": 3600, "tick": 0.1,
            "receivers_refresh": 0.2, "retry_attempts": 1, "retry_backoff": 0,
        },
    })  # fmt: skip
    service = CollectorService(config, app_factory=app_with_notify_api)
    service.start()
    sse: SseClient | None = None
    try:
        assert service.notifier is not None, "SMTP is configured: notifications must be on"
        receivers = "/api/v1/notifications/receivers"
        # Only company-wide user/group managers may touch receivers.
        assert call(web_port, "GET", receivers, company.viewer_token)[0] == 403
        status, mail_receiver = call(web_port, "POST", receivers, company.owner_token, {
            "channel": "email", "address": "moscow@romashka.test", "principal_user_id": company.viewer_id,
        })  # fmt: skip
        assert status == 201 and mail_receiver["secret"] is None
        status, hook_receiver = call(web_port, "POST", receivers, company.owner_token, {
            "channel": "webhook", "address": f"http://127.0.0.1:{webhook_server.port}/hook",
            "principal_user_id": company.viewer_id,
        })  # fmt: skip
        assert status == 201 and len(hook_receiver["secret"]) >= 32
        dead_port = free_port()  # nothing listens there
        status, dead_receiver = call(web_port, "POST", receivers, company.owner_token, {
            "channel": "webhook", "address": f"http://127.0.0.1:{dead_port}/hook",
            "principal_user_id": company.viewer_id,
        })  # fmt: skip
        assert status == 201
        status, listed = call(web_port, "GET", receivers, company.owner_token)
        assert status == 200 and [r["id"] for r in listed["items"]] == sorted(
            [mail_receiver["id"], hook_receiver["id"], dead_receiver["id"]]
        )
        assert all("secret" not in r for r in listed["items"])
        time.sleep(0.3)  # past receivers_refresh: the directory sees the new rows

        sse = SseClient(web_port, company.owner_token)
        assert sse.connected.wait(5)

        recorder = mqtt_recorder([])
        for agent, register, serial in (
            ("agent-tverskaya", "kkt-t1", "1001"),
            ("agent-tverskaya", "kkt-t2", "1002"),
            ("agent-arbat", "kkt-a1", "2001"),
            ("agent-nevsky", "kkt-n1", "3001"),
        ):
            recorder.publish(*kit.state_msg(agent, register, 1, int(serial[-1]) - 1, problem_state(serial),
                                            ts=datetime.now(UTC)))  # fmt: skip

        first_mail = wait_for(lambda: box.messages, 15, "the e-mail about Тверская")[0]
        wait_for(lambda: webhook_server.received, 5, "the webhook about Тверская")
        with engine.connect() as conn:  # every store really has a firing alert
            placed = dict(conn.execute(sa.select(registers.c.register_id, registers.c.node_id)).all())
            stores_with_alerts = {
                placed[a.register_id] for a in repo.load_alerts(conn, register_ids=list(placed)) if a.status == "active"
            }
        assert stores_with_alerts == {company.nodes[s] for s in ("tverskaya", "arbat", "nevsky")}
        time.sleep(GROUP_WAIT + 1.0)  # a second window: nothing more may arrive

        # Exactly one grouped e-mail, for Тверская with both its registers.
        assert len(box.messages) == 1, box.bodies()
        assert first_mail["To"] == "moscow@romashka.test"
        text = box.bodies()[0]
        assert "Тверская 1" in text and "1001" in text and "1002" in text
        assert "Арбат" not in text and "Невский" not in text and "2001" not in text and "3001" not in text
        assert "https://kassa.test/registers/kkt-t1" in text  # links lead into our own UI

        # Exactly one signed webhook, same group.
        assert len(webhook_server.received) == 1
        hook = webhook_server.received[0]
        assert verify_signature(hook_receiver["secret"], hook.headers["X-Kassa-Timestamp"], hook.body,
                                hook.headers["X-Kassa-Signature"], now=time.time())  # fmt: skip
        payload = json.loads(hook.body)
        assert payload["store"] == {"node_id": str(company.nodes["tverskaya"]), "name": "Тверская 1"}
        assert sorted(a["register_id"] for a in payload["alerts"]) == ["kkt-t1", "kkt-t2"]

        # The unreachable receiver's delivery is in the failed list, visible through the API.
        failures = wait_for(
            lambda: call(web_port, "GET", "/api/v1/notifications/failures", company.owner_token)[1]["items"],
            5, "the failed delivery",
        )
        assert [(f["receiver_id"], f["channel"]) for f in failures] == [(dead_receiver["id"], "webhook")]
        assert "127.0.0.1" in failures[0]["last_error"]

        # Live page updates: the SSE client saw the register changes and the alert raised.
        alert_events = wait_for(lambda: [d for k, d in sse.events if k == "alert"], 5, "an SSE alert event")
        assert {"register_id": "kkt-t1", "rule": "ofd_backlog", "severity": "critical", "status": "firing"}.items() <= (
            next(d for d in alert_events if d["register_id"] == "kkt-t1").items()
        )
        assert {d["register_id"] for k, d in sse.events if k == "register"} >= {"kkt-t1", "kkt-t2", "kkt-n1"}

        # A test message goes out at once through the same relay.
        status, probe = call(web_port, "POST", f"{receivers}/{mail_receiver['id']}/test", company.owner_token)
        assert (status, probe) == (200, {"delivered": True, "error": None})
        assert len(box.messages) == 2 and "Проверка уведомлений" in box.bodies()[1]
    finally:
        if sse is not None:
            sse.close()
        service.stop()
        engine.dispose()
