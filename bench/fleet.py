"""A fleet of N agents against the real collector: does it keep up, how fast are alerts, what does it cost.

    .venv/bin/python bench/fleet.py [--agents 50000] [--duration 600] [--db postgresql|sqlite]
                                    [--collectors 1] [--connections 20] [--heartbeat 60]
                                    [--receipts-per-hour 20] [--day 600] [--problems-per-minute 6]

Starts a private Mosquitto, an empty database and ``--collectors`` ``kassa-collector run``
subprocesses (``$share`` when more than one; a single-company install, so the bench's agents are
admitted into «Новые кассы» without enrollment), then speaks the real MQTT contract
(``protocol.mqtt`` models, topics, QoS 1) for ``--agents`` agents with one register each,
multiplexed over ``--connections`` client connections:

* **connect**: every agent's retained ``status`` online and its ``birth`` with the register's
  state (the first contact of a whole fleet); timed until every birth is committed;
* **steady** (``--duration`` s): each agent publishes its state once per ``--heartbeat`` — reason
  ``change`` with the receipts counter and last document number moved on when its shift is open
  and it sold (``--receipts-per-hour``), ``heartbeat`` otherwise; shifts open and close on a
  timetable (each register once per ``--day`` compressed day, the run starting ``--start-of-day``
  into it: a ``shift_opened``/``shift_closed`` event and a ``change`` state at once); ``--problems-per-minute`` agents report an OFD backlog
  21 days old (the ``ofd_backlog`` alert) and the time until the alert row exists is measured.

Every ``--report`` s it prints published and committed msg/s, the backlog (published − committed,
committed read from the collector's durable ack marks, so it holds whatever history the collector
keeps), the broker's stored-message count ($SYS), the collectors' CPU and RSS. At the end: the
sustained rates, whether the collector kept up (backlog flat), alert latency p50/p99, collector
RSS and CPU per message, and database growth per hour extrapolated to a day.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import sqlalchemy as sa
from ingest import (  # bench/ingest.py (sys.path[0] is bench/)
    MOSQUITTO_CONF,
    Collectors,
    database,
    mosquitto,
    percentile,
)
from paho.mqtt.enums import CallbackAPIVersion

from collector.storage import create_engine_from_url
from collector.storage.schema import alerts, ingest_marks
from protocol.kkt.state import FnState, OfdState, RegisterState, ShiftState, ShiftStatus, Vendor
from protocol.mqtt.models import (
    BirthPayload,
    DeviceInfo,
    EventKind,
    EventPayload,
    StatePayload,
    StatusPayload,
    encode,
)
from protocol.mqtt.topics import birth_topic, event_topic, state_topic, status_topic

# As packaging/mosquitto/kassa-prod.conf bounds them: with unbounded in-flight messages Mosquitto
# pushes a whole backlog at a collector that has fallen behind; its full queue then blocks paho's
# thread past the keepalive, the broker drops it, and the backlog comes again (measured: 0 msg/s).
PRODUCTION_LIKE_BROKER = MOSQUITTO_CONF.replace("max_inflight_messages 0", "max_inflight_messages 1000")
SESSION = 1
PROBLEM_BACKLOG = timedelta(days=21)  # past every default threshold of the ofd_backlog rule
ALERT_TIMEOUT = 60.0
REGISTER_UTC_OFFSET = timedelta(hours=3)


@dataclass
class Agent:
    agent_id: str
    register_id: str
    serial: str
    seq: int = -1
    shift_open: bool = False
    shift_number: int = 0
    receipts: int = 0
    documents: int = 1000
    opened_at: datetime | None = None

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def state(self, now: datetime, backlog: timedelta | None = None) -> RegisterState:
        clock = now.replace(tzinfo=None) + REGISTER_UTC_OFFSET
        shift = ShiftState(
            status=ShiftStatus.OPEN if self.shift_open else ShiftStatus.CLOSED,
            number=self.shift_number, receipts=self.receipts, opened_at=self.opened_at,
        )
        return RegisterState(
            vendor=Vendor.SHTRIH, protocol="shtrih", model="ШТРИХ-М-01Ф", serial=self.serial,
            rnm=f"00000{self.serial}", inn="7707083893", firmware="C.1", ffd_version="1.2",
            register_clock=clock, read_at=now, last_fd_number=self.documents, shift=shift,
            fn=FnState(serial=f"99990789{self.serial[-8:]}", phase=3, phase_name="fiscal", fiscal=True,
                       valid_until=(clock + timedelta(days=200)).date(), documents_left=200_000, warning_flags=0),
            ofd=OfdState(unsent_count=3 if backlog else 0, first_unsent_at=clock - backlog if backlog else None,
                         transport_connected=True),
        )  # fmt: skip


class Connections:
    """``count`` paho clients; agent ``n`` publishes through client ``n % count``."""

    def __init__(self, port: int, count: int) -> None:
        self.clients = []
        self.published = 0  # sequenced messages (birth/state/event): what the ack marks count
        for index in range(count):
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fleet-{index}", clean_session=True)
            client.max_inflight_messages_set(1000)
            client.max_queued_messages_set(0)
            client.connect("127.0.0.1", port, keepalive=120)
            client.loop_start()
            self.clients.append(client)

    def publish(self, n: int, topic: str, payload: bytes, *, retain: bool = False, sequenced: bool = True) -> None:
        self.clients[n % len(self.clients)].publish(topic, payload, qos=1, retain=retain)
        self.published += sequenced

    def close(self) -> None:
        for client in self.clients:
            client.disconnect()
            client.loop_stop()


class Fleet:
    def __init__(self, args: argparse.Namespace, connections: Connections) -> None:
        self.args = args
        self.net = connections
        self.agents = [Agent(f"fleet-{n:06d}", f"kkt-fleet-{n:06d}", f"{n:016d}") for n in range(args.agents)]
        self.rng = random.Random(11)
        self.problems: dict[str, float] = {}  # register → perf_counter at publish, until its alert is seen
        self.problem_lock = threading.Lock()
        self.unused_for_problems = list(range(args.agents))
        self.rng.shuffle(self.unused_for_problems)
        self.timetable = self.shift_timetable() if args.day > 0 else []
        # The run starts --start-of-day into the day: the shifts opened before it are open already.
        self.first_change = next(
            (i for i, (at, _) in enumerate(self.timetable) if at >= args.start_of_day * args.day), 0
        )
        for _, n in self.timetable[: self.first_change]:
            agent = self.agents[n]
            agent.shift_open = not agent.shift_open
            agent.shift_number += agent.shift_open
            agent.opened_at = datetime.now(UTC).replace(tzinfo=None) + REGISTER_UTC_OFFSET if agent.shift_open else None

    # --- messages ------------------------------------------------------------------------------

    def publish_state(self, n: int, reason: str, backlog: timedelta | None = None) -> None:
        agent, now = self.agents[n], datetime.now(UTC)
        payload = StatePayload(agent=agent.agent_id, session=SESSION, seq=agent.next_seq(), ts=now,
                               register=agent.register_id, reason=reason, state=agent.state(now, backlog))  # type: ignore[arg-type]
        self.net.publish(n, state_topic(agent.agent_id, agent.register_id), encode(payload))

    def connect(self, n: int) -> None:
        agent, now = self.agents[n], datetime.now(UTC)
        status = StatusPayload(agent=agent.agent_id, session=SESSION, seq=0, ts=now, status="online",
                               agent_version="fleet-bench")
        self.net.publish(n, status_topic(agent.agent_id), encode(status), retain=True, sequenced=False)
        device = DeviceInfo(register_id=agent.register_id, protocol="shtrih", url="/dev/ttyACM0", link_up=True,
                            state=agent.state(now))
        birth = BirthPayload(agent=agent.agent_id, session=SESSION, seq=agent.next_seq(), ts=now,
                             agent_version="fleet-bench", devices=[device])
        self.net.publish(n, birth_topic(agent.agent_id), encode(birth))

    def heartbeat(self, n: int) -> None:
        agent = self.agents[n]
        sold = 0
        if agent.shift_open:
            mean = self.args.receipts_per_hour * self.args.heartbeat / 3600
            sold = self.rng.randint(0, max(0, round(2 * mean)))
        agent.receipts += sold
        agent.documents += sold
        self.publish_state(n, "change" if sold else "heartbeat")

    def shift_change(self, n: int) -> None:
        agent, now = self.agents[n], datetime.now(UTC)
        agent.shift_open = not agent.shift_open
        if agent.shift_open:
            agent.shift_number += 1
            agent.receipts = 0
            agent.opened_at = now.replace(tzinfo=None) + REGISTER_UTC_OFFSET
        agent.documents += 1  # the shift report is a fiscal document too
        kind = EventKind.SHIFT_OPENED if agent.shift_open else EventKind.SHIFT_CLOSED
        event = EventPayload(agent=agent.agent_id, session=SESSION, seq=agent.next_seq(), ts=now,
                             register=agent.register_id, kind=kind,
                             message=f"смена {agent.shift_number} {'открыта' if agent.shift_open else 'закрыта'}")
        self.net.publish(n, event_topic(agent.agent_id, agent.register_id), encode(event))
        self.publish_state(n, "change")

    def problem(self) -> None:
        if not self.unused_for_problems:
            return
        n = self.unused_for_problems.pop()
        register = self.agents[n].register_id
        with self.problem_lock:
            self.problems[register] = time.perf_counter()
        self.publish_state(n, "change", backlog=PROBLEM_BACKLOG)

    # --- the timetable -------------------------------------------------------------------------

    def shift_timetable(self) -> list[tuple[float, int]]:
        """(seconds into the day, agent) for every opening and closing: open for half a day each."""
        day = self.args.day
        entries = []
        for n in range(len(self.agents)):
            opens = self.rng.uniform(0, day / 2)
            entries += [(opens, n), (opens + day / 2, n)]
        return sorted(entries)

    def run(self, duration: float, on_tick: callable) -> None:  # type: ignore[valid-type]
        """Publish the steady mix for ``duration`` seconds, calling ``on_tick(elapsed)`` about every 0.1 s."""
        agents, args = len(self.agents), self.args
        timetable, shift_index = self.timetable, self.first_change
        started = time.monotonic()
        heartbeats_done = problems_done = 0
        day_base = -args.start_of_day * args.day  # timetable times count from the start of the day
        while (elapsed := time.monotonic() - started) < duration:
            for count in range(heartbeats_done, int(elapsed * agents / args.heartbeat)):
                self.heartbeat(count % agents)
            heartbeats_done = max(heartbeats_done, int(elapsed * agents / args.heartbeat))
            while timetable and day_base + timetable[shift_index][0] <= elapsed:
                self.shift_change(timetable[shift_index][1])
                shift_index += 1
                if shift_index == len(timetable):
                    shift_index, day_base = 0, day_base + args.day
            while problems_done < int(elapsed * args.problems_per_minute / 60):
                self.problem()
                problems_done += 1
            on_tick(elapsed)
            time.sleep(0.02)


class Observer:
    """Reads what the collector has done: committed messages, alerts, database size, its processes."""

    def __init__(self, url: str, collectors: Collectors, port: int) -> None:
        self.engine = create_engine_from_url(url)
        self.url = url
        self.collectors = collectors
        self.broker_stored: int | None = None
        self._sys = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fleet-sys", clean_session=True)
        self._sys.on_message = self._on_sys
        self._sys.connect("127.0.0.1", port, keepalive=60)
        self._sys.subscribe("$SYS/broker/store/messages/count")
        self._sys.loop_start()

    def _on_sys(self, _client: object, _userdata: object, message: mqtt.MQTTMessage) -> None:
        self.broker_stored = int(message.payload)

    def committed(self) -> int:
        """Sequenced messages committed: each (agent, session)'s contiguous ack mark + 1."""
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(ingest_marks.c.max_seq + 1), 0))).scalar_one())

    def alerted(self, registers: list[str]) -> set[str]:
        if not registers:
            return set()
        with self.engine.connect() as conn:
            return set(conn.execute(
                sa.select(alerts.c.register_id).where(alerts.c.rule == "ofd_backlog", alerts.c.register_id.in_(registers))
            ).scalars())  # fmt: skip

    def database_bytes(self) -> int:
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect() as conn:
                return int(conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar_one())
        path = Path(self.engine.url.database or "")
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())

    def history_bytes(self) -> int | None:
        """``state_history`` with its day partitions and indexes (PostgreSQL): what the retention
        horizon keeps, unlike the rewritten tables, whose dead row versions autovacuum reuses."""
        if self.engine.dialect.name != "postgresql":
            return None
        with self.engine.connect() as conn:
            return int(conn.execute(sa.text(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
                " WHERE c.oid = 'state_history'::regclass"
                " OR c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'state_history'::regclass)"
            )).scalar_one())  # fmt: skip

    def collector_rss_mb(self) -> list[float]:
        sizes = []
        for process in self.collectors.processes:
            for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    sizes.append(int(line.split()[1]) / 1024)
        return sizes

    def close(self) -> None:
        self._sys.disconnect()
        self._sys.loop_stop()
        self.engine.dispose()


class AlertWatch(threading.Thread):
    """Polls for the alerts of the published problems; records publish → alert row latencies."""

    def __init__(self, fleet: Fleet, observer: Observer) -> None:
        super().__init__(name="alert-watch", daemon=True)
        self.fleet, self.observer = fleet, observer
        self.latencies: list[float] = []
        self.missed = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.1):
            with self.fleet.problem_lock:
                pending = dict(self.fleet.problems)
            seen = self.observer.alerted(list(pending))
            now = time.perf_counter()
            with self.fleet.problem_lock:
                for register, sent in pending.items():
                    if register in seen:
                        self.latencies.append(now - sent)
                    elif now - sent > ALERT_TIMEOUT:
                        self.missed += 1
                    else:
                        continue
                    del self.fleet.problems[register]


def mb(value: float) -> str:
    return f"{value / 1e6:,.0f} MB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=50_000)
    parser.add_argument("--duration", type=float, default=600.0, help="steady phase, seconds")
    parser.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--collectors", type=int, default=1, help="kassa-collector processes ($share when > 1)")
    parser.add_argument("--connections", type=int, default=20, help="MQTT connections the agents share")
    parser.add_argument("--heartbeat", type=float, default=60.0, help="seconds between an agent's states")
    parser.add_argument("--receipts-per-hour", type=float, default=20.0, help="per register while its shift is open")
    parser.add_argument("--day", type=float, default=7200.0,
                        help="compressed day, s: each register opens its shift once in the first half, for half a day (0 = off)")
    parser.add_argument("--start-of-day", type=float, default=0.25, help="where in the day the run starts (0..1)")
    parser.add_argument("--problems-per-minute", type=float, default=6.0)
    parser.add_argument("--keep", action="store_true", help="keep the work directory (collector logs)")
    parser.add_argument("--report", type=float, default=30.0, help="seconds between progress lines")
    args = parser.parse_args()
    if args.collectors < 1:
        parser.error("--collectors must be at least 1")

    keep = Path(tempfile.mkdtemp(prefix="kassa-fleet-")) if args.keep else None
    if keep is not None:
        print(f"collector and broker logs kept in {keep}", flush=True)
    with (nullcontext(str(keep)) if keep else tempfile.TemporaryDirectory(prefix="kassa-fleet-")) as tmp, \
            mosquitto(Path(tmp), PRODUCTION_LIKE_BROKER) as port, \
            database(args.db, Path(tmp)) as url:
        collectors = Collectors(args.collectors, port, url, Path(tmp), all_history=False)  # the deployed history policy
        observer = Observer(url, collectors, port)
        connections = Connections(port, args.connections)
        fleet = Fleet(args, connections)
        try:
            return measure(args, fleet, observer, collectors)
        finally:
            connections.close()
            collectors.stop()
            observer.close()


def measure(args: argparse.Namespace, fleet: Fleet, observer: Observer, collectors: Collectors) -> int:
    print(f"fleet: {args.agents} agents over {args.connections} connections, {args.collectors} collector(s) "
          f"on {args.db}; heartbeat {args.heartbeat:g} s, {args.receipts_per_hour:g} receipts/h, day {args.day:g} s, "
          f"{args.problems_per_minute:g} problems/min; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}", flush=True)
    started = time.perf_counter()
    for n in range(args.agents):
        fleet.connect(n)
    births = fleet.net.published
    while (done := observer.committed()) < births:
        if time.perf_counter() - started > 900:
            print(f"connect: only {done} of {births} births committed after 900 s", flush=True)
            return 1
        time.sleep(0.5)
    connect_s = time.perf_counter() - started
    print(f"connect: {args.agents} statuses + births committed in {connect_s:.1f} s "
          f"({births / connect_s:.0f} births/s)", flush=True)

    watch = AlertWatch(fleet, observer)
    watch.start()
    size_start, cpu_start = observer.database_bytes(), collectors.cpu_seconds() or 0.0
    # History is measured over the second half: in the first, every register's first state after
    # the collector started is kept (reason "first"), once per collector start, not per day.
    history_half: tuple[float, int | None] | None = None
    published_start, committed_start = fleet.net.published, observer.committed()
    samples: list[tuple[float, int, int]] = []  # (elapsed, published, committed)
    next_report = args.report

    def on_tick(elapsed: float) -> None:
        nonlocal next_report, history_half
        if history_half is None and elapsed >= args.duration / 2:
            history_half = (elapsed, observer.history_bytes())
        if elapsed < next_report:
            return
        next_report += args.report
        published, committed = fleet.net.published, observer.committed()
        previous = samples[-1] if samples else (0.0, published_start, committed_start)
        samples.append((elapsed, published, committed))
        span = elapsed - previous[0]
        rss = observer.collector_rss_mb()
        print(f"  {elapsed:5.0f} s  published {(published - previous[1]) / span:6.0f} msg/s  "
              f"committed {(committed - previous[2]) / span:6.0f} msg/s  backlog {published - committed:7d}  "
              f"broker stored {observer.broker_stored}  collector RSS {' + '.join(f'{r:.0f}' for r in rss)} MB  "
              f"alerts {len(watch.latencies)} (missed {watch.missed})", flush=True)

    fleet.run(args.duration, on_tick)
    steady = time.perf_counter() - started - connect_s
    published_end, committed_end = fleet.net.published, observer.committed()
    size_end, cpu_end = observer.database_bytes(), collectors.cpu_seconds() or 0.0
    history_end, history_span = observer.history_bytes(), time.perf_counter() - started - connect_s
    rss = observer.collector_rss_mb()
    drain_started = time.perf_counter()
    while observer.committed() < published_end and time.perf_counter() - drain_started < 300:
        time.sleep(0.5)
    drain = time.perf_counter() - drain_started
    watch.stop.set()
    watch.join(5)

    sent = published_end - published_start
    committed = committed_end - committed_start
    backlogs = [published - done for _, published, done in samples]
    third = backlogs[len(backlogs) // 3] if backlogs else 0
    keeps_up = bool(backlogs) and backlogs[-1] <= max(third * 1.1, sent / steady * 5)  # ≤ 5 s of traffic
    growth_hour = (size_end - size_start) / steady * 3600
    lat = watch.latencies
    print(f"\nsteady {steady:.0f} s: published {sent / steady:.0f} msg/s, committed {committed / steady:.0f} msg/s; "
          f"backlog {backlogs[0] if backlogs else 0} → {backlogs[-1] if backlogs else 0} "
          f"({'keeps up: flat' if keeps_up else 'FALLS BEHIND: growing'}); drained the rest in {drain:.1f} s")
    if lat:
        print(f"alert visible (publish → ofd_backlog row): p50 {percentile(lat, 0.5) * 1000:.0f} ms, "
              f"p99 {percentile(lat, 0.99) * 1000:.0f} ms over {len(lat)} problems ({watch.missed} missed after "
              f"{ALERT_TIMEOUT:.0f} s) [target p50 ≤ 250 ms, p99 ≤ 1 s]")
    else:
        print(f"alert visible: no problem alerted ({watch.missed} missed)")
    print(f"collector: RSS {' + '.join(f'{r:.0f}' for r in rss)} MB; CPU {(cpu_end - cpu_start) / max(committed, 1) * 1e6:.0f} "
          f"µs per committed message ({(cpu_end - cpu_start) / steady * 100:.0f} % of a core)")
    print(f"database: {mb(size_start)} → {mb(size_end)}: {mb(growth_hour)} per hour, {mb(growth_hour * 24)} per day "
          f"at this rate")
    if history_half is not None and history_half[1] is not None and history_end is not None:
        history_hour = (history_end - history_half[1]) / max(history_span - history_half[0], 1.0) * 3600
        print(f"  history (state_history, kept for the retention horizon), second half: {mb(history_hour)} per hour, "
              f"{mb(history_hour * 24)} per day [target ≤ 2 GB/day]; the rest is the rewritten tables' row versions")
    return 0 if keeps_up else 2


if __name__ == "__main__":
    raise SystemExit(main())
