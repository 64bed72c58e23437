"""Storage fixtures: every test runs on SQLite (temp file) and on the real PostgreSQL.

PostgreSQL: a fresh database per test session, dropped at the end. When the server is not
reachable the PostgreSQL half is skipped, except under ``CI=true`` where that is a failure.
Each test gets a connection inside a transaction that is rolled back afterwards.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from collector.storage import create_engine_from_url, migrate
from collector.storage import repository as repo
from collector.storage.rows import AlertRow, LatestState, RegisterEvaluation, RegisterIdentity
from protocol.kkt.state import FnState, OfdState, RegisterState, ShiftState, ShiftStatus, Vendor

sys.path.insert(0, str(Path(__file__).parents[2]))  # importlib mode: tests/dbkit.py
import dbkit

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


@contextmanager
def empty_database(backend: str, tmp_dir: os.PathLike[str]) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{os.fspath(tmp_dir)}/{uuid.uuid4().hex[:8]}.db"
    else:
        with dbkit.fresh_pg_database("kassa_storage") as url:
            yield url


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def engine(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[sa.Engine]:
    with empty_database(backend, tmp_path_factory.mktemp("storage")) as url:
        eng = create_engine_from_url(url)
        try:
            migrate(eng)
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


def register_state(
    serial: str, *, unsent: int = 0, fn_valid_until: date | None = None, shift: ShiftStatus = ShiftStatus.OPEN
) -> RegisterState:
    clock = datetime(2026, 11, 28, 12, 0)
    return RegisterState(
        vendor=Vendor.SHTRIH,
        protocol="shtrih",
        serial=serial,
        rnm=f"000{serial}",
        register_clock=clock,
        read_at=T0,
        shift=ShiftState(status=shift, number=7),
        fn=FnState(serial=f"99990789{serial}", valid_until=fn_valid_until),
        ofd=OfdState(unsent_count=unsent, first_unsent_at=clock - timedelta(days=3) if unsent else None),
    )


@dataclass
class Fleet:
    """Two tenants. Tenant A: legal entity → brand → {Moscow → 2 stores, St Petersburg → 1 store};
    tenant B: legal entity → 1 store. One agent and one register per store."""

    tenant_a: int
    tenant_b: int
    nodes: dict[str, int] = field(default_factory=dict)
    registers: dict[str, str] = field(default_factory=dict)
    alerts: dict[str, int] = field(default_factory=dict)


def _add_register(
    conn: sa.Connection,
    fleet: Fleet,
    key: str,
    tenant: int,
    store: str,
    serial: str,
    *,
    severity: str | None,
    blocks_in: timedelta | None,
    seq: int = 1,
) -> None:
    agent_id = f"agent-{key}"
    repo.enroll_agent(conn, agent_id, tenant_id=tenant, node_id=fleet.nodes[store], enrolled_at=T0)
    state = register_state(serial, unsent=3 if severity else 0, fn_valid_until=date(2027, 6, 1))
    register_id = state.register_id
    repo.ensure_register(
        conn,
        RegisterIdentity(
            register_id, "shtrih", serial=state.serial, rnm=state.rnm, fn_serial=state.fn.serial
        ),
        agent_id=agent_id,
        seen_at=T0,
    )
    evaluation = RegisterEvaluation(
        worst_severity=severity,
        time_to_block_seconds=None if blocks_in is None else int(blocks_in.total_seconds()),
        blocks_at=None if blocks_in is None else T0 + blocks_in,
        evaluated_at=T0,
    )
    latest = LatestState.from_register_state(
        register_id,
        state,
        agent_id=agent_id,
        session=1,
        seq=seq,
        agent_ts=T0,
        received_at=T0,
        link_up=True,
        evaluation=evaluation,
    )
    assert repo.upsert_latest_state(conn, latest)
    repo.upsert_agent_status(conn, agent_id, online=True, session=1, at=T0)
    fleet.registers[key] = register_id


def build_fleet(conn: sa.Connection) -> Fleet:
    fleet = Fleet(
        tenant_a=repo.create_tenant(conn, "Ромашка", created_at=T0),
        tenant_b=repo.create_tenant(conn, "Лютик", created_at=T0),
    )
    a, b, n = fleet.tenant_a, fleet.tenant_b, fleet.nodes
    n["legal"] = repo.create_node(conn, a, parent_id=None, kind="legal", name="ООО Ромашка")
    n["brand"] = repo.create_node(conn, a, parent_id=n["legal"], kind="brand", name="Ромашка Маркет")
    n["moscow"] = repo.create_node(conn, a, parent_id=n["brand"], kind="city", name="Москва")
    n["tverskaya"] = repo.create_node(conn, a, parent_id=n["moscow"], kind="store", name="Тверская 1")
    n["arbat"] = repo.create_node(conn, a, parent_id=n["moscow"], kind="store", name="АРБАТ 5")
    n["spb"] = repo.create_node(conn, a, parent_id=n["brand"], kind="city", name="Санкт-Петербург")
    n["nevsky"] = repo.create_node(conn, a, parent_id=n["spb"], kind="store", name="Невский 10")
    n["b_legal"] = repo.create_node(conn, b, parent_id=None, kind="legal", name="ООО Лютик")
    n["b_store"] = repo.create_node(conn, b, parent_id=n["b_legal"], kind="store", name="Лютик Центр")

    _add_register(
        conn, fleet, "tverskaya", a, "tverskaya", "1001", severity="critical", blocks_in=timedelta(days=2)
    )
    _add_register(conn, fleet, "arbat", a, "arbat", "1002", severity=None, blocks_in=None)
    _add_register(conn, fleet, "nevsky", a, "nevsky", "1003", severity="major", blocks_in=timedelta(days=10))
    _add_register(
        conn, fleet, "b_store", b, "b_store", "2001", severity="blocked", blocks_in=timedelta(days=1)
    )
    repo.upsert_agent_status(conn, "agent-arbat", online=False, session=1, at=T0)

    def alert(key: str, rule: str, severity: str, status: str = "active") -> None:
        fleet.alerts[f"{key}:{rule}"] = repo.upsert_alert(
            conn,
            AlertRow(
                register_id=fleet.registers[key],
                rule=rule,
                severity=severity,
                status=status,
                started_at=T0,
                updated_at=T0,
                message=f"{rule} on {key}",
            ),
        )

    alert("tverskaya", "ofd_backlog", "critical")
    alert("nevsky", "fn_validity", "major")
    alert("b_store", "shift_too_long", "blocked")
    alert("arbat", "paper_out", "warning", status="cleared")

    round_the_clock = repo.create_tag(conn, a, "24/7")
    repo.tag_register(conn, fleet.registers["tverskaya"], round_the_clock)
    repo.tag_register(conn, fleet.registers["nevsky"], round_the_clock)
    return fleet


@pytest.fixture
def fleet(conn: sa.Connection) -> Fleet:
    return build_fleet(conn)


@pytest.fixture
def count_rows(conn: sa.Connection) -> Callable[[sa.Table], int]:
    def count(table: sa.Table) -> int:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())

    return count


@pytest.fixture
def make_state() -> Callable[..., RegisterState]:
    return register_state


@pytest.fixture
def empty_database_url(backend: str, tmp_path: os.PathLike[str]) -> Iterator[str]:
    """A database that has never been migrated, on the current backend."""
    with empty_database(backend, tmp_path) as url:
        yield url
