"""A seeded fleet and an app factory for the page tests and the browser tests (loaded by path:
pytest runs with --import-mode=importlib).

Everything is written through the storage layer, and each register's time to block is
evaluated with the real rules, as the ingest engine does. Times are relative to ``now`` so the
browser (which uses the real clock for countdowns) and the server agree.

Tenant "Ромашка": ООО Ромашка → Москва → {Тверская 1, Арбат 5}; → Санкт-Петербург → {Невский 10}.
Tenant "Лютик": ООО Лютик → Казань → Баумана 3.

* tverskaya-1 (shtrih): OFD backlog 20 days → ofd_backlog critical, blocks in 10 days; contract paid
* tverskaya-2 (atol): shift open 26 h → shift_too_long blocked; paper out → paper_out warning
* arbat (atol): agent offline → agent_offline major; shift closed
* nevsky-1 (shtrih): ФН valid 10 more days → fn_validity major; link down → register_unreachable major; tag 24/7
* nevsky-2 (shtrih): OFD paid until yesterday → ofd_contract critical (already blocked); tag 24/7
* kazan (atol, other tenant): ФН memory flag → fn_memory major
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from aiohttp import web

from collector.alerts import OfdContract, RuleInput, Severity, Thresholds, evaluate_all, sell_verdict
from collector.ingest.engine import register_evaluation
from collector.storage import create_engine_from_url, metadata, migrate
from collector.storage import repository as repo
from collector.storage.rows import (
    AlertRow,
    ContractRow,
    EventRow,
    HistoryRow,
    LatestState,
    RegisterIdentity,
)
from collector.storage.scope import Scope
from collector.web import Authenticator, Principal, WebSettings, create_app
from collector.web.pages import add_page_routes
from collector.web.pages.sse import EventHub
from protocol.kkt.state import DeviceState, FnState, OfdState, RegisterState, ShiftState, ShiftStatus, Vendor

MOSCOW = ZoneInfo("Europe/Moscow")
SEVERITY_ORDER = ("info", "warning", "major", "critical", "blocked")


@dataclass
class PagesFleet:
    now: datetime
    tenant_a: int = 0
    tenant_b: int = 0
    nodes: dict[str, int] = field(default_factory=dict)
    registers: dict[str, str] = field(default_factory=dict)  # key → register id
    alerts: dict[str, int] = field(default_factory=dict)  # "key:rule" → alert id


def register_clock(now: datetime) -> datetime:
    """Register-local wall clock (Moscow) at ``now``."""
    return now.astimezone(MOSCOW).replace(tzinfo=None, microsecond=0)


def make_state(
    serial: str,
    vendor: Vendor,
    now: datetime,
    *,
    backlog_days: float | None = None,
    unsent: int | None = None,
    fn_valid_days: int = 300,
    shift: ShiftStatus = ShiftStatus.OPEN,
    shift_hours: float = 5,
    paper: bool = True,
    memory_flag: bool = False,
) -> RegisterState:
    clock = register_clock(now)
    count = unsent if unsent is not None else (7 if backlog_days else 0)
    return RegisterState(
        vendor=vendor,
        protocol=vendor.value,
        model="ШТРИХ-М-01Ф" if vendor is Vendor.SHTRIH else "АТОЛ 30Ф",
        serial=serial,
        rnm=f"000{serial}",
        ffd_version="1.05",
        register_clock=clock,
        read_at=now,
        shift=ShiftState(
            status=shift, number=41, receipts=17, opened_at=clock - timedelta(hours=shift_hours)
        ),
        fn=FnState(
            serial=f"9996044{serial[-9:]}",
            phase=3,
            fiscal=True,
            valid_until=(clock + timedelta(days=fn_valid_days)).date(),
            warnings=["MEMORY_ALMOST_FULL"] if memory_flag else [],
        ),
        ofd=OfdState(
            unsent_count=count,
            first_unsent_at=clock - timedelta(days=backlog_days) if backlog_days else None,
        ),
        device=DeviceState(paper_present=paper, cover_open=False),
    )


def _add_register(
    conn: sa.Connection,
    fleet: PagesFleet,
    key: str,
    node: str,
    tenant: int,
    state: RegisterState,
    *,
    online: bool = True,
    link_up: bool = True,
    contract: tuple[bool, int] | None = None,  # (activated, paid-until in days from today)
) -> str:
    now = fleet.now
    agent_id = f"agent-{key}"
    register_id = state.register_id
    repo.enroll_agent(
        conn, agent_id, tenant_id=tenant, node_id=fleet.nodes[node], enrolled_at=now - timedelta(days=90)
    )
    repo.ensure_register(
        conn,
        RegisterIdentity(
            register_id,
            state.protocol,
            serial=state.serial,
            rnm=state.rnm,
            fn_serial=state.fn.serial,
            model=state.model,
        ),
        agent_id=agent_id,
        seen_at=now,
    )
    ofd_contract = None
    if contract is not None:
        paid_until = (register_clock(now) + timedelta(days=contract[1])).date()
        repo.upsert_contract(conn, ContractRow(register_id, contract[0], paid_until, "год", now))
        ofd_contract = OfdContract(contract[0], paid_until)
    latest = LatestState.from_register_state(
        register_id,
        state,
        agent_id=agent_id,
        session=1,
        seq=10,
        agent_ts=now,
        received_at=now,
        link_up=link_up,
    )
    assert repo.upsert_latest_state(conn, latest)
    repo.upsert_agent_status(conn, agent_id, online=online, session=1, at=now)
    inp = RuleInput(register_id=register_id, now=now, state=state, state_received_at=now, contract=ofd_contract, tz=MOSCOW)
    fleet.registers[key] = register_id
    conn.info.setdefault("pages_verdicts", {})[register_id] = sell_verdict(inp, Thresholds(), evaluate_all(inp, Thresholds()))
    return register_id


def _add_alert(
    conn: sa.Connection,
    fleet: PagesFleet,
    key: str,
    rule: str,
    severity: str,
    *,
    status: str = "active",
    hours: float = 3,
) -> None:
    now = fleet.now
    fleet.alerts[f"{key}:{rule}"] = repo.upsert_alert(
        conn,
        AlertRow(
            register_id=fleet.registers[key],
            rule=rule,
            severity=severity,
            status=status,
            started_at=now - timedelta(hours=hours),
            updated_at=now - timedelta(hours=hours),
            cleared_at=now - timedelta(minutes=5) if status == "cleared" else None,
            message=f"{rule} ({key})",
            details={},
        ),
    )


def store_evaluations(conn: sa.Connection, fleet: PagesFleet) -> None:
    """Worst active severity and time to block per register, as the alert engine stores them."""
    verdicts = conn.info.get("pages_verdicts", {})
    for register_id in fleet.registers.values():
        active = repo.load_alerts(conn, register_ids=[register_id], status="active")
        worst = max((alert.severity for alert in active), key=SEVERITY_ORDER.index, default=None)
        evaluation = register_evaluation(verdicts[register_id], None if worst is None else Severity.parse(worst), fleet.now)
        assert repo.set_register_evaluation(conn, register_id, evaluation)


def seed_pages_fleet(conn: sa.Connection, now: datetime) -> PagesFleet:
    fleet = PagesFleet(now=now)
    fleet.tenant_a = repo.create_tenant(conn, "Ромашка", created_at=now)
    fleet.tenant_b = repo.create_tenant(conn, "Лютик", created_at=now)
    a, b, n = fleet.tenant_a, fleet.tenant_b, fleet.nodes
    n["legal"] = repo.create_node(conn, a, parent_id=None, kind="юрлицо", name="ООО Ромашка")
    n["moscow"] = repo.create_node(conn, a, parent_id=n["legal"], kind="город", name="Москва")
    n["tverskaya"] = repo.create_node(conn, a, parent_id=n["moscow"], kind="магазин", name="Тверская 1")
    n["arbat"] = repo.create_node(conn, a, parent_id=n["moscow"], kind="магазин", name="Арбат 5")
    n["spb"] = repo.create_node(conn, a, parent_id=n["legal"], kind="город", name="Санкт-Петербург")
    n["nevsky"] = repo.create_node(conn, a, parent_id=n["spb"], kind="магазин", name="Невский 10")
    n["b_legal"] = repo.create_node(conn, b, parent_id=None, kind="юрлицо", name="ООО Лютик")
    n["kazan"] = repo.create_node(conn, b, parent_id=n["b_legal"], kind="город", name="Казань")
    n["bauman"] = repo.create_node(conn, b, parent_id=n["kazan"], kind="магазин", name="Баумана 3")

    shtrih, atol = Vendor.SHTRIH, Vendor.ATOL
    _add_register(
        conn,
        fleet,
        "tverskaya-1",
        "tverskaya",
        a,
        make_state("0010670001", shtrih, now, backlog_days=20),
        contract=(True, 200),
    )
    _add_register(
        conn,
        fleet,
        "tverskaya-2",
        "tverskaya",
        a,
        make_state("0010670002", atol, now, shift=ShiftStatus.EXPIRED, shift_hours=26, paper=False),
    )
    _add_register(
        conn,
        fleet,
        "arbat",
        "arbat",
        a,
        make_state("0010670003", atol, now, shift=ShiftStatus.CLOSED),
        online=False,
    )
    _add_register(
        conn,
        fleet,
        "nevsky-1",
        "nevsky",
        a,
        make_state("0010670004", shtrih, now, fn_valid_days=10),
        link_up=False,
    )
    _add_register(
        conn, fleet, "nevsky-2", "nevsky", a, make_state("0010670005", shtrih, now), contract=(True, -1)
    )
    _add_register(conn, fleet, "kazan", "bauman", b, make_state("0020670006", atol, now, memory_flag=True))

    _add_alert(conn, fleet, "tverskaya-1", "ofd_backlog", "critical", hours=30)
    _add_alert(conn, fleet, "tverskaya-2", "shift_too_long", "blocked", hours=2)
    _add_alert(conn, fleet, "tverskaya-2", "paper_out", "warning", hours=1)
    _add_alert(conn, fleet, "arbat", "agent_offline", "major", hours=2)
    _add_alert(conn, fleet, "arbat", "cover_open", "warning", status="cleared", hours=6)
    _add_alert(conn, fleet, "nevsky-1", "fn_validity", "major", hours=96)
    _add_alert(conn, fleet, "nevsky-1", "register_unreachable", "major", hours=0.5)
    _add_alert(conn, fleet, "nevsky-2", "ofd_contract", "critical", hours=20)
    _add_alert(conn, fleet, "kazan", "fn_memory", "major", hours=10)
    store_evaluations(conn, fleet)

    tag = repo.create_tag(conn, a, "24/7")
    repo.tag_register(conn, fleet.registers["nevsky-1"], tag)
    repo.tag_register(conn, fleet.registers["nevsky-2"], tag)

    first = fleet.registers["tverskaya-1"]
    repo.insert_history(
        conn,
        [
            HistoryRow(
                "agent-tverskaya-1",
                1,
                seq,
                first,
                now - timedelta(hours=12 - seq),
                now - timedelta(hours=12 - seq),
                make_state(
                    "0010670001",
                    shtrih,
                    now - timedelta(hours=12 - seq),
                    backlog_days=20,
                    unsent=2 + seq,
                    shift=ShiftStatus.OPEN if seq % 4 else ShiftStatus.CLOSED,
                ).model_dump(mode="json"),
            )
            for seq in range(10)
        ],
    )
    repo.insert_events(
        conn,
        [
            EventRow(
                "agent-tverskaya-1",
                1,
                seq,
                first,
                kind,
                now - timedelta(hours=hours),
                now - timedelta(hours=hours),
                {},
            )
            for seq, kind, hours in ((20, "shift_opened", 5), (21, "link_lost", 1))
        ],
    )
    return fleet


FIXED_NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)  # the app's clock in the page tests


@pytest.fixture(scope="module")
def module_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sa.Engine]:
    made = create_engine_from_url(f"sqlite:///{tmp_path_factory.mktemp('pages')}/pages.db")
    migrate(made)
    yield made
    made.dispose()


@pytest.fixture
def seeded_fleet(engine: sa.Engine) -> PagesFleet:
    """The fleet at ``FIXED_NOW`` in a clean database (test modules expose these as engine/fleet)."""
    with engine.begin() as conn:
        reset_database(conn)
        return seed_pages_fleet(conn, FIXED_NOW)


def reset_database(conn: sa.Connection) -> None:
    for table in reversed(metadata.sorted_tables):
        conn.execute(table.delete())


@dataclass(frozen=True)
class FixedPrincipal:
    """An authenticator that makes every caller one principal (scope tests swap it)."""

    principal: Principal

    async def authenticate(self, request: web.Request) -> Principal | None:
        return self.principal


def admin() -> Authenticator:
    return FixedPrincipal(Principal(user="оператор", scope=Scope.admin()))


def build_app(
    engine: sa.Engine,
    *,
    authenticator: Authenticator | None = None,
    clock: Callable[[], datetime] | None = None,
    hub: EventHub | None = None,
    heartbeat_seconds: float = 15.0,
) -> web.Application:
    """``create_app`` plus the pages, as the lead wires them."""
    extra: dict[str, Any] = {} if clock is None else {"clock": clock}
    app = create_app(WebSettings(), engine=engine, authenticator=authenticator or admin(), pages=False, **extra)
    add_page_routes(app, hub=hub, heartbeat_seconds=heartbeat_seconds)
    return app


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
