"""Agents nobody enrolled: in a single-company install they appear under «Новые кассы» of the
named company, where its owner sees them and moves them to a store (and they stay there); in a
multi-company install enrollment is enforced by default and the refused agents are listed for the
operator. On SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from collector.accounts.audit import Actor
from collector.accounts.errors import InvalidInput, NotFound, PermissionDenied
from collector.accounts.new_registers import NEW_REGISTERS_KIND, landing_node, place_agent, waiting_agents
from collector.accounts.rights import Role, can_see
from collector.accounts.tree import create_company, create_node
from collector.cli import main
from collector.config import CollectorConfigError, load_config
from collector.ingest.batcher import IngestWriter, WriterSettings
from collector.service import check_company
from collector.storage import create_engine_from_url, migrate
from collector.storage import repository as repo
from collector.storage.refused_agents import refused_agents
from collector.storage.schema import agents, nodes, registers

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: the helpers next to us
import accounts_testkit as accounts_kit
import ingest_testkit as kit

engine = kit.engine  # a fresh migrated database per test, SQLite and PostgreSQL


def writer(engine: sa.Engine, **settings: object) -> IngestWriter:
    return IngestWriter(engine, kit.FakeDownlink(), settings=WriterSettings(**settings))  # type: ignore[arg-type]


def company_with_store(engine: sa.Engine, name: str = "Продукты у дома") -> tuple[int, int, int]:
    """(tenant, root, store) of a new company with one store."""
    cli = Actor.cli()
    with engine.begin() as conn:
        made = create_company(conn, cli, name=name, inn=accounts_kit.make_inn(), at=kit.T0)
        store = create_node(conn, cli, made.tenant_id, parent_id=made.root_node_id, kind="store",
                            name="Тверская 1", at=kit.T0)
    return made.tenant_id, made.root_node_id, store


def node_of(engine: sa.Engine, table: sa.Table, column: sa.Column, key: str) -> int | None:
    with engine.connect() as conn:
        return conn.execute(sa.select(table.c.node_id).where(column == key)).scalar_one()


# --- which install is which ----------------------------------------------------------------------


def test_enrollment_is_enforced_unless_the_config_names_a_company() -> None:
    assert load_config(None, env={}).enrollment_enforced is True
    single = load_config(None, env={"KASSA_COLLECTOR_COMPANY": " Продукты  у дома "})
    assert single.company == "Продукты у дома" and single.enrollment_enforced is False
    assert load_config(None, env={}, overrides={"company": "X", "enforce_enrollment": True}).enrollment_enforced
    with pytest.raises(CollectorConfigError, match="needs company"):
        load_config(None, env={}, overrides={"enforce_enrollment": False})


def test_a_company_that_does_not_exist_stops_the_start_naming_the_fix(engine: sa.Engine) -> None:
    with pytest.raises(CollectorConfigError, match=r"no company named .Нет такой.*tenant create"):
        check_company(engine, "Нет такой", "Новые кассы")


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[sa.Engine]:
    with kit.database_url("sqlite", tmp_path) as url:
        eng = create_engine_from_url(url)
        migrate(eng)
        try:
            yield eng
        finally:
            eng.dispose()


def test_the_start_check_waits_for_another_collectors_write_instead_of_dying(sqlite_engine: sa.Engine) -> None:
    """SQLite (the write lock of one file): another collector's writer holds the file while this one
    starts and creates «Новые кассы». A deferred transaction read first, then found its snapshot
    stale when the other committed: "database is locked" at once, and the collector died at start."""
    engine = sqlite_engine
    company_with_store(engine)
    other = sqlite3.connect(engine.url.database, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("UPDATE nodes SET name = name")  # the other writer is mid-batch
    failure: list[BaseException] = []

    def start() -> None:
        try:
            check_company(engine, "Продукты у дома", "Новые кассы")
        except BaseException as exc:  # the test reports it below
            failure.append(exc)

    starting = threading.Thread(target=start)
    starting.start()
    time.sleep(0.5)  # this collector has started its transaction and waits for the lock
    other.execute("COMMIT")
    other.close()
    starting.join(30)
    assert failure == [] and not starting.is_alive()
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).where(nodes.c.kind == NEW_REGISTERS_KIND)).scalar_one() == 1


# --- single company: «Новые кассы» ---------------------------------------------------------------


def test_an_unenrolled_agent_appears_under_new_registers_of_the_named_company(engine: sa.Engine) -> None:
    tenant, root, _store = company_with_store(engine)
    writer(engine, company="Продукты у дома").process(kit.batch(kit.state_msg("agent-new", "kkt-1", 1, 1)))
    with engine.connect() as conn:
        landing = conn.execute(sa.select(nodes).where(nodes.c.kind == NEW_REGISTERS_KIND)).one()
        assert (landing.tenant_id, landing.parent_id, landing.name) == (tenant, root, "Новые кассы")
        reg = conn.execute(sa.select(registers).where(registers.c.register_id == "kkt-1")).one()
        assert (reg.tenant_id, reg.node_id) == (tenant, landing.id)
        owner = accounts_kit.user_with_role(conn, tenant, "owner@pud.test", Role.OWNER, root)
        assert can_see(conn, owner, "kkt-1")  # a real, visible place
        waiting = waiting_agents(conn, tenant)
        assert [(w.agent_id, w.registers) for w in waiting] == [("agent-new", (reg.serial or "kkt-1",))]
        conn.rollback()


def test_the_owner_moves_a_new_agent_to_a_store_and_its_registers_stay_there(engine: sa.Engine) -> None:
    tenant, root, store = company_with_store(engine)
    writer(engine, company="Продукты у дома").process(kit.batch(kit.state_msg("agent-new", "kkt-1", 1, 1)))
    with engine.begin() as conn:
        owner = accounts_kit.user_with_role(conn, tenant, "owner@pud.test", Role.OWNER, root)
        viewer = accounts_kit.user_with_role(conn, tenant, "viewer@pud.test", Role.VIEWER, root)
        with pytest.raises(PermissionDenied):
            place_agent(conn, Actor.user(conn, viewer), tenant, "agent-new", store, at=kit.T0)
        with pytest.raises(InvalidInput, match="не магазин"):
            place_agent(conn, Actor.user(conn, owner), tenant, "agent-new", root, at=kit.T0)
        place_agent(conn, Actor.user(conn, owner), tenant, "agent-new", store, at=kit.T0)
        assert waiting_agents(conn, tenant) == []
    # A new process (nothing cached) re-reads the register's identity: it stays in the store.
    writer(engine, company="Продукты у дома").process(kit.batch(kit.state_msg("agent-new", "kkt-1", 1, 2)))
    assert node_of(engine, registers, registers.c.register_id, "kkt-1") == store
    assert node_of(engine, agents, agents.c.agent_id, "agent-new") == store


def test_another_company_cannot_see_or_move_the_new_agent(engine: sa.Engine) -> None:
    tenant, _root, _ = company_with_store(engine)
    other, other_root, other_store = company_with_store(engine, "Лютик")
    writer(engine, company="Продукты у дома").process(kit.batch(kit.state_msg("agent-new", "kkt-1", 1, 1)))
    with engine.begin() as conn:
        stranger = accounts_kit.user_with_role(conn, other, "owner@lutik.test", Role.OWNER, other_root)
        assert not can_see(conn, stranger, "kkt-1")
        with pytest.raises(NotFound):
            place_agent(conn, Actor.user(conn, stranger), other, "agent-new", other_store, at=kit.T0)
        assert landing_node(conn, "Продукты у дома").tenant_id == tenant


# --- multi-company: refused agents for the operator ----------------------------------------------


def test_refused_agents_are_listed_until_enrolled(engine: sa.Engine) -> None:
    tenant, _root, store = company_with_store(engine)
    enforced = writer(engine, enforce_enrollment=True)
    enforced.process(kit.batch(kit.state_msg("stranger", "kkt-9", 1, 1), kit.state_msg("stranger", "kkt-9", 1, 2)))
    with engine.begin() as conn:
        repo.enroll_agent(conn, "gone", tenant_id=tenant, node_id=store, enrolled_at=kit.T0)
        repo.revoke_agent(conn, "gone")
    writer(engine, enforce_enrollment=True).process(kit.batch(kit.state_msg("gone", "kkt-5", 1, 1)))
    with engine.connect() as conn:
        listed = {a.agent_id: a for a in refused_agents(conn)}
        assert set(listed) == {"stranger", "gone"}
        assert (listed["stranger"].reason, listed["stranger"].messages, listed["stranger"].tenant_id) == (
            "unknown_agent", 2, None)
        assert (listed["gone"].reason, listed["gone"].tenant_id) == ("agent_revoked", tenant)
        assert [a.agent_id for a in refused_agents(conn, tenant_id=tenant)] == ["gone"]
    with engine.begin() as conn:
        repo.enroll_agent(conn, "stranger", tenant_id=tenant, node_id=store, enrolled_at=kit.T0)
    with engine.connect() as conn:
        assert [a.agent_id for a in refused_agents(conn)] == ["gone"]


def test_the_operator_cli_lists_refused_agents_and_places_new_ones(
    engine: sa.Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    url = engine.url.render_as_string(hide_password=False)
    assert main(["agents", "refused", "--db", url]) == 0
    assert "no agent is refused" in capsys.readouterr().out
    writer(engine, enforce_enrollment=True).process(kit.batch(kit.state_msg("stranger", "kkt-9", 1, 1)))
    assert main(["agents", "refused", "--db", url]) == 0
    assert "stranger: not enrolled, 1 messages" in capsys.readouterr().out

    _tenant, _root, store = company_with_store(engine)
    writer(engine, company="Продукты у дома").process(kit.batch(kit.state_msg("agent-new", "kkt-1", 1, 1)))
    assert main(["agents", "place", "--db", url, "--agent", "agent-new", "--node", str(store)]) == 0
    assert node_of(engine, registers, registers.c.register_id, "kkt-1") == store
    assert main(["agents", "place", "--db", url, "--agent", "nobody", "--node", str(store)]) == 1
    assert "no agent 'nobody'" in capsys.readouterr().err
