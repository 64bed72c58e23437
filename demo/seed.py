"""Write the demo company into a migrated database: tenant and tree (brand → city → store),
agents enrolled to their stores, registers known before their agents report, tags, OFD
contracts, users with grants and an API token each, and the company head's КЭП, issued through the
order workflow and running out in ``KEP_DAYS_LEFT`` days (so the КЭП alert shows as a warning).

Everything goes through the accounts and storage functions the operator CLI and the web use
(as the CLI actor), in one transaction, so a failure leaves nothing half-made.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa

from collector.accounts import kep
from collector.accounts.audit import Actor
from collector.accounts.contracts import ContractChange, set_contract
from collector.accounts.groups import add_member, create_group, find_group, grant_role
from collector.accounts.passwords import Passwords
from collector.accounts.rights import parse_role
from collector.accounts.service import create_user
from collector.accounts.sessions import create_api_token
from collector.accounts.tree import create_company, create_node, create_tag, set_register_tag
from collector.storage import begin_write
from collector.storage.agents import enroll_agent
from collector.storage.ingest import ensure_register
from collector.storage.rows import RegisterIdentity
from demo.fleet import COMPANY, COMPANY_INN, LEVELS, DemoUser, Fleet

TARIFF = "ОФД «Демо», 12 месяцев"
KEP_DAYS_LEFT = 20
KEP_YEAR = 365 - KEP_DAYS_LEFT  # a one-year certificate issued that long ago
KEP_SERIAL = "7C00DEMO0001"
KEP_HEAD = kep.KepApplicant(
    kep.KepSubject.HEAD, "Иванов Иван Иванович", "Генеральный директор", "500100732259", None, "head@demo.kassa"
)


@dataclass(frozen=True)
class SeededUser:
    user: DemoUser
    user_id: int
    token: str


@dataclass(frozen=True)
class Seeded:
    tenant_id: int
    root_node_id: int
    node_ids: dict[tuple[str, ...], int]  # (brand,), (brand, city), (brand, city, store) → node id
    users: tuple[SeededUser, ...]


def seed(engine: sa.Engine, fleet: Fleet, *, now: datetime, today: date) -> Seeded:
    actor = Actor.cli()
    with begin_write(engine) as conn:
        company = create_company(conn, actor, name=COMPANY, inn=COMPANY_INN, at=now, levels=LEVELS)
        tenant = company.tenant_id
        node_ids = _tree(conn, actor, tenant, company.root_node_id, fleet, now)
        _registers(conn, actor, tenant, node_ids, fleet, now, today)
        users = tuple(_user(conn, actor, tenant, company.root_node_id, node_ids, u, now) for u in fleet.users)
        _kep(conn, actor, tenant, now)
    return Seeded(tenant, company.root_node_id, node_ids, users)


def _kep(conn: sa.Connection, actor: Actor, tenant: int, now: datetime) -> None:
    order = kep.create_order(conn, actor, tenant, KEP_HEAD, at=now - timedelta(days=KEP_YEAR + 7))
    for step in (kep.KepState.DOCUMENTS_REQUESTED, kep.KepState.DOCUMENTS_RECEIVED):
        kep.advance(conn, actor, tenant, order, step, at=now - timedelta(days=KEP_YEAR + 5), documents=["passport"])
    certificate = kep.IssuedCertificate(KEP_SERIAL, KEP_HEAD.full_name, now + timedelta(days=KEP_DAYS_LEFT))
    kep.advance(conn, actor, tenant, order, kep.KepState.ISSUED, at=now - timedelta(days=KEP_YEAR), certificate=certificate)


def _tree(
    conn: sa.Connection, actor: Actor, tenant: int, root: int, fleet: Fleet, now: datetime
) -> dict[tuple[str, ...], int]:
    ids: dict[tuple[str, ...], int] = {}
    for store in fleet.stores:
        brand, city = (store.brand,), (store.brand, store.city)
        if brand not in ids:
            ids[brand] = create_node(conn, actor, tenant, parent_id=root, kind="brand", name=store.brand, at=now)
        if city not in ids:
            ids[city] = create_node(conn, actor, tenant, parent_id=ids[brand], kind="city", name=store.city, at=now)
        ids[(*city, store.name)] = create_node(
            conn, actor, tenant, parent_id=ids[city], kind="store", name=store.name, at=now
        )
    return ids


def _registers(
    conn: sa.Connection,
    actor: Actor,
    tenant: int,
    node_ids: dict[tuple[str, ...], int],
    fleet: Fleet,
    now: datetime,
    today: date,
) -> None:
    tag_ids = {name: create_tag(conn, actor, tenant, name, at=now) for name in fleet.tags}
    for register in fleet.registers:
        store = register.store
        enroll_agent(
            conn,
            register.agent_id,
            tenant_id=tenant,
            node_id=node_ids[(store.brand, store.city, store.name)],
            enrolled_at=now,
        )
        identity = RegisterIdentity(
            register.register_id, register.protocol, register.serial, register.rnm, register.fn_serial
        )
        ensure_register(conn, identity, agent_id=register.agent_id, seen_at=now)
        for tag in register.tags:
            set_register_tag(conn, actor, tenant, register.register_id, tag_ids[tag], on=True, at=now)
        contract = register.contract(today)
        if contract is not None:
            activated, paid_until = contract
            change = ContractChange(activated, paid_until if activated else None, TARIFF)
            set_contract(conn, actor, tenant, register.register_id, change, at=now)


def _user(
    conn: sa.Connection,
    actor: Actor,
    tenant: int,
    root: int,
    node_ids: dict[tuple[str, ...], int],
    user: DemoUser,
    now: datetime,
) -> SeededUser:
    user_id = create_user(
        conn, Passwords(), actor, tenant, email=user.email, password=user.password, at=now, confirmed=True
    )
    group = find_group(conn, tenant, user.group) or create_group(conn, actor, tenant, user.group, at=now)
    node = node_ids[user.scope] if user.scope else root
    grant_role(conn, actor, tenant, group, parse_role(user.role), node, at=now)
    add_member(conn, actor, tenant, group, user_id, at=now)
    token = create_api_token(conn, user_id, "demo", at=now).token
    return SeededUser(user, user_id, token)
