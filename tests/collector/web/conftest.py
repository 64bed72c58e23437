"""Fixtures of the API tests: a migrated database per backend (SQLite temp file, and a private
PostgreSQL database dropped at the end — skipped when the server is down, except under ``CI=true``),
a fleet seeded through the storage layer, and a client talking to a real aiohttp server on
loopback that checks every response against the app's own OpenAPI document.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDictProxy

from collector.alerts import OfdContract, RuleInput, Severity, Thresholds, Verdict, evaluate_all, sell_verdict
from collector.ingest.engine import register_evaluation
from collector.storage import Scope, create_engine_from_url, metadata, migrate
from collector.storage import repository as repo
from collector.storage.rows import (
    AlertRow,
    ContractRow,
    EventRow,
    HistoryRow,
    LatestState,
    RegisterIdentity,
)
from collector.web import Authenticator, Principal, StaticTokenAuth, WebSettings, create_app
from collector.web.api.openapi import openapi_document
from protocol.kkt.state import FnState, OfdState, RegisterState, ShiftState, ShiftStatus, Vendor

sys.path.insert(0, str(Path(__file__).parents[2]))  # importlib mode: tests/dbkit.py
import dbkit


def _load_sibling(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"api_tests_{name}", Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


schema_check = _load_sibling("schema_check")

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)  # the app's clock in every test
REGISTER_CLOCK = datetime(2026, 11, 28, 12, 0)  # register local time (UTC+3) at T0
ADMIN_TOKEN = "test-admin-token-0123456789"
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


# --- databases -----------------------------------------------------------------------------------


@pytest.fixture(scope="session", params=BACKENDS)
def db_engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        url_context: Any = _sqlite_url(tmp_path_factory.mktemp("api"))
    else:
        url_context = dbkit.fresh_pg_database("kassa_api")
    with url_context as url:
        engine = create_engine_from_url(url)
        try:
            migrate(engine)
            yield engine
        finally:
            engine.dispose()


@contextmanager
def _sqlite_url(folder: Path) -> Iterator[str]:
    yield f"sqlite:///{folder}/api.db"


# --- the seeded fleet ----------------------------------------------------------------------------


@dataclass
class Fleet:
    """Tenant A: legal → brand → {Москва → Тверская 1, Арбат 5; Санкт-Петербург → Невский 10};
    tenant B: legal → Лютик Центр. One agent and one register per store:

    * tverskaya (shtrih, A): OFD backlog 20 d → critical, blocks in exactly 10 d; online; tag 24/7; contract
    * arbat (atol, A): agent offline (major), a cleared paper_out; nothing threatens a block
    * nevsky (shtrih, A): ФН valid 10 more days (major, blocks in 10 d 12 h); agent up, link down; tag 24/7
    * b_store (atol, B): shift over 24 h (blocked); ФН valid 100 more days
    """

    tenant_a: int = 0
    tenant_b: int = 0
    nodes: dict[str, int] = field(default_factory=dict)
    registers: dict[str, str] = field(default_factory=dict)
    alerts: dict[str, int] = field(default_factory=dict)
    dead_letters: list[int] = field(default_factory=list)
    blocks: dict[str, Verdict] = field(default_factory=dict)  # can it sell, when will it stop


def make_state(
    serial: str,
    vendor: Vendor,
    *,
    backlog_days: int | None = None,
    fn_valid_days: int | None = None,
    shift: ShiftStatus = ShiftStatus.OPEN,
    shift_hours: int = 5,
    unsent: int | None = None,
) -> RegisterState:
    pending = unsent if unsent is not None else (12 if backlog_days else 0)
    return RegisterState(
        vendor=vendor,
        protocol=vendor.value,
        model="ШТРИХ-М-01Ф" if vendor is Vendor.SHTRIH else "АТОЛ 30Ф",
        serial=serial,
        rnm=f"00000{serial}",
        register_clock=REGISTER_CLOCK,
        read_at=T0,
        shift=ShiftState(status=shift, number=41, opened_at=REGISTER_CLOCK - timedelta(hours=shift_hours)),
        fn=FnState(
            serial=f"99960440{serial[-8:]}",
            valid_until=None
            if fn_valid_days is None
            else (REGISTER_CLOCK + timedelta(days=fn_valid_days)).date(),
            warnings=["REPLACE_URGENT"] if fn_valid_days is not None and fn_valid_days < 30 else [],
        ),
        ofd=OfdState(
            unsent_count=pending,
            first_unsent_at=REGISTER_CLOCK - timedelta(days=backlog_days) if backlog_days else None,
        ),
    )


def _add_register(
    conn: sa.Connection,
    fleet: Fleet,
    key: str,
    tenant: int,
    state: RegisterState,
    *,
    online: bool,
    link_up: bool,
    contract: ContractRow | None = None,
) -> str:
    agent_id = f"agent-{key}"
    register_id = state.register_id
    repo.enroll_agent(
        conn, agent_id, tenant_id=tenant, node_id=fleet.nodes[key], enrolled_at=T0 - timedelta(days=90)
    )
    identity = RegisterIdentity(
        register_id,
        state.protocol,
        serial=state.serial,
        rnm=state.rnm,
        fn_serial=state.fn.serial,
        model=state.model,
    )
    repo.ensure_register(conn, identity, agent_id=agent_id, seen_at=T0)
    if contract is not None:
        repo.upsert_contract(
            conn, ContractRow(register_id, contract.activated, contract.paid_until, contract.tariff, T0)
        )
    # Evaluate the verdict with the real rules, as the ingest engine does.
    inp = RuleInput(
        register_id=register_id,
        now=T0,
        state=state,
        state_received_at=T0,
        contract=None if contract is None else OfdContract(contract.activated, contract.paid_until),
    )
    fleet.blocks[key] = sell_verdict(inp, Thresholds(), evaluate_all(inp, Thresholds()))
    latest = LatestState.from_register_state(
        register_id, state, agent_id=agent_id, session=1, seq=10, agent_ts=T0, received_at=T0, link_up=link_up
    )
    assert repo.upsert_latest_state(conn, latest)
    repo.upsert_agent_status(conn, agent_id, online=online, session=1, at=T0)
    fleet.registers[key] = register_id
    return register_id


def _add_alert(
    conn: sa.Connection,
    fleet: Fleet,
    key: str,
    rule: str,
    severity: str,
    *,
    status: str = "active",
    age: timedelta = timedelta(hours=3),
) -> None:
    fleet.alerts[f"{key}:{rule}"] = repo.upsert_alert(
        conn,
        AlertRow(
            register_id=fleet.registers[key],
            rule=rule,
            severity=severity,
            status=status,
            started_at=T0 - age,
            updated_at=T0 - age,
            cleared_at=T0 - timedelta(minutes=5) if status == "cleared" else None,
            message=f"{rule} на {key}",
            details={"seeded": True},
        ),
    )


def _store_worst_severity(conn: sa.Connection, fleet: Fleet) -> None:
    """Store each register's worst active severity beside its time to block, as the alert engine does."""
    ranks = ["info", "warning", "major", "critical", "blocked"]
    for key, register_id in fleet.registers.items():
        active = repo.load_alerts(conn, register_ids=[register_id], status="active")
        worst = max((a.severity for a in active), key=ranks.index, default=None)
        evaluation = register_evaluation(fleet.blocks[key], None if worst is None else Severity.parse(worst), T0)
        assert repo.set_register_evaluation(conn, register_id, evaluation)


def seed_fleet(conn: sa.Connection) -> Fleet:
    fleet = Fleet(
        tenant_a=repo.create_tenant(conn, "Ромашка", created_at=T0),
        tenant_b=repo.create_tenant(conn, "Лютик", created_at=T0),
    )
    a, b, n = fleet.tenant_a, fleet.tenant_b, fleet.nodes
    n["legal"] = repo.create_node(conn, a, parent_id=None, kind="legal", name="ООО Ромашка")
    n["brand"] = repo.create_node(conn, a, parent_id=n["legal"], kind="brand", name="Ромашка Маркет")
    n["moscow"] = repo.create_node(conn, a, parent_id=n["brand"], kind="city", name="Москва")
    n["tverskaya"] = repo.create_node(conn, a, parent_id=n["moscow"], kind="store", name="Тверская 1")
    n["arbat"] = repo.create_node(conn, a, parent_id=n["moscow"], kind="store", name="Арбат 5")
    n["spb"] = repo.create_node(conn, a, parent_id=n["brand"], kind="city", name="Санкт-Петербург")
    n["nevsky"] = repo.create_node(conn, a, parent_id=n["spb"], kind="store", name="Невский 10")
    n["b_legal"] = repo.create_node(conn, b, parent_id=None, kind="legal", name="ООО Лютик")
    n["b_store"] = repo.create_node(conn, b, parent_id=n["b_legal"], kind="store", name="Лютик Центр")

    paid = ContractRow("", True, (T0 + timedelta(days=200)).date(), "год", T0)
    _add_register(
        conn,
        fleet,
        "tverskaya",
        a,
        make_state("0010670001", Vendor.SHTRIH, backlog_days=20, fn_valid_days=300),
        online=True,
        link_up=True,
        contract=paid,
    )
    _add_register(conn, fleet, "arbat", a, make_state("0010670002", Vendor.ATOL), online=False, link_up=True)
    _add_register(
        conn,
        fleet,
        "nevsky",
        a,
        make_state("0010670003", Vendor.SHTRIH, fn_valid_days=10),
        online=True,
        link_up=False,
    )
    _add_register(
        conn,
        fleet,
        "b_store",
        b,
        make_state("0020670004", Vendor.ATOL, fn_valid_days=100, shift=ShiftStatus.EXPIRED, shift_hours=26),
        online=True,
        link_up=True,
    )

    _add_alert(conn, fleet, "tverskaya", "ofd_backlog", "critical", age=timedelta(days=1))
    _add_alert(conn, fleet, "arbat", "agent_offline", "major", age=timedelta(hours=2))
    _add_alert(conn, fleet, "arbat", "paper_out", "warning", status="cleared", age=timedelta(hours=6))
    _add_alert(conn, fleet, "nevsky", "fn_validity", "major", age=timedelta(days=4))
    _add_alert(conn, fleet, "nevsky", "register_unreachable", "major", age=timedelta(minutes=30))
    _add_alert(conn, fleet, "b_store", "shift_too_long", "blocked", age=timedelta(minutes=100))
    _store_worst_severity(conn, fleet)

    tag = repo.create_tag(conn, a, "24/7")
    repo.tag_register(conn, fleet.registers["tverskaya"], tag)
    repo.tag_register(conn, fleet.registers["nevsky"], tag)

    tverskaya = fleet.registers["tverskaya"]
    repo.insert_history(
        conn,
        [
            HistoryRow(
                "agent-tverskaya",
                1,
                seq,
                tverskaya,
                T0 - timedelta(hours=3 - seq),
                T0 - timedelta(hours=3 - seq),
                make_state(
                    "0010670001", Vendor.SHTRIH, backlog_days=20, fn_valid_days=300, unsent=10 + seq
                ).model_dump(mode="json"),
            )
            for seq in range(3)
        ],
    )
    happened = [
        ("shift_opened", 5, {"shift": 41}),
        ("ofd_backlog_started", 4, {}),
        ("link_lost", 1, {"error": "timeout"}),
    ]
    repo.insert_events(
        conn,
        [
            EventRow(
                "agent-tverskaya",
                1,
                seq,
                tverskaya,
                kind,
                T0 - timedelta(hours=hours),
                T0 - timedelta(hours=hours),
                data,
            )
            for seq, (kind, hours, data) in enumerate(happened, start=3)
        ],
    )
    fleet.dead_letters = [
        repo.dead_letter(
            conn,
            f"kassa/v1/agent-x/state/r{i}",
            "invalid_json",
            f"bad #{i}",
            bytes([0, 255, i]),
            received_at=T0 - timedelta(minutes=10 - i),
        )
        for i in range(3)
    ]
    return fleet


@dataclass
class _SeedState:
    fleet: Fleet | None = None
    dirty: bool = True


@pytest.fixture(scope="session")
def _seed_state(db_engine: sa.Engine) -> _SeedState:
    return _SeedState()


@pytest.fixture
def fleet(db_engine: sa.Engine, _seed_state: _SeedState) -> Fleet:
    """The seeded fleet; seeded again only after a test that wrote (see ``mutable_fleet``)."""
    if _seed_state.dirty or _seed_state.fleet is None:
        with db_engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())
            _seed_state.fleet = seed_fleet(conn)
        _seed_state.dirty = False
    return _seed_state.fleet


@pytest.fixture
def mutable_fleet(fleet: Fleet, _seed_state: _SeedState) -> Iterator[Fleet]:
    """For tests that change data: the next test gets a freshly seeded fleet."""
    yield fleet
    _seed_state.dirty = True


# --- the client ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def json(self) -> Any:
        import json

        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8-sig")

    @property
    def media_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";")[0].strip()


def _operation_for(document: dict[str, Any], method: str, path: str) -> dict[str, Any] | None:
    for template, item in document["paths"].items():
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path) and method.lower() in item:
            return item[method.lower()]
    return None


def check_reply(document: dict[str, Any], method: str, path: str, reply: Reply) -> None:
    """The reply's status and media type are documented for its operation and its body validates."""
    operation = _operation_for(document, method, path)
    if operation is None:
        return  # an undocumented route: the tests assert the 404/405 problem themselves
    documented = operation["responses"].get(str(reply.status))
    assert documented is not None, f"{method} {path}: status {reply.status} not in the OpenAPI document"
    content = documented["content"]
    assert reply.media_type in content, (
        f"{method} {path}: {reply.media_type} not documented for {reply.status}"
    )
    if reply.media_type.endswith("json"):
        validator = schema_check.Validator(document["components"]["schemas"])
        validator.validate(reply.json, content[reply.media_type]["schema"])


class ApiClient:
    def __init__(
        self, loop: asyncio.AbstractEventLoop, client: TestClient, document: dict[str, Any], token: str | None
    ) -> None:
        self.loop = loop
        self.client = client
        self.document = document
        self.token = token
        self.app = client.app

    def request(self, method: str, path: str, *, token: str | bool | None = True, **kwargs: Any) -> Reply:
        headers = dict(kwargs.pop("headers", {}) or {})
        bearer = self.token if token is True else token
        if bearer:
            headers.setdefault("Authorization", f"Bearer {bearer}")

        async def go() -> Reply:
            async with self.client.request(method, path, headers=headers, **kwargs) as response:
                return Reply(response.status, response.headers, await response.read())

        reply = self.loop.run_until_complete(go())
        check_reply(self.document, method, path, reply)
        return reply

    def get(self, path: str, **kwargs: Any) -> Reply:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Reply:
        return self.request("POST", path, **kwargs)


MakeApi = Callable[..., ApiClient]


@pytest.fixture
def make_api(db_engine: sa.Engine) -> Iterator[MakeApi]:
    loop = asyncio.new_event_loop()
    clients: list[TestClient] = []

    def make(
        *, authenticator: Authenticator | None = None, token: str | None = ADMIN_TOKEN, **app_kwargs: Any
    ) -> ApiClient:
        app_kwargs.setdefault("engine", db_engine)
        app_kwargs.setdefault("clock", lambda: T0)
        app = create_app(WebSettings(), authenticator=authenticator or StaticTokenAuth(ADMIN_TOKEN), **app_kwargs)

        async def start() -> TestClient:
            client = TestClient(TestServer(app, host="127.0.0.1"))
            await client.start_server()
            return client

        client = loop.run_until_complete(start())
        clients.append(client)
        return ApiClient(loop, client, openapi_document(app), token)

    yield make
    for client in clients:
        loop.run_until_complete(client.close())
    loop.close()


@dataclass(frozen=True)
class FixedPrincipal:
    """Authenticates every request as one principal: stands in for accounts in these tests."""

    principal: Principal

    async def authenticate(self, request: Any) -> Principal | None:
        return self.principal


@pytest.fixture
def make_api_as(make_api: MakeApi) -> Callable[..., ApiClient]:
    def make(scope: Scope, *, action_scope: Scope | None = None, user: str = "operator-moscow") -> ApiClient:
        return make_api(
            authenticator=FixedPrincipal(Principal(user=user, scope=scope, action_scope=action_scope))
        )

    return make


@pytest.fixture
def api(make_api: MakeApi, fleet: Fleet) -> ApiClient:
    return make_api()


@pytest.fixture
def t0() -> datetime:
    return T0


@pytest.fixture
def fn_date() -> Callable[[int], date]:
    return lambda days: (REGISTER_CLOCK + timedelta(days=days)).date()
