"""Notification wiring: ``[notify]`` settings, receivers and failed deliveries in the database
(SQLite and PostgreSQL), the grouper fed by the real receivers/rights/silence hooks, and how the
collector service decides to build its dispatcher and event hub."""

from __future__ import annotations

import asyncio
import sys
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import time, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from collector.accounts.rights import Role, notification_filter
from collector.accounts.service import AccountService, AccountSettings
from collector.config import CollectorConfigError, NotifySettings, load_config
from collector.notify import AlertNotice, DeadLetter, GroupTimings, NotificationGrouper, Receiver
from collector.notify.receivers import (
    ReceiverDirectory,
    ReceiverError,
    ReceiverSpec,
    RecentAnswers,
    create_receiver,
    delete_receiver,
    get_receiver,
    list_receivers,
    load_receiver,
    recent_failures,
    record_failed_delivery,
    remembered_rights,
    remembered_silences,
    silence_check,
    update_receiver,
)
from collector.service import CollectorService, guarded, notifier_from_config, with_page_link
from collector.storage import Scope, create_engine_from_url, migrate
from collector.storage import repository as repo
from collector.storage.rows import AlertRow
from collector.storage.silences import add_silence, delete_silence

sys.path.insert(0, str(Path(__file__).parent))
import accounts_testkit as kit
from accounts_testkit import *  # noqa: F403  (the shared fixtures: conn, engine, mailer, service, world)

T0 = kit.T0
SECRET = "s" * 32


# --- settings ------------------------------------------------------------------------------------


def test_notify_settings_come_from_toml_env_and_overrides_later_winning(tmp_path: Path) -> None:
    toml = tmp_path / "collector.toml"
    toml.write_text('[notify]\nsmtp_host = "mail.example.ru"\nsmtp_port = 465\ngroup_wait = 10\n')
    config = load_config(
        toml,
        env={"KASSA_COLLECTOR_NOTIFY_SMTP_PORT": "2525", "KASSA_COLLECTOR_NOTIFY_SMTP_SECURITY": "none"},
        overrides={"notify_group_wait": 0.5, "notify_public_url": "https://kassa.example.ru"},
    )
    n = config.notify
    assert (n.smtp_host, n.smtp_port, n.smtp_security, n.group_wait) == ("mail.example.ru", 2525, "none", 0.5)
    assert n.public_url == "https://kassa.example.ru" and n.smtp_configured
    assert not load_config(None, env={}).notify.smtp_configured  # the default: no relay


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KASSA_COLLECTOR_NOTIFY_SMTP_HOSTNAME": "x"}, "unknown setting in environment"),
        ({"KASSA_COLLECTOR_NOTIFY_PUBLIC_URL": "kassa.example.ru"}, "notify.public_url"),
        ({"KASSA_COLLECTOR_NOTIFY_SMTP_USERNAME": "robot"}, "smtp_username and smtp_password"),
        ({"KASSA_COLLECTOR_NOTIFY_GROUP_WAIT": "-1"}, "notify.group_wait"),
    ],
)
def test_bad_notify_settings_are_refused_by_name(env: dict[str, str], message: str) -> None:
    with pytest.raises(CollectorConfigError, match=message):
        load_config(None, env=env)


def test_an_empty_smtp_host_means_no_relay() -> None:
    assert NotifySettings(smtp_host="  ").smtp_host is None


# --- receivers in the database -------------------------------------------------------------------


def viewer_of(conn: sa.Connection, world: kit.World, node: str, email: str) -> int:
    return kit.user_with_role(conn, world.a.tenant_id, email, Role.VIEWER, world.nodes[node])


def test_receivers_are_created_listed_replaced_and_deleted_per_tenant(conn: sa.Connection, world: kit.World) -> None:
    a = world.a.tenant_id
    user = viewer_of(conn, world, "moscow", "msk@romashka.test")
    mail_id = create_receiver(conn, a, ReceiverSpec("email", "msk@romashka.test", user), at=T0)
    hook_id = create_receiver(
        conn, a, ReceiverSpec("webhook", "https://hooks.example.ru/k", user, secret=SECRET,
                              quiet_start=time(22), quiet_end=time(8), quiet_floor="critical"), at=T0,
    )  # fmt: skip
    listed = list_receivers(conn, a)
    assert [(r.id, r.channel, r.has_secret) for r in listed] == [(mail_id, "email", False), (hook_id, "webhook", True)]
    assert list_receivers(conn, world.b.tenant_id) == []
    assert get_receiver(conn, world.b.tenant_id, hook_id) is None  # another tenant cannot reach it

    # Replacing without a secret keeps the webhook's secret; the quiet hours go.
    assert update_receiver(conn, a, hook_id, ReceiverSpec("webhook", "https://hooks.example.ru/v2", user))
    hook = load_receiver(conn, a, hook_id)
    assert hook is not None and (hook.address, hook.secret, hook.quiet_hours) == ("https://hooks.example.ru/v2", SECRET, None)
    assert hook.principal_id == str(user) and hook.tenant_id == str(a)
    assert not update_receiver(conn, world.b.tenant_id, hook_id, ReceiverSpec("email", "x@y.ru", None))

    assert delete_receiver(conn, a, mail_id) and not delete_receiver(conn, a, mail_id)
    assert [r.id for r in list_receivers(conn, a)] == [hook_id]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (ReceiverSpec("email", "a@b.ru, c@d.ru", None), "one plain address"),
        (ReceiverSpec("webhook", "ftp://hooks.example.ru", None, secret=SECRET), "http"),
        (ReceiverSpec("email", "a@b.ru", None, quiet_start=time(22)), "both a start and an end"),
        (ReceiverSpec("email", "a@b.ru", None, timezone="Mars/Olympus"), "time zone"),
        (ReceiverSpec("sms", "+79990000000", None), "channel"),
    ],
)
def test_unusable_receivers_are_refused_before_storing(
    conn: sa.Connection, world: kit.World, spec: ReceiverSpec, message: str
) -> None:
    with pytest.raises(ReceiverError, match=message):
        create_receiver(conn, world.a.tenant_id, spec, at=T0)


def test_a_receiver_cannot_listen_with_another_tenants_user(conn: sa.Connection, world: kit.World) -> None:
    with pytest.raises(ReceiverError, match="does not exist"):
        create_receiver(conn, world.a.tenant_id, ReceiverSpec("email", "x@lutik.test", world.b.user_id), at=T0)


def test_failed_deliveries_are_kept_under_the_receivers_tenant(conn: sa.Connection, world: kit.World) -> None:
    a = world.a.tenant_id
    receiver = create_receiver(conn, a, ReceiverSpec("webhook", "https://h.example.ru", None, secret=SECRET), at=T0)

    def letter(receiver_id: str, minutes: int) -> DeadLetter:
        return DeadLetter("webhook", receiver_id, f"{a}/7/{receiver_id}", 5, "HTTP 503", T0 + timedelta(minutes=minutes))

    assert record_failed_delivery(conn, letter(str(receiver), 1))
    assert record_failed_delivery(conn, letter(str(receiver), 2))
    assert not record_failed_delivery(conn, letter("999999", 3))  # receiver gone: nothing to file it under
    assert not record_failed_delivery(conn, letter("test", 3))
    failures = recent_failures(conn, a)
    assert [f.failed_at for f in failures] == [T0 + timedelta(minutes=2), T0 + timedelta(minutes=1)]
    assert (failures[0].receiver_id, failures[0].attempts, failures[0].last_error) == (receiver, 5, "HTTP 503")
    assert recent_failures(conn, world.b.tenant_id) == []
    assert len(recent_failures(conn, a, limit=1)) == 1


# --- the grouper on the real hooks ---------------------------------------------------------------


@dataclass
class OnConnection:
    """Stands in for the engine: every ``connect()`` is the test's own (rolled back) transaction."""

    conn: sa.Connection

    def connect(self) -> Any:
        return nullcontext(self.conn)


def notice(world: kit.World, store: str, status: str = "firing") -> AlertNotice:
    return AlertNotice(
        tenant_id=str(world.a.tenant_id), store_node_id=str(world.nodes[store]), store_name=store,
        register_id=world.registers[store], register_serial=store, rule="ofd_backlog", severity="critical",
        status=status, message="backlog",  # type: ignore[arg-type]
    )  # fmt: skip


def test_only_granted_unsilenced_stores_reach_a_receiver(conn: sa.Connection, world: kit.World) -> None:
    a = world.a.tenant_id
    user = viewer_of(conn, world, "moscow", "msk@romashka.test")
    create_receiver(conn, a, ReceiverSpec("email", "msk@romashka.test", user), at=T0)
    create_receiver(conn, a, ReceiverSpec("email", "nobody@romashka.test", None), at=T0)  # no principal: hears nothing
    silence = add_silence(conn, a, node_id=world.nodes["arbat"], starts_at=T0, until=T0 + timedelta(hours=1), author="t")
    fake = OnConnection(conn)
    grouper = NotificationGrouper(
        ReceiverDirectory(fake, channels=("email",)),  # type: ignore[arg-type]
        guarded(notification_filter(fake.connect)),
        silence_check(fake),  # type: ignore[arg-type]
        GroupTimings(group_wait=timedelta(seconds=30)),
    )
    for store in ("tverskaya", "arbat", "nevsky"):
        grouper.add(notice(world, store), T0)
    assert grouper.flush(T0 + timedelta(seconds=29)) == []  # still collecting the burst
    sent = grouper.flush(T0 + timedelta(seconds=30))
    assert [(g.receiver.address, g.store_name, len(g.firing)) for g in sent] == [("msk@romashka.test", "tverskaya", 1)]

    delete_silence(conn, silence)  # maintenance over: the held alert goes out at the next flush
    later = grouper.flush(T0 + timedelta(minutes=2))
    assert [(g.store_name, g.reason) for g in later] == [("arbat", "first")]


def test_a_silenced_alert_is_held_until_its_silence_ends(conn: sa.Connection, world: kit.World) -> None:
    repo.upsert_alert(conn, AlertRow(
        register_id=world.registers["nevsky"], rule="ofd_backlog", severity="critical", status="active",
        started_at=T0, updated_at=T0, silenced_until=T0 + timedelta(hours=2),
    ))  # fmt: skip
    is_silenced = silence_check(OnConnection(conn))  # type: ignore[arg-type]
    assert is_silenced(notice(world, "nevsky"), T0 + timedelta(hours=1))
    assert not is_silenced(notice(world, "nevsky"), T0 + timedelta(hours=2))
    assert not is_silenced(notice(world, "tverskaya"), T0)


def test_the_directory_caches_receivers_and_skips_unconfigured_channels(conn: sa.Connection, world: kit.World) -> None:
    a = world.a.tenant_id
    now = [0.0]
    directory = ReceiverDirectory(OnConnection(conn), channels=("webhook",), refresh=30, clock=lambda: now[0])  # type: ignore[arg-type]
    hook = create_receiver(conn, a, ReceiverSpec("webhook", "https://h.example.ru", None, secret=SECRET), at=T0)
    create_receiver(conn, a, ReceiverSpec("email", "a@romashka.test", None), at=T0)  # no SMTP: skipped
    create_receiver(conn, a, ReceiverSpec("webhook", "https://off.example.ru", None, secret=SECRET, enabled=False), at=T0)
    assert [r.receiver_id for r in directory(str(a))] == [str(hook)]
    second = create_receiver(conn, a, ReceiverSpec("webhook", "https://h2.example.ru", None, secret=SECRET), at=T0)
    now[0] = 29.0
    assert [r.receiver_id for r in directory(str(a))] == [str(hook)]  # cached
    now[0] = 30.0
    assert [r.receiver_id for r in directory(str(a))] == [str(hook), str(second)]
    assert directory(str(world.b.tenant_id)) == []


def test_a_failing_rights_check_fails_closed() -> None:
    def broken(receiver: Any, notice: Any) -> bool:
        raise sa.exc.OperationalError("select", {}, Exception("database away"))

    receiver = Receiver("1", "1", "email", "a@romashka.test", principal_id="1")
    n = AlertNotice("1", "2", "s", "kkt-1", "1", "ofd_backlog", "critical", "firing", "m")
    assert guarded(broken)(receiver, n) is False
    assert guarded(lambda r, x: True)(receiver, n) is True


# --- the service's choices -----------------------------------------------------------------------


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/wiring.db"
    migrate(url)
    return url


def test_notifications_turn_on_with_smtp_or_a_webhook_receiver(db_url: str) -> None:
    engine = create_engine_from_url(db_url)
    try:
        assert notifier_from_config(NotifySettings(), engine) is None
        with_smtp = notifier_from_config(NotifySettings(smtp_host="127.0.0.1"), engine)
        assert with_smtp is not None and with_smtp.dispatcher._email is not None
        assert notifier_from_config(NotifySettings(smtp_host="127.0.0.1", enabled=False), engine) is None
        with engine.begin() as conn:
            tenant = repo.create_tenant(conn, "Ромашка", created_at=T0)
            create_receiver(conn, tenant, ReceiverSpec("webhook", "https://h.example.ru", None, secret=SECRET), at=T0)
        webhook_only = notifier_from_config(NotifySettings(), engine)
        assert webhook_only is not None and webhook_only.dispatcher._email is None
    finally:
        engine.dispose()


def test_notices_link_to_the_register_page() -> None:
    base = AlertNotice("1", "2", "s", "shtrih 17/x", "17", "ofd_backlog", "critical", "firing", "m")
    assert with_page_link(base).url == "/registers/shtrih%2017%2Fx"
    assert with_page_link(with_page_link(base)).url == "/registers/shtrih%2017%2Fx"


def _config(db_url: str) -> Any:
    return load_config(None, env={}, overrides={"db_url": db_url, "broker_url": "mqtt://127.0.0.1:1",
                                                "listen": f"127.0.0.1:{_free_port()}"})  # fmt: skip


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_service_hands_its_hub_to_a_factory_that_takes_one(db_url: str) -> None:
    from aiohttp import web

    seen: dict[str, Any] = {}

    def with_hub(config: Any, *, engine: Any = None, event_hub: Any = None) -> web.Application:
        seen["hub"] = event_hub
        return web.Application()

    def without_hub(config: Any, *, engine: Any = None) -> web.Application:
        return web.Application()

    service = CollectorService(_config(db_url), app_factory=with_hub)
    service.start(wait_for_broker=None)
    try:
        assert seen["hub"] is service.event_hub and service.event_hub is not None
        assert service.notifier is None  # neither SMTP nor a webhook receiver
    finally:
        service.stop()
    assert CollectorService(_config(db_url), app_factory=without_hub).event_hub is None
    assert CollectorService(_config(db_url), serve_web=False).event_hub is None


def test_alert_notices_and_register_changes_reach_the_hub_then_the_callers_notify(db_url: str) -> None:
    got: list[AlertNotice] = []

    def factory(config: Any, *, event_hub: Any = None) -> None:
        return None

    service = CollectorService(_config(db_url), app_factory=factory, notify=got.append)
    hub = service.event_hub
    with service.engine.begin() as conn:
        tenant = repo.create_tenant(conn, "Ромашка", created_at=T0)
        kit.add_register(conn, tenant, None, "kkt-1")
    n = AlertNotice(str(tenant), "", "", "kkt-1", "1", "ofd_backlog", "critical", "firing", "m")

    async def watch() -> list[tuple[str, str]]:
        sub, _ = hub.subscribe(Scope.tenant(tenant), None)
        # What the alert engine and the ingest writer call, from their own threads.
        notify: Any = service.alert_engine._notify
        on_changed: Any = service.writer._on_changed
        await asyncio.to_thread(notify, n)
        await asyncio.to_thread(on_changed, ["kkt-1"], [])
        first, second = await asyncio.wait_for(sub.queue.get(), 2), await asyncio.wait_for(sub.queue.get(), 2)
        return [(item.kind, item.register_id) for item in (first, second) if item is not None]

    try:
        assert asyncio.run(watch()) == [("alert", "kkt-1"), ("register", "kkt-1")]
        assert got == [n]
    finally:
        service.engine.dispose()


# --- the API -------------------------------------------------------------------------------------


def test_receiver_api_is_for_company_managers_and_validates_everything(db_url: str) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from collector.accounts import audit
    from collector.accounts.sessions import create_api_token
    from collector.notify import Renderer
    from collector.web import create_app
    from collector.web.api.notifications import NOTIFY_CHANNELS_KEY, SendChannels

    engine = create_engine_from_url(db_url)
    accounts = AccountService(kit.RecordingMailer(), kit.FAST_PASSWORDS, AccountSettings(base_url="http://t"))
    with engine.begin() as conn:
        owner = accounts.sign_up(conn, email="owner@romashka.test", password=kit.PASSWORD, company="Ромашка",
                                 inn=kit.make_inn(), at=T0)  # fmt: skip
        viewer = kit.user_with_role(conn, owner.tenant_id, "v@romashka.test", Role.VIEWER, owner.root_node_id)
        owner_token = create_api_token(conn, owner.user_id, "t", at=T0).token
        viewer_token = create_api_token(conn, viewer, "t", at=T0).token
    app = create_app(load_config(None, env={}, overrides={"db_url": db_url}), engine=engine, pages=False)
    app[NOTIFY_CHANNELS_KEY] = SendChannels(Renderer("https://kassa.test"), smtp=None)
    url = "/api/v1/notifications/receivers"

    async def scenario() -> None:
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        try:
            async def call(method: str, path: str, token: str = owner_token, body: Any = None) -> tuple[int, Any]:
                response = await client.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"})
                return response.status, await response.json()

            hook = {"channel": "webhook", "address": "https://hooks.example.ru/a", "principal_user_id": viewer}
            assert (await call("GET", url, viewer_token))[0] == 403
            assert (await call("POST", url, viewer_token, hook))[0] == 403
            status, created = await call("POST", url, body=hook)
            assert status == 201 and len(created["secret"]) >= 32
            assert (await call("POST", url, body={**hook, "address": "ftp://x"}))[0] == 422
            assert (await call("POST", url, body={**hook, "principal_user_id": 999_999}))[0] == 422
            assert (await call("POST", url, body={**hook, "extra": 1}))[0] == 422
            status, replaced = await call("PUT", f"{url}/{created['id']}", body={**hook, "address": "https://h.ru/b"})
            assert status == 200 and (replaced["address"], replaced["has_secret"]) == ("https://h.ru/b", True)
            assert (await call("PUT", f"{url}/999999", body=hook))[0] == 404
            status, mail = await call("POST", url, body={"channel": "email", "address": "v@romashka.test",
                                                          "principal_user_id": viewer})  # fmt: skip
            assert status == 201 and mail["secret"] is None
            status, probe = await call("POST", f"{url}/{mail['id']}/test")
            assert status == 200 and not probe["delivered"] and "SMTP" in probe["error"]
            status, failures = await call("GET", "/api/v1/notifications/failures?limit=5")
            assert (status, failures) == (200, {"items": [], "next": None})  # a test message is answered, not filed
            assert (await call("DELETE", f"{url}/{created['id']}"))[0] == 200
            assert (await call("DELETE", f"{url}/{created['id']}"))[0] == 404
            status, listed = await call("GET", url)
            assert [r["id"] for r in listed["items"]] == [mail["id"]]
        finally:
            await client.close()

    try:
        asyncio.run(scenario())
        with engine.connect() as conn:
            actions = [e.action for e in audit.list_entries(conn, owner.tenant_id, target_type="notification_receiver")]
        assert sorted(actions) == sorted(["notification_receiver.create"] * 2 + ["notification_receiver.update",
                                                                                  "notification_receiver.delete"])
    finally:
        engine.dispose()


def test_an_unmigrated_database_leaves_notifications_off_not_the_collector_down(tmp_path: Path) -> None:
    engine = create_engine_from_url(f"sqlite:///{tmp_path}/old.db")
    try:
        assert notifier_from_config(NotifySettings(smtp_host="127.0.0.1"), engine) is None
    finally:
        engine.dispose()


def test_rights_and_silence_answers_are_reused_for_a_few_seconds_only() -> None:
    clock = [0.0]
    calls: list[str] = []
    answers = RecentAnswers(5.0, clock=lambda: clock[0], max_entries=2)

    def rights(receiver: Receiver, n: AlertNotice) -> bool:
        calls.append(f"rights {receiver.receiver_id} {n.register_id}")
        return n.register_id == "kkt-1"

    def silenced(n: AlertNotice, now: Any) -> bool:
        calls.append(f"silence {n.register_id}")
        return False

    can_see, is_silenced = remembered_rights(rights, answers), remembered_silences(silenced, answers)
    receiver = Receiver("7", "1", "email", "a@romashka.test", principal_id="3")
    one = AlertNotice("1", "2", "s", "kkt-1", "1", "ofd_backlog", "critical", "firing", "m")
    two = AlertNotice("1", "2", "s", "kkt-2", "2", "ofd_backlog", "critical", "firing", "m")
    assert can_see(receiver, one) and not can_see(receiver, two)
    assert can_see(receiver, one) and not is_silenced(one, None) and not is_silenced(one, None)
    assert calls == ["rights 7 kkt-1", "rights 7 kkt-2", "silence kkt-1"]
    clock[0] = 5.0  # expired: asked again (and the full table was pruned, not grown)
    assert can_see(receiver, one)
    assert calls[-1] == "rights 7 kkt-1" and len(calls) == 4
    other_principal = Receiver("7", "1", "email", "a@romashka.test", principal_id="4")
    can_see(other_principal, one)  # a changed principal is a different question
    assert len(calls) == 5
