"""History that fits: bytes a day of state history for a 50 000-register fleet on PostgreSQL, the
insert rate of a day partition against the rate rows arrive, and the time to drop a day.

    .venv/bin/python bench/history_size.py [--sample 300] [--fleet 50000] [--slice 200000]

1. For ``--sample`` registers and each mix, a day of polls (one a minute) goes through the agent's
   publishing policy (agent/runtime/publish_policy.py: what is published) and the collector's
   history policy (collector/ingest/history_policy.py: what is kept); the kept rows are written
   with the writer's own insert (slim documents, partitioned table, duplicate check) into a fresh
   database at head. Bytes per row = size of the day's partitions (heap + TOAST + indexes) / rows;
   × rows per register-day × ``--fleet`` = bytes a day. Mixes: ``idle`` (shift 09–21, no sales:
   a heartbeat a minute) and ``busy`` (a sale a minute while open, the unsent count moving, the
   backlog crossing 10 once, a lost link once). Ceiling: 2 GB/day (issue 11); the same run also
   stores full documents the pre-policy way (every state, unpartitioned table of revision 0013)
   for the baseline.
2. ``--slice`` rows of one day (unthinned shape: one state a minute for many registers) inserted
   in batches of 500 through the writer's insert: rows/s vs the 833 rows/s a 50 000-register
   fleet publishes (72 M a day), and vs the rate of kept rows.
3. That day, filled server-side to a busy fleet's day of kept rows, dropped by retention
   (``partitions.drop_days_before``): milliseconds.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.runtime.publish_policy import PublishPolicy
from collector.ingest import bulk
from collector.ingest.history_keeper import HistoryKeeper
from collector.ingest.history_policy import HistoryPolicy, history_document
from collector.storage import begin_write, create_engine_from_url, migrate
from collector.storage.partitions import day_partitions, drop_days_before, maintain
from collector.storage.rows import HistoryRow, JsonText, RegisterIdentity
from protocol.kkt.state import FnState, OfdState, RegisterState, ShiftState, ShiftStatus, Vendor
from protocol.mqtt import wire

PG_URL = os.environ.get("KASSA_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
CEILING_BYTES = 2 * 10**9
DAY = date(2026, 12, 1)
START = datetime.combine(DAY, datetime.min.time(), tzinfo=UTC)
BATCH = 500
MINUTES = 24 * 60


@contextmanager
def database() -> Iterator[sa.Engine]:
    admin = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
    name = f"kassa_hist_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine = create_engine_from_url(PG_URL.rsplit("/", 1)[0] + f"/{name}")
    try:
        migrate(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def poll(index: int, minute: int, busy: bool) -> RegisterState:
    """Register ``index``'s state at ``minute`` of the day."""
    open_now = 9 * 60 <= minute < 21 * 60
    sales = max(0, min(minute, 21 * 60) - 9 * 60) if busy else 0
    unsent = (1 + (minute + index) % 7 + (10 if minute >= 12 * 60 else 0)) if busy and open_now else 0
    clock = datetime.combine(DAY, datetime.min.time()) + timedelta(minutes=minute, hours=3)
    return RegisterState(
        vendor=Vendor.SHTRIH, protocol="shtrih", model="ШТРИХ-М-01Ф", serial=f"{index:014d}", rnm=f"{index:016d}",
        inn="7701234567", firmware="A4.2", ffd_version="1.2", register_clock=clock, read_at=START + timedelta(minutes=minute),
        last_fd_number=1000 + sales,
        shift=ShiftState(status=ShiftStatus.OPEN if open_now else ShiftStatus.CLOSED, number=42, receipts=sales,
                         opened_at=clock.replace(hour=12, minute=0) if open_now else None),
        fn=FnState(serial=f"99990{index:011d}", phase=3, phase_name="fiscal", fiscal=True, valid_until=date(2027, 9, 1),
                   registrations_left=29, registrations_done=1, documents_left=240_000, free_memory_kb=512,
                   warning_flags=0, firmware="fn-1.1"),
        ofd=OfdState(unsent_count=unsent, first_unsent_number=1000 + sales - unsent if unsent else None,
                     first_unsent_at=clock - timedelta(minutes=unsent) if unsent else None, transport_connected=True,
                     message_waiting=bool(unsent), awaiting_receipt=False, response_timeout=False, autonomous=False,
                     server_host="ofd.example.ru", server_port=21101),
    )  # fmt: skip


def simulate(index: int, busy: bool, agents: PublishPolicy, keeper: HistoryKeeper) -> tuple[int, list[HistoryRow]]:
    """A day of one poll a minute: (states published, history rows kept)."""
    register, agent = f"kkt-{index}", f"agent-{index}"
    published: wire.RegisterState | None = None
    last_publish, sent, kept = -10**9, 0, []
    for minute in range(MINUTES):
        state = poll(index, minute, busy)
        agent_view = wire.decode_as(wire.RegisterState, state.model_dump_json().encode())  # the agent's type
        if busy and minute == 15 * 60 + index % 60:
            keeper.link_lost(register)  # a link_lost event, then the link comes back
        if agents.decide(published, agent_view, forced=False, since_publish=(minute - last_publish) * 60.0) is None:
            continue
        published, last_publish, sent = agent_view, minute, sent + 1
        at = START + timedelta(minutes=minute, seconds=index % 60)
        reason = keeper.keep(register, agent, state, at)
        if reason is not None:
            kept.append(HistoryRow(agent, 1, minute, register, at, at, JsonText(history_document(state)), reason))
    return sent, kept


def seed(engine: sa.Engine, count: int) -> None:
    with begin_write(engine) as conn:
        tenant = conn.exec_driver_sql("INSERT INTO tenants (name, created_at) VALUES ('Сеть', now()) RETURNING id").scalar_one()
        node = conn.exec_driver_sql(
            "INSERT INTO nodes (tenant_id, kind, name, path) VALUES (%(t)s, 'store', 'Магазин', '/') RETURNING id", {"t": tenant}
        ).scalar_one()
        bulk.enroll_agents(conn, [f"agent-{i}" for i in range(count)], tenant_id=tenant, node_id=node, enrolled_at=START)
        bulk.ensure_registers(conn, [(RegisterIdentity(f"kkt-{i}", "shtrih"), f"agent-{i}", START) for i in range(count)])
        maintain(conn, DAY, days_ahead=0)  # the simulated day's partition (migrate made today's)


def partition_bytes(conn: sa.Connection, table: str, day: date) -> int:
    name = day_partitions(conn, table)[day]
    return int(conn.exec_driver_sql(f"SELECT pg_total_relation_size('{name}')").scalar_one())


def insert(engine: sa.Engine, rows: list[HistoryRow]) -> float:
    """Seconds to insert ``rows`` in writer-sized batches, one transaction each."""
    started = time.perf_counter()
    for i in range(0, len(rows), BATCH):
        with begin_write(engine) as conn:
            bulk.insert_history(conn, rows[i : i + BATCH])
    return time.perf_counter() - started


def baseline_bytes_per_row(engine: sa.Engine, count: int) -> float:
    """Every state, full document, in revision 0013's unpartitioned table with its four indexes."""
    with begin_write(engine) as conn:
        conn.exec_driver_sql(
            "CREATE TABLE baseline (id bigserial PRIMARY KEY, agent_id varchar(100) NOT NULL, session bigint NOT NULL,"
            " seq bigint NOT NULL, register_id varchar(100) NOT NULL, ts timestamptz NOT NULL,"
            " received_at timestamptz NOT NULL, state jsonb NOT NULL, UNIQUE (agent_id, session, seq))"
        )
        for columns in ("register_id, ts", "ts", "received_at"):
            conn.exec_driver_sql(f"CREATE INDEX ON baseline ({columns})")
        rows = [
            {"a": f"agent-{i % 300}", "q": i, "r": f"kkt-{i % 300}", "t": START + timedelta(seconds=i),
             "s": poll(i % 300, (i // 300) % MINUTES, True).model_dump_json()}
            for i in range(count)
        ]  # fmt: skip
        conn.exec_driver_sql(
            "INSERT INTO baseline (agent_id, session, seq, register_id, ts, received_at, state)"
            " VALUES (%(a)s, 1, %(q)s, %(r)s, %(t)s, %(t)s, %(s)s::jsonb)", rows
        )
        conn.exec_driver_sql("ANALYZE baseline")
        return int(conn.exec_driver_sql("SELECT pg_total_relation_size('baseline')").scalar_one()) / count


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=300, help="registers simulated per mix")
    parser.add_argument("--fleet", type=int, default=50_000)
    parser.add_argument("--slice", type=int, default=200_000, help="rows inserted for the insert-rate figure")
    args = parser.parse_args()
    arrival_unthinned = args.fleet * MINUTES / 86_400
    print(f"history size bench: {args.sample} registers simulated per mix, fleet {args.fleet}, PostgreSQL")
    with database() as engine:
        base = baseline_bytes_per_row(engine, 20_000)
        print(f"  baseline (every state, full document, revision 0013 table): {base:,.0f} B/row,"
              f" {base * arrival_unthinned * 86_400 / 1e9:,.1f} GB/day")  # fmt: skip
        kept_per_day = 0.0
        for mix, busy in (("idle", False), ("busy", True)):
            with database() as db:
                seed(db, args.sample)
                keeper, agents = HistoryKeeper(HistoryPolicy()), PublishPolicy()
                sent, rows = 0, []
                for index in range(args.sample):
                    published, kept = simulate(index, busy, agents, keeper)
                    sent += published
                    rows += kept
                insert(db, rows)
                with db.connect() as conn:
                    conn.exec_driver_sql("ANALYZE state_history")
                    size = partition_bytes(conn, "state_history", DAY)
            per_row = size / len(rows)
            rows_per_register = len(rows) / args.sample
            per_day = per_row * rows_per_register * args.fleet
            kept_per_day = max(kept_per_day, rows_per_register * args.fleet)
            verdict = "OK" if per_day <= CEILING_BYTES else "OVER"
            print(f"  {mix}: {sent / args.sample:,.0f} states published and {rows_per_register:,.1f} rows kept per register-day;"
                  f" {per_row:,.0f} B/row → {per_day / 1e9:,.2f} GB/day for {args.fleet} registers"
                  f" (ceiling {CEILING_BYTES / 1e9:.0f} GB/day, {per_day / CEILING_BYTES:.2f} of it) {verdict}")  # fmt: skip
        slice_rows = [
            HistoryRow(f"agent-{i % 2000}", 1, i, f"kkt-{i % 2000}", START + timedelta(seconds=i * 86_400 / args.slice),
                       START + timedelta(seconds=i * 86_400 / args.slice),
                       JsonText(history_document(poll(i % 2000, (i * MINUTES) // args.slice, True))), "sample")
            for i in range(args.slice)
        ]  # fmt: skip
        seed(engine, 2000)
        cpu0 = cpu_seconds()
        seconds = insert(engine, slice_rows)
        cpu = cpu_seconds() - cpu0
        rate = args.slice / seconds
        print(f"  insert of a day partition: {args.slice:,} rows in {seconds:.1f} s = {rate:,.0f} rows/s"
              f" (client CPU {cpu / args.slice * 1e6:.0f} µs/row); arrival {arrival_unthinned:,.0f} rows/s unthinned"
              f" ({rate / arrival_unthinned:.1f}× room), {kept_per_day / 86_400:,.0f} rows/s kept"
              f" ({rate / (kept_per_day / 86_400):.0f}× room)")  # fmt: skip
        with begin_write(engine) as conn:  # fill the day up to a busy fleet's day, server-side
            copies = max(0, round(kept_per_day / args.slice) - 1)
            partition = day_partitions(conn, "state_history")[DAY]
            conn.exec_driver_sql(
                "INSERT INTO state_history (agent_id, session, seq, register_id, ts, received_at, state, reason)"
                f" SELECT agent_id, session + g, seq, register_id, ts, received_at, state, reason FROM {partition},"
                f" generate_series(1, {copies}) AS g"
            )
            conn.exec_driver_sql(f"ANALYZE {partition}")  # what autovacuum did long before the day reaches the horizon
        with engine.connect() as conn:
            size = partition_bytes(conn, "state_history", DAY)
        started = time.perf_counter()
        with begin_write(engine) as conn:
            dropped = drop_days_before(conn, "state_history", START + timedelta(days=1))
        drop_ms = (time.perf_counter() - started) * 1000
        print(f"  retention drop of that day filled to a busy fleet's day (~{dropped:,} rows, {size / 1e6:,.0f} MB):"
              f" {drop_ms:,.0f} ms (ceiling 1 000 ms)")


if __name__ == "__main__":
    main()
