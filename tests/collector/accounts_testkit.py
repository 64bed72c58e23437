"""Shared fixtures of the accounts tests (imported by path: pytest runs with --import-mode=importlib).

Every test runs on SQLite (temp file) and on the real PostgreSQL (a fresh database per module,
via ``ingest_testkit.database_url``; unreachable PostgreSQL skips, except under ``CI=true``).
``conn`` is a transaction rolled back after the test; ``engine`` is for code that commits.
"""

from __future__ import annotations

import random
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from collector.accounts.audit import Actor
from collector.accounts.groups import add_member, create_group, grant_role
from collector.accounts.passwords import FAST_TEST_COST, Passwords
from collector.accounts.rights import Role
from collector.accounts.service import AccountService, AccountSettings, SignUp, create_user
from collector.accounts.tree import create_node
from collector.storage import create_engine_from_url, migrate, register_summary
from collector.storage.schema import registers

sys.path.insert(0, str(Path(__file__).parent))
import ingest_testkit

# What ``from accounts_testkit import *`` brings into a test module: the fixtures.
__all__ = ["conn", "engine", "mailer", "service", "world"]

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
FAST_PASSWORDS = Passwords(FAST_TEST_COST)
BACKENDS = ingest_testkit.BACKENDS
_INN10_WEIGHTS = (2, 4, 10, 3, 5, 9, 4, 6, 8)


def make_inn(rng: random.Random | None = None) -> str:
    """A fresh valid 10-digit ИНН (the control digit computed the ФНС way)."""
    body = [(rng or random).randint(1, 9)] + [(rng or random).randint(0, 9) for _ in range(8)]
    control = sum(d * w for d, w in zip(body, _INN10_WEIGHTS, strict=True)) % 11 % 10
    return "".join(map(str, body)) + str(control)


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    text: str


@dataclass
class RecordingMailer:
    sent: list[Mail] = field(default_factory=list)

    def send(self, to: str, subject: str, text: str) -> None:
        self.sent.append(Mail(to, subject, text))

    def last_token(self, to: str) -> str:
        for mail in reversed(self.sent):
            if mail.to == to:
                found = re.search(r"token=([A-Za-z0-9_\-]+)", mail.text)
                assert found, mail.text
                return found.group(1)
        raise AssertionError(f"no mail to {to}")


@pytest.fixture(scope="module", params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[sa.Engine]:
    with ingest_testkit.database_url(request.param, tmp_path_factory.mktemp("accounts")) as url:
        eng = create_engine_from_url(url)
        try:
            migrate(eng, "heads")
            yield eng
        finally:
            eng.dispose()


@pytest.fixture
def conn(engine: sa.Engine) -> Iterator[sa.Connection]:
    with engine.connect() as connection:
        transaction = connection.begin()
        try:
            yield connection
        finally:
            transaction.rollback()


@pytest.fixture
def mailer() -> RecordingMailer:
    return RecordingMailer()


@pytest.fixture
def service(mailer: RecordingMailer) -> AccountService:
    return AccountService(mailer, FAST_PASSWORDS, AccountSettings(base_url="https://kassa.test"))


@dataclass
class World:
    """Tenant A (Ромашка): root → brand → {Москва → Тверская, Арбат; Петербург → Невский};
    tenant B (Лютик): root → Центр. One register per store; each tenant has its owner."""

    a: SignUp
    b: SignUp
    nodes: dict[str, int]
    registers: dict[str, str]


def add_register(conn: sa.Connection, tenant_id: int, node_id: int | None, register_id: str) -> str:
    conn.execute(
        sa.insert(registers).values(
            register_id=register_id,
            tenant_id=tenant_id,
            node_id=node_id,
            protocol="shtrih",
            first_seen=T0,
            last_seen=T0,
        )
    )
    register_summary.refresh_registers(conn, [register_id])  # inserted by hand, not through the writer
    return register_id


def build_world(conn: sa.Connection, service: AccountService) -> World:
    a = service.sign_up(
        conn, email="owner@romashka.test", password=PASSWORD, company="Ромашка", inn=make_inn(), at=T0
    )
    b = service.sign_up(
        conn, email="owner@lutik.test", password=PASSWORD, company="Лютик", inn=make_inn(), at=T0
    )
    cli = Actor.cli()
    n: dict[str, int] = {}
    n["brand"] = create_node(
        conn, cli, a.tenant_id, parent_id=a.root_node_id, kind="brand", name="Ромашка Маркет", at=T0
    )
    n["moscow"] = create_node(conn, cli, a.tenant_id, parent_id=n["brand"], kind="city", name="Москва", at=T0)
    n["tverskaya"] = create_node(
        conn, cli, a.tenant_id, parent_id=n["moscow"], kind="store", name="Тверская 1", at=T0
    )
    n["arbat"] = create_node(
        conn, cli, a.tenant_id, parent_id=n["moscow"], kind="store", name="Арбат 5", at=T0
    )
    n["spb"] = create_node(conn, cli, a.tenant_id, parent_id=n["brand"], kind="city", name="Петербург", at=T0)
    n["nevsky"] = create_node(
        conn, cli, a.tenant_id, parent_id=n["spb"], kind="store", name="Невский 10", at=T0
    )
    n["b_store"] = create_node(
        conn, cli, b.tenant_id, parent_id=b.root_node_id, kind="store", name="Центр", at=T0
    )
    regs = {
        key: add_register(conn, tenant, n[key], f"kkt-{key}")
        for key, tenant in (
            ("tverskaya", a.tenant_id),
            ("arbat", a.tenant_id),
            ("nevsky", a.tenant_id),
            ("b_store", b.tenant_id),
        )
    }
    return World(a, b, n, regs)


def user_with_role(conn: sa.Connection, tenant_id: int, email: str, role: Role, node_id: int) -> int:
    """A confirmed user in a group of its own holding ``role`` on ``node_id``."""
    cli = Actor.cli()
    user_id = create_user(
        conn, FAST_PASSWORDS, cli, tenant_id, email=email, password=PASSWORD, at=T0, confirmed=True
    )
    group = create_group(conn, cli, tenant_id, f"{role.value} of {node_id} ({email})", at=T0)
    grant_role(conn, cli, tenant_id, group, role, node_id, at=T0)
    add_member(conn, cli, tenant_id, group, user_id, at=T0)
    return user_id


@pytest.fixture
def world(conn: sa.Connection, service: AccountService) -> World:
    return build_world(conn, service)
