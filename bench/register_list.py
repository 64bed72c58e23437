"""The register list, dashboard counters and tree the pages and the API serve: p50 / p95 per query.

    .venv/bin/python bench/register_list.py [--registers 50000] [--runs 40] [--db sqlite,postgresql]

Seeds one company (4 brands × 5 cities × N stores, ``--registers`` registers with a latest state,
every tenth with an active alert) into an empty database per backend, then times for the whole
company, a one-brand grant and a one-city grant: ``repository.list_registers`` — the query behind
``GET /api/v1/registers`` and the Кассы page, a page of 50 plus the total — first page by time to
block, problems only, a subtree, a digits search (serial / РНМ / ФН) and a store-name search; the
page after 5 000 registers (by cursor where the list issues one, else by offset); the dashboard's
counters and shift summary; the register list's node filter; the tree page's view with its rollups
(the scope's top levels, and one city opened) and the second page of ``GET /api/v1/nodes/rollups``.
Target (issue 11): p95 ≤ 100 ms each.
Also what keeping the register summary costs the writer: refreshing the rows of a 500-register
batch, unchanged and with every verdict changed (rolled back after each run; shown, not held to
the target: no page waits for it). CPU is this thread's plus, on PostgreSQL, the server backend's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collector.storage import begin_write, create_engine_from_url, migrate
from collector.storage import repository as repo
from collector.storage.schema import agents, alerts, nodes, register_state, registers, tenants
from collector.storage.scope import Scope
from collector.web.pages import data as page_data

try:  # the register summary (issue 11); absent when this bench measures an older checkout
    from collector.storage import register_list, register_summary
except ImportError:
    register_list = register_summary = None  # type: ignore[assignment]

PG_URL = os.environ.get("KASSA_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
TARGET_MS = 100.0
BRANDS, CITIES = 4, 5
NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
CITY_NAMES = ("Москва", "Казань", "Новосибирск", "Екатеринбург", "Самара")


@contextmanager
def database(backend: str) -> Iterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/bench.db"
        return
    admin = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
    name = f"kassa_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield PG_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def seed(engine: sa.Engine, count: int) -> tuple[int, int]:
    """The company; returns (tenant id, the first brand's node id)."""
    stores_per_city = max(1, count // (BRANDS * CITIES * 4))  # about four registers per store
    with begin_write(engine) as conn:
        tenant = repo.create_tenant(conn, "ООО Бенч")
        root = repo.create_node(conn, tenant, parent_id=None, kind="company", name="ООО Бенч")
        stores: list[int] = []
        first_brand = 0
        for b in range(BRANDS):
            brand = repo.create_node(conn, tenant, parent_id=root, kind="brand", name=f"Бренд {b + 1}")
            first_brand = first_brand or brand
            for city_name in CITY_NAMES[:CITIES]:
                city = repo.create_node(conn, tenant, parent_id=brand, kind="city", name=city_name)
                for s in range(stores_per_city):
                    stores.append(repo.create_node(
                        conn, tenant, parent_id=city, kind="store", name=f"Магазин №{s + 1} ({city_name})"))
        conn.execute(sa.insert(agents), [
            {"agent_id": f"agent-{i}", "tenant_id": tenant, "node_id": stores[i % len(stores)], "enrolled_at": NOW,
             "online": i % 50 != 0}
            for i in range(count)
        ])
        conn.execute(sa.insert(registers), [
            {"register_id": f"kkt-{i:05d}", "tenant_id": tenant, "node_id": stores[i % len(stores)],
             "agent_id": f"agent-{i}", "protocol": "shtrih" if i % 2 else "atol", "serial": f"{28100000 + i}",
             "rnm": f"{1234567890000000 + i * 7}", "fn_serial": f"{9999078900000000 + i * 3}", "model": "Бенч",
             "first_seen": NOW, "last_seen": NOW}
            for i in range(count)
        ])
        conn.execute(sa.insert(register_state), [
            {"register_id": f"kkt-{i:05d}", "agent_id": f"agent-{i}", "session": 1, "seq": 1, "agent_ts": NOW,
             "received_at": NOW, "state": {"vendor": "shtrih"}, "shift_status": "open" if i % 3 else "closed",
             "unsent_count": i % 40, "fn_valid_until": (NOW + timedelta(days=20 + i % 400)).date(), "link_up": True,
             "blocks_at": NOW + timedelta(days=1 + i % 300), "time_to_block_seconds": 86_400 * (1 + i % 300),
             "worst_severity": "major" if i % 10 == 0 else None, "evaluated_at": NOW,
             "sell_status": "cannot_sell" if i % 100 == 0 else "will_stop", "sell_rank": 0 if i % 100 == 0 else 2}
            for i in range(count)
        ])
        conn.execute(sa.insert(alerts), [
            {"register_id": f"kkt-{i:05d}", "rule": "ofd_backlog", "severity": "major", "status": "active",
             "started_at": NOW, "updated_at": NOW, "message": "backlog", "details": {}}
            for i in range(0, count, 10)
        ])
        if register_summary is not None:  # rows inserted by hand, not through the writer
            register_summary.refresh_all(conn)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")  # what autovacuum does soon after a bulk load
    return tenant, first_brand


def deep_page(conn: sa.Connection, scope: Scope, depth: int) -> Callable[[], Any]:
    """The page after ``depth`` registers: by the cursor the previous page issued, else by offset."""
    if register_list is None:
        return lambda: repo.list_registers(conn, scope, limit=50, offset=depth)
    query = register_list.RegisterQuery()
    cursor = register_list.list_page(conn, scope, query, limit=50, offset=depth - 50).next_cursor
    return lambda: register_list.list_page(conn, scope, query, limit=50, cursor=cursor)


def summary_upkeep(conn: sa.Connection, count: int, *, changed: bool) -> Callable[[], Any]:
    """What the writer adds per batch: recomputing the summary rows of 500 registers (rolled back).
    ``changed``: first every one of them gets a new verdict (that UPDATE is timed too), so every
    row is rewritten and, since issue 11's node totals, every node they are at is recounted."""
    batch = [f"kkt-{i:05d}" for i in range(0, count, max(1, count // 500))][:500]

    def run() -> None:
        transaction = conn.begin_nested() if conn.in_transaction() else conn.begin()
        try:
            if changed:
                conn.execute(
                    sa.update(register_state)
                    .where(register_state.c.register_id.in_(batch))
                    .values(worst_severity="critical", sell_status="cannot_sell", sell_rank=0)
                )
            register_summary.refresh_registers(conn, batch)
        finally:
            transaction.rollback()

    return run


def dashboard(conn: sa.Connection, scope: Scope) -> Any:
    return page_data.problem_counters(conn, scope), page_data.shift_summary(conn, scope)


def tree_queries(conn: sa.Connection, scope: Scope, city: int) -> dict[str, Callable[[], Any]]:
    """The tree page's views (the scope's top, one city opened) and a page of the rollups API; an
    older checkout without views rolls up every node, as its page did."""
    if not hasattr(repo, "view_node_ids"):
        return {"tree": lambda: repo.node_rollups(conn, scope)}

    def api_page() -> Any:
        page, _ = repo.node_page(conn, scope, limit=50, offset=50)
        return repo.node_rollups(conn, scope, node_ids=page)

    return {
        "node options": lambda: page_data.node_options(conn, scope),  # the Кассы page's node filter
        "tree": lambda: page_data.tree(conn, scope),
        "tree: a city": lambda: page_data.tree(conn, scope, top=city),
        "rollups API": api_page,
    }


@dataclass(frozen=True)
class Timing:
    """Wall and CPU milliseconds (p50, p95) of one query. CPU = this thread's plus, on PostgreSQL,
    the server backend's own (``/proc/<pid>/schedstat``, ns): what the query costs whatever else the
    shared machine is running, where wall time also counts waiting for a core."""

    wall: tuple[float, float]
    cpu: tuple[float, float]


def _percentiles(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    return statistics.median(samples), samples[max(0, round(0.95 * len(samples)) - 1)]


def cpu_clock(conn: sa.Connection) -> Callable[[], int]:
    """Nanoseconds of CPU spent by this thread and (PostgreSQL) the connection's server process."""
    if conn.dialect.name != "postgresql":
        return time.thread_time_ns
    stat = Path(f"/proc/{conn.execute(sa.text('SELECT pg_backend_pid()')).scalar_one()}/schedstat")
    return lambda: time.thread_time_ns() + int(stat.read_text().split()[0])


def timed(run: Callable[[], Any], runs: int, cpu: Callable[[], int]) -> Timing:
    run()  # warm the caches and the plan
    walls, cpus = [], []
    for _ in range(runs):
        started, cpu_started = time.perf_counter(), cpu()
        run()
        walls.append((time.perf_counter() - started) * 1000)
        cpus.append((cpu() - cpu_started) / 1e6)
    return Timing(_percentiles(walls), _percentiles(cpus))


def bench(backend: str, count: int, runs: int) -> list[tuple[str, str, Timing]]:
    with database(backend) as url:
        engine = create_engine_from_url(url)
        try:
            migrate(engine)
            tenant, brand = seed(engine, count)
            with engine.connect() as conn:
                city = conn.execute(sa.select(nodes.c.id).where(nodes.c.parent_id == brand).limit(1)).scalar_one()
                assert conn.execute(sa.select(sa.func.count()).select_from(tenants)).scalar_one() == 1
            scopes = {
                "company": Scope.tenant(tenant),
                "one brand": Scope.subtrees(tenant, [brand]),
                "one city": Scope.subtrees(tenant, [city]),
            }
            queries: dict[str, dict[str, Any]] = {
                "first page": {},
                "problems": {"status": "problem"},
                "subtree (city)": {"node_id": city},
                "search digits": {"search": "2810012"},
                "search store": {"search": "магазин №3 (казань"},
            }
            results = []
            with engine.connect() as conn:
                if backend == "postgresql":  # one process per query, so its CPU is all in one backend
                    conn.exec_driver_sql("SET max_parallel_workers_per_gather = 0")
                cpu = cpu_clock(conn)
                for scope_name, scope in scopes.items():
                    for name, filters in queries.items():
                        def run(scope: Scope = scope, filters: dict[str, Any] = filters) -> Any:
                            return repo.list_registers(conn, scope, limit=50, **filters)

                        results.append((scope_name, name, timed(run, runs, cpu)))
                    others: dict[str, Callable[[], Any]] = {
                        "after 5 000": deep_page(conn, scope, 5_000),
                        "dashboard": lambda scope=scope: dashboard(conn, scope),
                        **tree_queries(conn, scope, city),
                    }
                    for name, run in others.items():
                        results.append((scope_name, name, timed(run, runs, cpu)))
                if register_summary is not None:
                    for name, changed in (("upkeep of 500", False), ("500 changed", True)):
                        results.append(("writer", name, timed(summary_upkeep(conn, count, changed=changed), runs, cpu)))
            return results
        finally:
            engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--registers", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--db", default="sqlite,postgresql")
    args = parser.parse_args()
    worst_wall = worst_cpu = 0.0
    for backend in args.db.split(","):
        started = time.perf_counter()
        results = bench(backend, args.registers, args.runs)
        print(f"\n{backend}: {args.registers} registers (seeded and measured in {time.perf_counter() - started:.0f} s)")
        print(f"  {'scope':<10} {'query':<15} {'wall p50':>9} {'wall p95':>9} {'cpu p50':>8} {'cpu p95':>8} {'target':>7}  ms")
        for scope_name, name, timing in results:
            writer = scope_name == "writer"  # a cost per ingest batch, not a query a page waits for
            if not writer:
                worst_wall, worst_cpu = max(worst_wall, timing.wall[1]), max(worst_cpu, timing.cpu[1])
            print(
                f"  {scope_name:<10} {name:<15} {timing.wall[0]:9.1f} {timing.wall[1]:9.1f}"
                f" {timing.cpu[0]:8.1f} {timing.cpu[1]:8.1f} {'—' if writer else f'{TARGET_MS:.0f}':>7}"
            )
    load = os.getloadavg()[0]
    for what, worst in (("CPU", worst_cpu), ("wall", worst_wall)):
        verdict = "meets" if worst <= TARGET_MS else "misses"
        print(f"worst {what} p95 of the reads {worst:.1f} ms — {verdict} the {TARGET_MS:.0f} ms target")
    print(f"(load average {load:.1f} on {os.cpu_count()} cores at the end: wall time includes waiting for a core)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
