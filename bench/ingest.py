"""Collector ingest: sustained committed state messages/s and publish → alert-visible latency.

    .venv/bin/python bench/ingest.py [--messages 20000] [--agents 1000] [--db sqlite,postgresql]
                                     [--collectors 0,1,3] [--probes 40] [--probe-rate 500] [--drain]
                                     [--warmup-rounds 4]

For every database and collector layout it starts a private Mosquitto and an empty database,
then:

1. **throughput** — pre-encodes ``--messages`` realistic ``StatePayload``s for ``--agents``
   virtual agents (distinct (session, seq), one register each), publishes them at QoS 1 as fast
   as one paho client can, and measures from the first publish until every one is committed to
   ``state_history`` (polling the database; the collectors keep every state as history here,
   ``history_sample_minutes=0``, so each message is one row to count — or, with ``--history default``,
   the collector's default history policy, as deployed, and committed messages counted from its
   durable ack marks, exact for one collector only). ``0`` collectors = one collector in this process
   (its metrics show where the time goes); ``N`` = N ``kassa-collector run --shared``
   subprocesses under ``$share/collectors/``. With ``--drain`` (subprocess layouts only) the
   collectors are paused (SIGSTOP) while everything is published and the clock starts when they
   resume: the rate of the collectors alone, without the publisher competing for the same CPUs.
   Before it, ``--warmup-rounds`` messages per agent are published and committed untimed: each
   collector's first message of a register is a full evaluation and a ``first`` history row, and
   under ``$share`` every collector has its own first sight of every register (four rounds cover
   three collectors dealt messages in turn). A running fleet is past that; 0 times it too.
2. **latency** — with a background load of ``--probe-rate`` msg/s, publishes ``--probes``
   states whose oldest unsent document is 21 days old, one at a time, and measures publish →
   the ``ofd_backlog`` alert row being visible in the database (the API reads the same row).

3. **ceiling** — a bare paho client subscribed at QoS 1 to the same topics on the same broker,
   fed the same messages by the same publisher: the rate the collector is compared with
   (``ratio``), and, for subprocess layouts, the collectors' CPU time (all their threads, from
   ``/proc/<pid>/task/*/stat``) per committed message, also split by thread (ingest-writer,
   alert-evaluator, mqtt-loop).

Targets (DESIGN.md §7): collector CPU ≤ 100 µs per committed message and throughput ≥ 0.7 of a
bare client's on the same broker in the same run; state change → alert visible p50 ≤ 250 ms,
p99 ≤ 1 s.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collector.accounts.audit import Actor
from collector.accounts.tree import create_company
from collector.config import CollectorConfig
from collector.gc_tuning import tune_for_ingest
from collector.service import CollectorService
from collector.storage import create_engine_from_url, migrate
from collector.storage.schema import alerts, ingest_marks, state_history, tenants
from protocol.kkt.state import FnState, OfdState, RegisterState, ShiftState, ShiftStatus, Vendor
from protocol.mqtt.models import StatePayload, encode
from protocol.mqtt.topics import COLLECTOR_STATUS_TOPIC, state_topic

PG_URL = os.environ.get("KASSA_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MOSQUITTO_CONF = """\
listener {port} 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 1000000
max_queued_bytes 0
max_inflight_messages 0
message_size_limit 1048576
log_dest file {data}/mosquitto.log
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def mosquitto(workdir: Path, template: str = MOSQUITTO_CONF) -> Iterator[int]:
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(template.format(port=port, data=workdir))
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    process = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("mosquitto did not start") from None
                time.sleep(0.05)
        yield port
    finally:
        process.kill()
        process.wait(5)


@contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{workdir}/bench-{uuid.uuid4().hex[:6]}.db"
        return
    import psycopg
    from psycopg import sql

    name = f"kassa_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield sa.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
        finally:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def realistic_state(serial: str, now: datetime, *, receipts: int, backlog: timedelta | None = None) -> RegisterState:
    clock = now.replace(tzinfo=None) + timedelta(hours=3)
    return RegisterState(
        vendor=Vendor.SHTRIH,
        protocol="shtrih",
        model="ШТРИХ-М-01Ф",
        serial=serial,
        rnm=f"00000{serial}",
        inn="7701234567",
        firmware="C.1",
        ffd_version="1.2",
        register_clock=clock,
        read_at=now,
        last_fd_number=1000 + receipts,
        shift=ShiftState(status=ShiftStatus.OPEN, number=42, receipts=receipts, opened_at=clock - timedelta(hours=5)),
        fn=FnState(
            serial=f"99990789{serial[-8:]}", phase=3, phase_name="fiscal", fiscal=True,
            valid_until=(clock + timedelta(days=200)).date(), documents_left=200_000, warning_flags=0,
        ),
        ofd=OfdState(
            unsent_count=3 if backlog else 0,
            first_unsent_at=clock - backlog if backlog else None,
            transport_connected=True,
        ),
    )


def encode_state(agent: str, register: str, seq: int, state: RegisterState) -> tuple[str, bytes]:
    payload = StatePayload(
        agent=agent, session=1, seq=seq, ts=datetime.now(UTC), register=register, reason="change", state=state
    )
    return state_topic(agent, register), encode(payload)


def load(count: int, agents: int, prefix: str) -> list[tuple[str, bytes]]:
    now = datetime.now(UTC)
    return [
        encode_state(f"{prefix}-{n % agents}", f"kkt-{prefix}-{n % agents}", n // agents,
                     realistic_state(f"{n % agents:016d}", now, receipts=n // agents))
        for n in range(count)
    ]


class Publisher:
    def __init__(self, port: int, client_id: str) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        self.client.max_inflight_messages_set(2000)
        self.client.max_queued_messages_set(0)
        self.client.connect("127.0.0.1", port, keepalive=60)
        self.client.loop_start()

    def publish_all(self, messages: list[tuple[str, bytes]]) -> None:
        infos = [self.client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(120)

    def publish_one(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def bench_company(db_url: str, name: str = "Бенчмарк") -> str:
    engine = create_engine_from_url(db_url)
    try:
        with engine.begin() as conn:
            if conn.execute(sa.select(tenants.c.id).where(tenants.c.name == name)).first() is None:
                create_company(conn, Actor.cli(), name=name, inn="7707083893", at=datetime.now(UTC))
    finally:
        engine.dispose()
    return name


class Collectors:
    """0 = one in-process service; N = N shared-subscription subprocesses."""

    def __init__(self, count: int, port: int, db_url: str, workdir: Path, *, all_history: bool = True) -> None:
        self.count = count
        self.service: CollectorService | None = None
        self.processes: list[subprocess.Popen[bytes]] = []
        broker = f"mqtt://127.0.0.1:{port}"
        migrate(db_url)  # once, before N processes race to do it
        company = bench_company(db_url)  # the bench's agents report without enrollment: a single-company install
        if count == 0:
            config = CollectorConfig(broker_url=broker, db_url=db_url, client_id="bench-inproc", evaluator_period=15,
                                     company=company, **({"history_sample_minutes": 0} if all_history else {}))
            tune_for_ingest()  # as ``kassa-collector run`` does
            self.service = CollectorService(config, serve_web=False)
            self.service.start()
            return
        # Each collector subscribes, then publishes its retained "online" on the same connection, so a
        # live (non-retained) "online" delivery means that collector's subscription is in place.
        online = threading.Semaphore(0)
        watcher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-ready", clean_session=True)
        watcher.on_message = lambda _c, _u, message: None if message.retain else online.release()
        watcher.connect("127.0.0.1", port, keepalive=60)
        subscribed = threading.Event()
        watcher.on_subscribe = lambda *_args: subscribed.set()
        watcher.subscribe(COLLECTOR_STATUS_TOPIC, qos=1)
        watcher.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("the readiness watcher could not subscribe")
        for index in range(count):
            log = (workdir / f"collector-{index}.log").open("ab")
            self.processes.append(subprocess.Popen(
                [sys.executable, "-m", "collector", "run", "--broker", broker, "--db", db_url, "--no-web",
                 "--client-id", f"bench-{index}", "--shared", "--log-level", "WARNING", "--company", company],
                stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parent.parent,
                env=os.environ | ({"KASSA_COLLECTOR_HISTORY_SAMPLE_MINUTES": "0"} if all_history else {}),
            ))
        try:
            for _ in range(count):
                if not online.acquire(timeout=60):
                    raise RuntimeError("a collector did not come online within 60 s (see its log in the workdir)")
        finally:
            watcher.disconnect()
            watcher.loop_stop()

    @property
    def label(self) -> str:
        return "1 in-process" if self.count == 0 else f"{self.count} × subprocess $share"

    def where_time_goes(self) -> str:
        if self.service is None:
            return ""
        metrics = self.service.metrics
        samples = {s.name: s.value for m in metrics.batch_seconds.collect() for s in m.samples}
        rows = {s.name: s.value for m in metrics.batch_rows.collect() for s in m.samples}
        batches = samples.get("kassa_collector_batch_write_seconds_count", 0) or 1
        write_s = samples.get("kassa_collector_batch_write_seconds_sum", 0.0)
        per_batch = rows.get("kassa_collector_batch_messages_sum", 0) / batches
        return (f"batches {int(batches)}, mean {per_batch:.0f} msgs/batch, "
                f"batch validate+write+commit+ack {write_s / batches * 1000:.1f} ms "
                f"({write_s:.2f} s total)")

    def cpu_by_thread(self) -> dict[str, float] | None:
        """CPU seconds per thread name (``comm``: ingest-writer, alert-evaluator, paho's loop …),
        summed over the collector subprocesses, from ``/proc/<pid>/task/*/stat``; None in-process
        (it shares this process with the publisher). A thread that
        ended took its time with it; the process total (``/proc/<pid>/stat``) is kept under
        ``(ended)`` so the sum stays the process's."""
        if not self.processes:
            return None
        ticks: dict[str, int] = {}
        for process in self.processes:
            total = _stat_ticks(Path(f"/proc/{process.pid}/stat"))[1]
            for task in Path(f"/proc/{process.pid}/task").iterdir():
                try:
                    name, used = _stat_ticks(task / "stat")
                except FileNotFoundError:  # the thread ended meanwhile
                    continue
                ticks[name] = ticks.get(name, 0) + used
                total -= used
            ticks["(ended)"] = ticks.get("(ended)", 0) + max(total, 0)
        return {name: used / os.sysconf("SC_CLK_TCK") for name, used in ticks.items()}

    def cpu_seconds(self) -> float | None:
        """CPU seconds of every collector subprocess so far, all threads; None in-process."""
        by_thread = self.cpu_by_thread()
        return None if by_thread is None else sum(by_thread.values())

    def pause(self, paused: bool) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGSTOP if paused else signal.SIGCONT)

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


def _stat_ticks(stat: Path) -> tuple[str, int]:
    """(comm, utime + stime) of a process or thread; ``stat(5)``: the process's own figures (a
    process's ``stat`` sums its threads), fields 14 and 15 after the ``(comm)``."""
    text = stat.read_text()
    name = text[text.index("(") + 1 : text.rindex(")")]
    fields = text.rsplit(")", 1)[1].split()
    return name, int(fields[11]) + int(fields[12])


def count_rows(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def committed_history_rows(engine: sa.Engine) -> int:
    return count_rows(engine, state_history)


def committed_by_marks(engine: sa.Engine) -> int:
    """Messages committed, from the durable ack marks: every agent's seqs start at 0 and one
    collector's marks advance over the contiguous committed prefix."""
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(ingest_marks.c.max_seq + 1), 0))).scalar_one())


def _after_warmup(counted: Callable[[sa.Engine], int], warm: int, engine: sa.Engine) -> int:
    return counted(engine) - warm


def throughput(
    port: int, engine: sa.Engine, messages: list[tuple[str, bytes]], paused: Collectors | None = None,
    committed_count: Callable[[sa.Engine], int] = committed_history_rows,
) -> tuple[float, float]:
    """(committed msgs/s, publish msgs/s); ``paused``: collectors to hold while publishing (drain mode)."""
    publisher = Publisher(port, "bench-load")
    if paused is not None:
        paused.pause(True)
    started = time.perf_counter()
    publisher.publish_all(messages)
    published = time.perf_counter() - started
    if paused is not None:
        started = time.perf_counter()
        paused.pause(False)
    deadline = time.monotonic() + 300
    while committed_count(engine) < len(messages):
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {committed_count(engine)} of {len(messages)} committed")
        time.sleep(0.05)
    committed = time.perf_counter() - started
    publisher.close()
    return len(messages) / committed, len(messages) / published


def latency(port: int, engine: sa.Engine, probes: int, rate: float) -> list[float]:
    """publish → alert row visible, seconds, under a background load of ``rate`` msgs/s."""
    background = load(int(rate * 120), 500, "bg")
    stop = threading.Event()
    loader = Publisher(port, "bench-bg")

    def feed() -> None:
        interval = 1.0 / rate
        next_at = time.perf_counter()
        for topic, payload in background:
            if stop.is_set():
                return
            loader.publish_one(topic, payload)
            next_at += interval
            pause = next_at - time.perf_counter()
            if pause > 0:
                time.sleep(pause)

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    time.sleep(2.0)  # let the background load settle
    prober = Publisher(port, "bench-probe")
    results = []
    now = datetime.now(UTC)
    for n in range(probes):
        register = f"kkt-probe-{n}"
        state = realistic_state(f"{90_000_000 + n:016d}", now, receipts=1, backlog=timedelta(days=21))
        topic, payload = encode_state(f"probe-{n}", register, 0, state)
        sent = time.perf_counter()
        prober.publish_one(topic, payload)
        query = sa.select(alerts.c.id).where(alerts.c.register_id == register, alerts.c.rule == "ofd_backlog")
        while True:
            with engine.connect() as conn:
                if conn.execute(query).first() is not None:
                    break
            if time.perf_counter() - sent > 10:
                raise RuntimeError(f"probe {n}: no alert after 10 s")
            time.sleep(0.005)
        results.append(time.perf_counter() - sent)
        time.sleep(0.05)
    stop.set()
    thread.join(5)
    prober.close()
    loader.close()
    return results


def ceiling(port: int, messages: list[tuple[str, bytes]]) -> float:
    """Messages/s a bare paho client receives at QoS 1 from the same publisher on the same broker."""
    received = 0
    done, subscribed = threading.Event(), threading.Event()

    def on_message(_client: Any, _userdata: Any, _message: Any) -> None:
        nonlocal received
        received += 1
        if received == len(messages):
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-ceiling", clean_session=True)
    client.on_message = on_message
    client.on_subscribe = lambda *_args: subscribed.set()
    client.connect("127.0.0.1", port, keepalive=60)
    client.subscribe("kassa/v1/+/state/+", qos=1)
    client.loop_start()
    try:
        if not subscribed.wait(10):
            raise RuntimeError("the ceiling client could not subscribe")
        publisher = Publisher(port, "bench-ceiling-load")
        started = time.perf_counter()
        publisher.publish_all(messages)
        if not done.wait(300):
            raise RuntimeError(f"the bare client received only {received} of {len(messages)}")
        elapsed = time.perf_counter() - started
        publisher.close()
    finally:
        client.disconnect()
        client.loop_stop()
    return len(messages) / elapsed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--collectors", default="0,1,3", help="0 = in-process; N = N shared subprocesses")
    parser.add_argument("--probes", type=int, default=40)
    parser.add_argument("--probe-rate", type=float, default=500.0, help="background msgs/s during the latency run")
    parser.add_argument("--drain", action="store_true", help="publish first with the collectors paused, then time them alone")
    parser.add_argument("--warmup-rounds", type=int, default=4,
                        help="messages per agent committed untimed first (each collector's first sight of a register)")
    parser.add_argument("--history", choices=["all", "default"], default="all",
                        help="all: every state a history row (counted); default: the deployed policy (one collector)")
    args = parser.parse_args()
    all_history = args.history == "all"
    if not all_history and any(int(c) > 1 for c in args.collectors.split(",")):
        parser.error("--history default counts committed messages from one collector's ack marks: use --collectors 0 or 1")

    print(f"encoding {args.messages} state messages for {args.agents} agents …", flush=True)
    t = time.perf_counter()
    warm_count = args.warmup_rounds * args.agents
    everything = load(warm_count + args.messages, args.agents, "a")  # seqs run on from the warm-up
    warmup, messages = everything[:warm_count], everything[warm_count:]
    encode_us = (time.perf_counter() - t) / len(everything) * 1e6
    print(f"  {encode_us:.0f} µs per message to build+encode (not timed below)")
    rows = []
    for kind in args.db.split(","):
        for layout in (int(c) for c in args.collectors.split(",")):
            with tempfile.TemporaryDirectory(prefix="kassa-bench-") as tmp, mosquitto(Path(tmp)) as port, \
                    database(kind, Path(tmp)) as url:
                bare = ceiling(port, messages)  # same broker, before any collector session exists
                collectors = Collectors(layout, port, url, Path(tmp), all_history=all_history)
                engine = create_engine_from_url(url)
                try:
                    held = collectors if args.drain and layout > 0 else None
                    counted = committed_history_rows if all_history else committed_by_marks
                    if warmup:
                        throughput(port, engine, warmup, None, counted)
                    counter = functools.partial(_after_warmup, counted, len(warmup))
                    threads_before = collectors.cpu_by_thread()
                    committed, published = throughput(port, engine, messages, held, counter)
                    threads_after = collectors.cpu_by_thread()
                    lat = latency(port, engine, args.probes, args.probe_rate) if args.probes and layout <= 1 else []
                    where = collectors.where_time_goes()
                finally:
                    collectors.stop()
                    engine.dispose()
            row: dict[str, Any] = {"db": kind, "collectors": collectors.label, "committed": committed, "published": published,
                                   "ceiling": bare}
            per_thread: dict[str, float] = {}
            if threads_before is not None and threads_after is not None:
                per_thread = {
                    name: (used - threads_before.get(name, 0.0)) / len(messages) * 1e6
                    for name, used in threads_after.items()
                }
                row["cpu_us"] = sum(per_thread.values())
            if lat:
                row.update(p50=percentile(lat, 0.5) * 1000, p99=percentile(lat, 0.99) * 1000)
            rows.append(row)
            print(f"{kind:10} {collectors.label:24} committed {committed:8.0f} msg/s "
                  f"(publisher alone {published:8.0f} msg/s; bare client {bare:8.0f} msg/s, ratio {committed / bare:.2f} "
                  f"[target ≥ 0.7]"
                  + (f"; collector CPU {row['cpu_us']:.0f} µs/msg [target ≤ 100]" if "cpu_us" in row else "") + ")"
                  + (f"  alert visible p50 {row['p50']:.0f} ms p99 {row['p99']:.0f} ms" if lat else ""), flush=True)
            if where:
                print(f"{'':10} {'':24} {where}", flush=True)
            busy = sorted(((us, name) for name, us in per_thread.items() if us >= 1), reverse=True)
            if busy:
                print(f"{'':10} {'':24} CPU µs/msg by thread: " + ", ".join(f"{name} {us:.0f}" for us, name in busy),
                      flush=True)
    print_scaling(rows)
    return 0


def print_scaling(rows: list[dict[str, Any]]) -> None:
    """Per database: CPU per message of N shared collectors against one (target: within 1.1×)."""
    for kind in dict.fromkeys(row["db"] for row in rows):
        measured = {row["collectors"]: row["cpu_us"] for row in rows if row["db"] == kind and "cpu_us" in row}
        single = measured.get("1 × subprocess $share")
        for label, cpu_us in measured.items():
            if single and label != "1 × subprocess $share":
                print(f"{kind:10} {label:24} CPU per message {cpu_us / single:.2f}× one collector's "
                      f"({cpu_us:.0f} vs {single:.0f} µs) [target ≤ 1.1×]", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
