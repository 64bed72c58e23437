"""The world of the security tests and a client for it (imported by path: --import-mode=importlib).

Two companies signed up through the real flows: A (Ромашка: brand → Москва → Тверская, Арбат;
Петербург → Невский) and B (Лютик: one store). A has an owner, a viewer and an accountant on the
whole company, and an operator granted Москва only; B has its owner. Each user holds an API
token. Every store has a register with an active alert and an agent; each company has a group
with a grant, a tag, an API token and a КЭП order, so every kind of path parameter has an
object on each side.
"""

from __future__ import annotations

import asyncio
import importlib.util
import random
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiohttp import DummyCookieJar
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from collector.accounts import kep, kep_alerts
from collector.accounts.audit import Actor
from collector.accounts.groups import create_group, grant_role
from collector.accounts.rights import Role
from collector.accounts.schema import account_alerts, kep_certificates
from collector.accounts.service import AccountService, AccountSettings
from collector.accounts.sessions import create_api_token
from collector.accounts.tree import create_node, create_tag
from collector.alerts import Thresholds
from collector.enrollment.broker import CredentialBackend
from collector.enrollment.service import EnrollmentService
from collector.notify.receivers import ReceiverSpec, create_receiver
from collector.notify.render import Renderer
from collector.security import PRINCIPAL_KEY, Principal
from collector.storage import repository as repo
from collector.storage.engine import begin_write
from collector.storage.rows import AlertRow
from collector.storage.schema import register_actions
from collector.storage.scope import Scope
from collector.web import WebSettings, create_app
from collector.web.api.notifications import NOTIFY_CHANNELS_KEY, SendChannels
from collector.web.api.openapi import openapi_document
from collector.web.pages.render import CSRF_KEY
from collector.web.shared.csrf import SEED_COOKIE

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
import accounts_testkit as accounts_kit  # noqa: E402

T0 = accounts_kit.T0
PASSWORD = accounts_kit.PASSWORD
RecordingMailer = accounts_kit.RecordingMailer
make_inn = accounts_kit.make_inn
BACKENDS = accounts_kit.BACKENDS


def _load_web_conftest() -> Any:
    """The API tests' response checker (every reply validated against the app's OpenAPI document)."""
    spec = importlib.util.spec_from_file_location("security_web_conftest", HERE.parent / "web" / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


_WEB = _load_web_conftest()
check_reply = _WEB.check_reply
Reply = _WEB.Reply  # status, headers, body; .json, .text, .media_type

_INN12_W11 = (7, 2, 4, 10, 3, 5, 9, 4, 6, 8)
_INN12_W12 = (3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8)


def make_person_inn(rng: random.Random) -> str:
    """A valid 12-digit ИНН of a person (both control digits computed the ФНС way)."""
    digits = [rng.randint(1, 9)] + [rng.randint(0, 9) for _ in range(9)]
    digits.append(sum(d * w for d, w in zip(digits, _INN12_W11, strict=True)) % 11 % 10)
    digits.append(sum(d * w for d, w in zip(digits, _INN12_W12, strict=True)) % 11 % 10)
    return "".join(map(str, digits))


@dataclass
class Side:
    """One object of each kind a path parameter can name, all in one company (or city)."""

    values: dict[str, str] = field(default_factory=dict)  # path placeholder → value

    def __getitem__(self, name: str) -> str:
        return self.values[name]


@dataclass
class World:
    tenant_a: int
    tenant_b: int
    nodes: dict[str, int]
    registers: dict[str, str]
    alerts: dict[str, int]
    users: dict[str, int]
    emails: dict[str, str]
    tokens: dict[str, str]  # user key → API token
    a: Side  # objects of A in Москва (what A's viewer/accountant act on)
    spb: Side  # objects of A in Петербург (outside the Moscow operator's grant)
    b: Side  # objects of B
    b_markers: tuple[str, ...]  # strings only B's data contains
    spb_markers: tuple[str, ...]  # strings only Петербург's data contains


def _alert(conn: sa.Connection, register_id: str) -> int:
    return repo.upsert_alert(
        conn,
        AlertRow(
            register_id=register_id,
            rule="ofd_backlog",
            severity="major",
            status="active",
            started_at=T0 - timedelta(hours=2),
            updated_at=T0 - timedelta(hours=2),
            message=f"backlog on {register_id}",
            details={},
        ),
    )


def _finished_action(conn: sa.Connection, tenant_id: int, register_id: str, agent_id: str) -> str:
    """A finished remote action on the register (what ``GET /api/v1/actions/{action_id}`` reads)."""
    action_id = uuid.uuid4().hex
    conn.execute(sa.insert(register_actions).values(
        id=action_id, tenant_id=tenant_id, register_id=register_id, agent_id=agent_id, action="x_report", args={},
        bulk_id=f"bulk-{action_id}",
        requested_by="seed", requested_at=T0, deadline=T0 + timedelta(minutes=2), status="done", updated_at=T0,
    ))  # fmt: skip
    return action_id


def seed_world(engine: sa.Engine, rng: random.Random) -> World:
    mailer = RecordingMailer()
    service = AccountService(mailer, accounts_kit.FAST_PASSWORDS, AccountSettings())
    cli = Actor.cli()
    tag = rng.randrange(10**6)
    emails = {
        "owner_a": f"owner-a-{tag}@romashka.test",
        "owner_b": f"owner-b-{tag}@lutik.test",
        "viewer": f"viewer-{tag}@romashka.test",
        "accountant": f"accountant-{tag}@romashka.test",
        "moscow_op": f"moscow-{tag}@romashka.test",
    }
    with begin_write(engine) as conn:
        a = service.sign_up(conn, email=emails["owner_a"], password=PASSWORD, company="Ромашка", inn=make_inn(rng), at=T0)
        b = service.sign_up(conn, email=emails["owner_b"], password=PASSWORD, company="Лютик", inn=make_inn(rng), at=T0)
        for key in ("owner_a", "owner_b"):
            service.confirm_email(conn, mailer.last_token(emails[key]), at=T0)
        n: dict[str, int] = {"root_a": a.root_node_id, "root_b": b.root_node_id}
        n["brand"] = create_node(conn, cli, a.tenant_id, parent_id=a.root_node_id, kind="brand", name="Ромашка Маркет", at=T0)
        n["moscow"] = create_node(conn, cli, a.tenant_id, parent_id=n["brand"], kind="city", name="Москва", at=T0)
        n["tverskaya"] = create_node(conn, cli, a.tenant_id, parent_id=n["moscow"], kind="store", name="Тверская 1", at=T0)
        n["arbat"] = create_node(conn, cli, a.tenant_id, parent_id=n["moscow"], kind="store", name="Арбат 5", at=T0)
        n["spb"] = create_node(conn, cli, a.tenant_id, parent_id=n["brand"], kind="city", name="Петербург", at=T0)
        n["nevsky"] = create_node(conn, cli, a.tenant_id, parent_id=n["spb"], kind="store", name="Невский 10", at=T0)
        n["b_store"] = create_node(conn, cli, b.tenant_id, parent_id=b.root_node_id, kind="store", name="Лютик Центр", at=T0)
        owners = {"tverskaya": a.tenant_id, "arbat": a.tenant_id, "nevsky": a.tenant_id, "b_store": b.tenant_id}
        regs = {k: accounts_kit.add_register(conn, t, n[k], f"kkt-{tag}-{k}") for k, t in owners.items()}
        alerts = {k: _alert(conn, r) for k, r in regs.items()}
        for key, tenant in owners.items():
            repo.enroll_agent(conn, f"agent-{tag}-{key}", tenant_id=tenant, node_id=n[key], enrolled_at=T0)
        actions = {k: _finished_action(conn, owners[k], r, f"agent-{tag}-{k}") for k, r in regs.items()}
        users = {"owner_a": a.user_id, "owner_b": b.user_id}
        users["viewer"] = accounts_kit.user_with_role(conn, a.tenant_id, emails["viewer"], Role.VIEWER, a.root_node_id)
        users["accountant"] = accounts_kit.user_with_role(
            conn, a.tenant_id, emails["accountant"], Role.ACCOUNTANT, a.root_node_id
        )
        users["moscow_op"] = accounts_kit.user_with_role(
            conn, a.tenant_id, emails["moscow_op"], Role.OPERATOR, n["moscow"]
        )
        tokens = {key: create_api_token(conn, uid, "security", at=T0).token for key, uid in users.items()}
        spare = {key: create_api_token(conn, users[key], "spare", at=T0).token_id for key in ("owner_a", "owner_b")}

        def company_objects(tenant: int, store: str, label: str) -> dict[str, str]:
            group = create_group(conn, cli, tenant, f"Группа {label}", at=T0)
            grant = grant_role(conn, cli, tenant, group, Role.VIEWER, n[store], at=T0)
            tag_id = create_tag(conn, cli, tenant, f"Метка {label}", at=T0)
            applicant = kep.KepApplicant(
                kep.KepSubject.HEAD, f"Директор {label}", "Генеральный директор", make_person_inn(rng), None,
                f"head-{label}-{tag}@kep.test",
            )
            order = kep.create_order(conn, cli, tenant, applicant, at=T0)
            receiver = create_receiver(
                conn, tenant, ReceiverSpec("email", f"ops-{tag}-{label}@notify.test", None), at=T0
            )
            # A certificate that ran out ten days ago: the company has no valid КЭП, and a КЭП alert.
            conn.execute(sa.insert(kep_certificates).values(
                tenant_id=tenant, serial=f"OLD-{label}", owner_name=f"Директор {label}",
                issued_at=T0 - timedelta(days=375), valid_until=T0 - timedelta(days=10)))
            kep_alerts.sweep(conn, T0, Thresholds())
            company_alert = conn.execute(
                sa.select(account_alerts.c.id).where(account_alerts.c.tenant_id == tenant)).scalar_one()
            return {"{group_id}": str(group), "{grant_id}": str(grant), "{tag_id}": str(tag_id),
                    "{order_id}": str(order), "{receiver_id}": str(receiver), "{company_alert_id}": str(company_alert)}

        a_company = company_objects(a.tenant_id, "tverskaya", "А")
        b_company = company_objects(b.tenant_id, "b_store", "Б")

    def side(store: str, parent: str, company: dict[str, str], token_id: int, member: int) -> Side:
        return Side({
            "{parent_id}": str(n[parent]),  # where a new store may go (bodies only)
            "{register_id}": regs[store],
            "{alert_id}": str(alerts[store]),
            "{action_id}": actions[store],
            "{bulk_id}": f"bulk-{actions[store]}",
            "{action}": "x_report",
            "{node_id}": str(n[store]),
            "{agent_id}": f"agent-{tag}-{store}",
            "{token_id}": str(token_id),
            "{user_id}": str(member),
            **company,
        })

    return World(
        tenant_a=a.tenant_id,
        tenant_b=b.tenant_id,
        nodes=n,
        registers=regs,
        alerts=alerts,
        users=users,
        emails=emails,
        tokens=tokens,
        a=side("tverskaya", "moscow", a_company, spare["owner_a"], users["viewer"]),
        spb=side("nevsky", "spb", a_company, spare["owner_a"], users["viewer"]),
        b=side("b_store", "root_b", b_company, spare["owner_b"], users["owner_b"]),
        b_markers=("Лютик", emails["owner_b"], regs["b_store"], "Группа Б", "Метка Б"),
        spb_markers=("Петербург", "Невский", regs["nevsky"], f"agent-{tag}-nevsky"),
    )


# --- the client ----------------------------------------------------------------------------------


class NullBackend:
    """A broker that accepts every credential change (the enrollment routes need one)."""

    def add_agent(self, agent_id: str, password: str) -> None:
        return None

    def remove_agent(self, agent_id: str) -> None:
        return None


class Client:
    """Calls the real app over loopback as a named user (API token) or anonymously."""

    def __init__(self, loop: asyncio.AbstractEventLoop, client: TestClient, world: World, mailer: RecordingMailer):
        self.loop = loop
        self.client = client
        self.world = world
        self.mailer = mailer
        self.app = client.app
        self.document = openapi_document(client.app)

    def call(self, method: str, path: str, *, who: str | None = None, cookies: dict[str, str] | None = None,
             headers: dict[str, str] | None = None, **kwargs: Any) -> Reply:
        sent = dict(headers or {})
        if who is not None:
            sent["Authorization"] = f"Bearer {self.world.tokens[who]}"
        if cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())

        async def go() -> Reply:
            async with self.client.request(method, path, headers=sent, allow_redirects=False, **kwargs) as response:
                return Reply(response.status, response.headers, await response.read())

        reply = self.loop.run_until_complete(go())
        if path.startswith("/api/"):
            check_reply(self.document, method, path.split("?")[0], reply)
        return reply

    def page_csrf(self, who: str, seed: str = "s" * 24) -> tuple[str, dict[str, str]]:
        """The pages' form token for ``who`` and the seed cookie it is bound to."""
        request = make_mocked_request("GET", "/", headers={"Cookie": f"{SEED_COOKIE}={seed}"})
        request[PRINCIPAL_KEY] = Principal(user=self.world.emails[who], scope=Scope.admin())
        return self.app[CSRF_KEY].token(request), {SEED_COOKIE: seed}


def start_client(engine: sa.Engine, world: World, *, clock_offset: timedelta = timedelta(0),
                 cookie_secure: bool = False) -> Iterator[Client]:
    """A client on a fresh app whose clock stands at ``T0 + clock_offset`` (login failures are
    counted per time window, so tests that fail logins use their own window)."""
    loop = asyncio.new_event_loop()
    mailer = RecordingMailer()
    at = T0 + clock_offset
    service = AccountService(mailer, accounts_kit.FAST_PASSWORDS, AccountSettings(base_url="https://kassa.test"))
    backend: CredentialBackend = NullBackend()
    enrollment = EnrollmentService(engine, backend, broker_url="mqtts://broker.test:8883", clock=lambda: at)
    app = create_app(
        WebSettings(cookie_secure=cookie_secure),
        engine=engine,
        clock=lambda: at,
        account_service=service,
        enrollment=enrollment,
    )
    app[NOTIFY_CHANNELS_KEY] = SendChannels(Renderer("https://kassa.test"), smtp=None)  # as the service sets it

    async def start() -> TestClient:
        # No cookie jar: every test states exactly which cookies it sends.
        client = TestClient(TestServer(app, host="127.0.0.1"), cookie_jar=DummyCookieJar())
        await client.start_server()
        return client

    client = loop.run_until_complete(start())
    try:
        yield Client(loop, client, world, mailer)
    finally:
        loop.run_until_complete(client.close())
        loop.close()


def fresh_site(engine: sa.Engine) -> Iterator[Client]:
    """A client on the full app (pages included) over a fresh two-company world of its own; use as
    ``client = pytest.fixture(kit.fresh_site, name="client")``."""
    yield from start_client(engine, seed_world(engine, random.Random(uuid.uuid4().int)))


def set_cookies(reply: Reply) -> dict[str, str]:
    """Cookie name → the full Set-Cookie line (attributes included)."""
    found: dict[str, str] = {}
    for line in reply.headers.getall("Set-Cookie", []):
        name = line.split("=", 1)[0].strip()
        found[name] = line
    return found


def cookie_value(line: str) -> str:
    return line.split(";", 1)[0].split("=", 1)[1]

