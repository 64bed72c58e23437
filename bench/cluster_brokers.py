"""Clustered brokers with the agents' real traffic: which one, and what the collectors do on it.

    .venv/bin/python bench/cluster_brokers.py [--messages 20000] [--agents 200]
                                              [--parts brokers,collectors,failover,memory] [--no-rabbitmq]

Parts (each starts what it needs on free loopback ports and removes it afterwards):

* **brokers** — a 3-node NATS cluster (JetStream + MQTT gateway) and a 3-node RabbitMQ cluster
  (rabbitmq_mqtt, quorum queues): ``--messages`` realistic state messages published at MQTT QoS 1
  over ``--publishers`` connections spread over the nodes, read by 1, 2 and 3 bare competing consumers in their own processes on nodes 1..3
  (NATS: one durable pull consumer, explicit ack; RabbitMQ: a quorum queue bound to ``amq.topic``,
  prefetch 500, manual ack). Figure: messages acked per second, publish start → last ack.
* **collectors** — ``kassa-collector run`` processes (1, 2, 3) on PostgreSQL, on the NATS cluster
  vs on one Mosquitto under ``$share``, same messages, same run. Collectors are paused (SIGSTOP)
  while everything is published and the clock starts when they resume, so the figure is the
  collectors' own rate: committed messages/s and their CPU per message (from /proc).
* **failover** — 12 real agent runtimes spread over the 3 NATS nodes, 2 collectors; node 1 killed
  -9: seconds until every agent is online again in the database and its outbox fully acked.
* **memory** — RSS of one broker node before/after 500 idle MQTT connections (NATS, RabbitMQ,
  Mosquitto): kB per agent connection.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ingest as ingest_bench  # bench/ingest.py: messages, Mosquitto, databases, $share collectors
from natskit import NatsCluster
from rabbitmq_cluster import RabbitCluster

from collector.storage import create_engine_from_url, migrate
from collector.storage.schema import state_history
from protocol.mqtt.subjects import topic_to_subject
from protocol.mqtt.topics import UPLINK_FILTERS

ROOT = Path(__file__).resolve().parent.parent
BENCH_USER, BENCH_PASSWORD = "bench", "bench"
STREAM = "KASSA_UPLINK"
NATS_USERS = f"""\
users: [
  {{user: "{BENCH_USER}", password: "{BENCH_PASSWORD}", allowed_connection_types: ["STANDARD", "MQTT"]}}
]
"""


# --- publishing ----------------------------------------------------------------------------------


def publish_all(ports: int | list[int], messages: list[tuple[str, bytes]], *, login: bool, clients: int = 1) -> float:
    """QoS 1 through ``clients`` MQTT connections spread over ``ports`` (the agents of a fleet use
    many connections and every node), waiting for every PUBACK; returns when publishing started."""
    ports = [ports] if isinstance(ports, int) else ports
    connections = []
    for index in range(clients):
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}-{index}", clean_session=True)
        if login:
            client.username_pw_set(BENCH_USER, BENCH_PASSWORD)
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        connected = threading.Event()
        client.on_connect = lambda *args, connected=connected: connected.set()
        client.connect("127.0.0.1", ports[index % len(ports)], keepalive=60)
        client.loop_start()
        if not connected.wait(60):
            raise RuntimeError(f"a publisher could not connect to port {ports[index % len(ports)]}")
        connections.append(client)
    started = time.monotonic()
    infos = [connections[n % clients].publish(topic, payload, qos=1) for n, (topic, payload) in enumerate(messages)]
    for info in infos:
        info.wait_for_publish(300)
    for client in connections:
        client.disconnect()
        client.loop_stop()
    return started


# --- part 1: bare competing consumers ------------------------------------------------------------


def nats_consumer(url: str, counter: Any, stop: Any) -> None:
    import nats

    async def run() -> None:
        nc = await nats.connect(url, user=BENCH_USER, password=BENCH_PASSWORD)
        subscription = await nc.jetstream().pull_subscribe_bind("bare", stream=STREAM)
        while not stop.is_set():
            try:
                batch = await subscription.fetch(256, timeout=0.5)
            except TimeoutError:  # nothing within the timeout (nats-py raises the builtin one too)
                continue
            for msg in batch:
                await msg.ack()
            with counter.get_lock():
                counter.value += len(batch)
        await nc.close()

    asyncio.run(run())


def rabbit_consumer(port: int, counter: Any, stop: Any) -> None:
    import pika

    connection = pika.BlockingConnection(
        pika.ConnectionParameters("127.0.0.1", port, credentials=pika.PlainCredentials(BENCH_USER, BENCH_PASSWORD))
    )
    channel = connection.channel()
    channel.basic_qos(prefetch_count=500)

    def on_message(ch: Any, method: Any, _props: Any, _body: bytes) -> None:
        ch.basic_ack(method.delivery_tag)
        with counter.get_lock():
            counter.value += 1

    channel.basic_consume("kassa-uplink", on_message)
    while not stop.is_set():
        connection.process_data_events(time_limit=0.5)
    connection.close()


def competing_rate(
    consumer: Callable[..., None], addresses: list[Any], publish_ports: list[int], messages: list[tuple[str, bytes]],
    *, login: bool, publishers: int,
) -> float:
    counter = multiprocessing.Value("l", 0)
    stop = multiprocessing.Event()
    workers = [multiprocessing.Process(target=consumer, args=(address, counter, stop)) for address in addresses]
    for worker in workers:
        worker.start()
    time.sleep(2.0)  # consumers attached
    started = publish_all(publish_ports, messages, login=login, clients=publishers)
    deadline = time.monotonic() + 600
    while counter.value < len(messages) and time.monotonic() < deadline:
        time.sleep(0.02)
    elapsed = time.monotonic() - started
    stop.set()
    for worker in workers:
        worker.join(20)
    return counter.value / elapsed


async def nats_setup(cluster: NatsCluster, *, bare: bool) -> None:
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig

    nc = await nats.connect(servers=cluster.nats_urls, user=BENCH_USER, password=BENCH_PASSWORD)
    js = nc.jetstream()
    with suppress(nats.js.errors.NotFoundError):
        await js.delete_stream(STREAM)
    if bare:
        await js.add_stream(StreamConfig(
            name=STREAM, subjects=[topic_to_subject(f) for f in UPLINK_FILTERS],
            retention=RetentionPolicy.WORK_QUEUE, num_replicas=3,
        ))
        await js.add_consumer(STREAM, ConsumerConfig(durable_name="bare", ack_policy=AckPolicy.EXPLICIT, max_ack_pending=20000))
    await nc.close()


def rabbit_setup(cluster: RabbitCluster) -> None:
    import pika

    node = cluster.nodes[0]
    connection = pika.BlockingConnection(
        pika.ConnectionParameters("127.0.0.1", node.amqp, credentials=pika.PlainCredentials(BENCH_USER, BENCH_PASSWORD))
    )
    channel = connection.channel()
    channel.queue_delete("kassa-uplink")
    channel.queue_declare("kassa-uplink", durable=True, arguments={"x-queue-type": "quorum"})
    for topic_filter in UPLINK_FILTERS:
        channel.queue_bind("kassa-uplink", "amq.topic", routing_key=topic_to_subject(topic_filter).replace(">", "#"))
    connection.close()


@contextmanager
def nats_cluster(workdir: Path) -> Iterator[NatsCluster]:
    workdir.mkdir(parents=True)
    (workdir / "users.conf").write_text(NATS_USERS)
    cluster = NatsCluster(workdir)
    started = time.monotonic()
    cluster.start(timeout=60)
    print(f"  NATS 3 nodes ready in {time.monotonic() - started:.1f} s")
    try:
        yield cluster
    finally:
        cluster.stop()


@contextmanager
def rabbit_cluster(workdir: Path) -> Iterator[RabbitCluster]:
    cluster = RabbitCluster(workdir)
    try:
        print(f"  RabbitMQ 3 nodes formed in {cluster.start():.1f} s")
        yield cluster
    finally:
        cluster.stop()


def part_brokers(messages: list[tuple[str, bytes]], workdir: Path, rabbitmq: bool, publishers: int) -> None:
    print(f"\n## brokers: {len(messages)} QoS 1 state messages over {publishers} MQTT connection(s), bare competing consumers")
    with nats_cluster(workdir / "nats-bare") as cluster:
        for count in (1, 2, 3):
            asyncio.run(nats_setup(cluster, bare=True))
            rate = competing_rate(nats_consumer, cluster.nats_urls[:count], [n.mqtt for n in cluster.nodes], messages, login=True,
                                  publishers=publishers)
            print(f"  NATS JetStream R3, {count} consumer(s): {rate:8.0f} msg/s acked")
    if not rabbitmq:
        return
    with rabbit_cluster(workdir / "rabbit") as cluster:
        for count in (1, 2, 3):
            rabbit_setup(cluster)
            ports = [node.amqp for node in cluster.nodes[:count]]
            rate = competing_rate(rabbit_consumer, ports, [n.mqtt for n in cluster.nodes], messages, login=True,
                                  publishers=publishers)
            print(f"  RabbitMQ quorum queue, {count} consumer(s): {rate:8.0f} msg/s acked")


# --- part 2: collectors --------------------------------------------------------------------------


def cpu_seconds(pids: list[int]) -> float:
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def spawn_nats_collectors(cluster: NatsCluster, count: int, db_url: str, workdir: Path) -> list[subprocess.Popen[bytes]]:
    company = ingest_bench.bench_company(db_url)
    processes = []
    for index in range(count):
        urls = cluster.nats_urls[index:] + cluster.nats_urls[:index]
        config = workdir / f"nats-collector-{index}.toml"
        config.write_text(
            f'broker_url = "{urls[0]}"\nbroker_fallback_urls = {list(urls[1:])!r}\n'.replace("'", '"')
            + f'broker_username = "{BENCH_USER}"\nbroker_password = "{BENCH_PASSWORD}"\n'
            + f'db_url = "{db_url}"\nclient_id = "bench-nats-{index}"\ncompany = "{company}"\n'
            + "evaluator_period = 15\njetstream_replicas = 3\n"
        )
        log = (workdir / f"nats-collector-{index}.log").open("wb")
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "collector", "run", "--no-web", "--log-level", "INFO"],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "KASSA_COLLECTOR_CONFIG": str(config)},
        ))
    deadline = time.monotonic() + 120
    while sum("consuming" in (workdir / f"nats-collector-{i}.log").read_text() for i in range(count)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"NATS collectors not consuming after 120 s (logs in {workdir})")
        time.sleep(0.2)
    return processes


def committed_rate(
    engine: sa.Engine, pids: list[int], pause: Callable[[bool], None], publish: Callable[[], None], total: int
) -> tuple[float, float]:
    pause(True)
    publish()
    cpu_before = cpu_seconds(pids)
    started = time.monotonic()
    pause(False)
    deadline = started + 600
    while ingest_bench.count_rows(engine, state_history) < total:
        if time.monotonic() > deadline:
            raise RuntimeError("collectors did not commit everything within 600 s")
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    return total / elapsed, (cpu_seconds(pids) - cpu_before) / total * 1e6


def signal_all(processes: list[subprocess.Popen[bytes]], paused: bool) -> None:
    for process in processes:
        process.send_signal(signal.SIGSTOP if paused else signal.SIGCONT)


def part_collectors(messages: list[tuple[str, bytes]], workdir: Path) -> None:
    print(f"\n## collectors: {len(messages)} state messages committed to PostgreSQL, collectors paused while published")
    rows: list[str] = []
    with nats_cluster(workdir / "nats-collectors") as cluster:
        for count in (1, 2, 3):
            asyncio.run(nats_setup(cluster, bare=False))
            with ingest_bench.database("postgresql", workdir) as db_url:
                migrate(db_url)
                engine = create_engine_from_url(db_url)
                processes = spawn_nats_collectors(cluster, count, db_url, workdir)
                try:
                    rate, cpu = committed_rate(
                        engine, [p.pid for p in processes],
                        lambda paused, processes=processes: signal_all(processes, paused),
                        lambda: publish_all(cluster.nodes[0].mqtt, messages, login=True), len(messages),
                    )
                    rows.append(f"  NATS cluster, {count} collector(s): {rate:7.0f} msg/s committed, {cpu:5.0f} µs CPU/msg")
                finally:
                    for process in processes:
                        process.send_signal(signal.SIGCONT)
                        process.terminate()
                        process.wait(30)
                    engine.dispose()
                print(rows[-1])
    for count in (1, 2, 3):
        mosquitto_dir = Path(tempfile.mkdtemp(dir=workdir))
        with ingest_bench.mosquitto(mosquitto_dir) as port, ingest_bench.database("postgresql", workdir) as db_url:
            engine = create_engine_from_url(db_url)
            collectors = ingest_bench.Collectors(count, port, db_url, mosquitto_dir)
            try:
                rate, cpu = committed_rate(
                    engine, [p.pid for p in collectors.processes], collectors.pause,
                    lambda port=port: publish_all(port, messages, login=False), len(messages),
                )
                print(f"  Mosquitto $share, {count} collector(s): {rate:7.0f} msg/s committed, {cpu:5.0f} µs CPU/msg")
            finally:
                collectors.pause(False)
                collectors.stop()
                engine.dispose()


# --- part 3: failover ----------------------------------------------------------------------------


def part_failover(workdir: Path) -> None:
    import cluster_testkit as kit
    from conftest import ModelRegister

    from collector.enrollment.nats_users import NatsUsersBackend

    print("\n## failover: 12 agents over 3 NATS nodes, 2 collectors; node 1 killed -9")
    agents = [f"bench-agent-{index:02d}" for index in range(12)]
    users = NatsUsersBackend(workdir / "nats-failover" / "users.conf")
    (workdir / "nats-failover").mkdir()
    users.ensure_collector(kit.COLLECTOR_USER, kit.COLLECTOR_PASSWORD)
    for agent in agents:
        users.add_agent(agent, kit.agent_password(agent))
    cluster = NatsCluster(workdir / "nats-failover")
    cluster.start(timeout=60)
    with ingest_bench.database("postgresql", workdir) as db_url:
        engine = create_engine_from_url(db_url)
        collectors = [kit.start_collector(cluster, node, db_url, f"collector-{node}") for node in (1, 2)]
        registers = [ModelRegister() for _ in agents]
        runtimes = [
            kit.start_agent(cluster, agent, index % 3, workdir / f"{agent}.sqlite", register)
            for index, (agent, register) in enumerate(zip(agents, registers, strict=True))
        ]
        try:
            _wait(lambda: _all_online(engine, runtimes), 120, "agents online")
            time.sleep(3)
            killed = time.monotonic()
            cluster.nodes[0].kill()
            _wait(lambda: _all_online(engine, runtimes), 120, "agents online again")
            online = time.monotonic() - killed
            _wait(lambda: all(r.outbox.stats().awaiting_ack == 0 for r in runtimes), 120, "outboxes acked")
            drained = time.monotonic() - killed
            print(f"  node kill → every agent online again: {online:.1f} s; every backlog committed and acked: {drained:.1f} s")
        finally:
            for runtime in runtimes:
                runtime.stop()
            for service in collectors:
                service.stop()
            engine.dispose()
            cluster.stop()


def _all_online(engine: sa.Engine, runtimes: list[Any]) -> bool:
    from collector.storage.schema import agents as agents_table

    with engine.connect() as conn:
        rows = {row.agent_id: row for row in conn.execute(sa.select(agents_table))}
    return all(
        (row := rows.get(r.agent_id)) is not None and row.online and r.publisher.session is not None
        and row.status_session == r.publisher.session
        for r in runtimes
    )


def _wait(probe: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


# --- part 4: memory per connection ---------------------------------------------------------------


def mqtt_connect_packet(client_id: str, username: str | None, password: str | None) -> bytes:
    def field(text: str) -> bytes:
        raw = text.encode()
        return struct.pack("!H", len(raw)) + raw

    flags = 0x02 | (0x80 if username else 0) | (0x40 if password else 0)  # clean session
    body = field("MQTT") + bytes([4, flags]) + struct.pack("!H", 0) + field(client_id)
    if username:
        body += field(username)
    if password:
        body += field(password)
    length, encoded = len(body), b""
    while True:
        digit, length = length % 128, length // 128
        encoded += bytes([digit | (0x80 if length else 0)])
        if not length:
            break
    return b"\x10" + encoded + body


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def kb_per_connection(pid: int, port: int, count: int, *, login: bool) -> float:
    before = rss_kb(pid)
    sockets = []
    for index in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(mqtt_connect_packet(f"idle-{index}", BENCH_USER if login else None, BENCH_PASSWORD if login else None))
        if sock.recv(4)[:1] != b"\x20":
            raise RuntimeError("no CONNACK")
        sockets.append(sock)
    time.sleep(3)
    after = rss_kb(pid)
    for sock in sockets:
        sock.close()
    return (after - before) / count


def part_memory(workdir: Path, rabbitmq: bool, count: int = 500) -> None:
    print(f"\n## memory: RSS of the node holding {count} idle MQTT connections (clean session, no subscriptions)")
    with nats_cluster(workdir / "nats-memory") as cluster:
        node = cluster.nodes[0]
        assert node.process is not None
        print(f"  NATS node: {kb_per_connection(node.process.pid, node.mqtt, count, login=True):.1f} kB per connection")
    if rabbitmq:
        with rabbit_cluster(workdir / "rabbit-memory") as cluster:
            node = cluster.nodes[0]
            print(f"  RabbitMQ node: {kb_per_connection(node.pid(), node.mqtt, count, login=True):.1f} kB per connection")
    mosquitto_dir = Path(tempfile.mkdtemp(dir=workdir))
    with ingest_bench.mosquitto(mosquitto_dir) as port:
        pid = int(subprocess.run(["pgrep", "-f", str(mosquitto_dir / "mosquitto.conf")], capture_output=True,
                                 text=True, check=True).stdout.split()[0])
        print(f"  Mosquitto: {kb_per_connection(pid, port, count, login=False):.1f} kB per connection")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--publishers", type=int, default=1,
                        help="brokers part: MQTT connections carrying the load, spread over the nodes "
                             "(6 disconnected publishers from RabbitMQ's MQTT plugin here)")
    parser.add_argument("--parts", default="brokers,collectors,failover,memory")
    parser.add_argument("--no-rabbitmq", action="store_true", help="skip RabbitMQ (its cluster takes minutes to form)")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    messages = ingest_bench.load(args.messages, args.agents, "cl")
    with tempfile.TemporaryDirectory(prefix="kassa-cluster-bench-") as tmp:
        workdir = Path(tmp)
        if "brokers" in parts:
            part_brokers(messages, workdir, not args.no_rabbitmq, args.publishers)
        if "collectors" in parts:
            part_collectors(messages, workdir)
        if "failover" in parts:
            part_failover(workdir)
        if "memory" in parts:
            part_memory(workdir, not args.no_rabbitmq)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
