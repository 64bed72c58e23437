"""Soak: simulated registers → agent processes → a private Mosquitto → the collector on PostgreSQL,
under random kill -9 and bad messages; then counts what the agents sent against what was stored.

    .venv/bin/python bench/soak.py [--duration 300] [--agents 4] [--seed N] [--db URL] [--smoke]

* **Pipeline.** ``--agents`` ``kassa-agent run`` processes, each polling its own ``sim://`` register
  (shipped scenarios, clocks ``--speed`` times real time); a private Mosquitto (persistence on, as
  the e2e tests run it); one ``kassa-collector run`` process on a fresh PostgreSQL database
  (``--db`` uses a given, migrated-on-start database instead, e.g. from a test).
* **Chaos** for ``--duration`` seconds: every ``--kill-every`` seconds on average, kill -9 of a
  random agent (half the time), the collector or the broker, restarted 0.5–3 s later; at most
  ``--max-kills``. Meanwhile bad messages go to the broker: invalid JSON, foreign topics (outside
  the contract, and garbage on an agent's ``cmd``), oversize payloads, and payloads naming another
  agent than their topic.
* **Counting.** What an agent *sent* is what it committed to its outbox: before an agent first
  starts, its outbox file gets a ledger table filled by a trigger on the outbox's own inserts, so
  the ledger is exactly the (session, seq) the agent owes the collector — unlike the outbox rows,
  which acks delete. What was *stored* is the (agent, session, seq) of ``state_history``,
  ``events`` and ``agent_events``. After the chaos everything is restarted, the pipeline must
  deliver every record sent before that point (``--settle`` seconds at most), then the agents are
  stopped (SIGTERM) and the counts printed. Lost = sent − stored − still in an outbox (replayed
  on the agent's next start); duplicated = stored rows − distinct keys.

Exit status 0 only when nothing was lost or duplicated and the pipeline settled. Everything talks
to 127.0.0.1 only; every process started is killed and the temp dir and database removed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from conftest import Broker, free_port  # noqa: E402  (the e2e tests' restartable Mosquitto)
from ingest import bench_company, database, encode_state, realistic_state  # noqa: E402  (bench/ingest.py)

from agent.config import validate  # noqa: E402
from agent.outbox import Outbox  # noqa: E402
from collector.storage import create_engine_from_url, migrate  # noqa: E402
from collector.storage.schema import agent_events, dead_letters, events, state_history  # noqa: E402
from demo.agents import write_agent_toml  # noqa: E402
from protocol.mqtt.models import MAX_PAYLOAD_BYTES  # noqa: E402
from protocol.mqtt.topics import COLLECTOR_STATUS_TOPIC, cmd_topic, state_topic  # noqa: E402

SCENARIOS = ("healthy", "ofd-backlog", "long-shift", "paper-out")
SMOKE_ROLLS = (0.0, 0.6, 0.9)  # a smoke run kills an agent, the collector and the broker in turn
RESTART_DELAY = (0.5, 3.0)  # seconds a killed process stays down
STOP_TIMEOUT = 10.0
Key = tuple[str, int, int]  # (agent, session, seq)

# Filled by a trigger in the outbox's own transaction: a row exists iff the record was committed.
LEDGER_SQL = """
CREATE TABLE IF NOT EXISTS soak_ledger (session INTEGER NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS soak_ledger_add AFTER INSERT ON records BEGIN
    INSERT INTO soak_ledger VALUES (NEW.session, NEW.seq, NEW.kind);
END;
"""


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


class Child:
    """A restartable subprocess (agent or collector) whose output goes to a log file."""

    def __init__(self, name: str, command: list[str], workdir: Path) -> None:
        self.name = name
        self.command = command
        self.log_path = workdir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        if self.running:
            return
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)

    def stop(self) -> None:
        """SIGTERM: a clean stop (the agent flushes its outbox and says offline)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()


@dataclass
class SoakAgent:
    agent_id: str
    outbox: Path
    child: Child

    def ledger(self) -> dict[Key, str]:
        with closing_db(self.outbox) as db:
            rows = db.execute("SELECT session, seq, kind FROM soak_ledger").fetchall()
        return {(self.agent_id, session, seq): kind for session, seq, kind in rows}

    def pending(self) -> set[Key]:
        """Records still in the outbox: not acked yet, replayed on the agent's next start."""
        with closing_db(self.outbox) as db:
            rows = db.execute("SELECT session, seq FROM records").fetchall()
        return {(self.agent_id, session, seq) for session, seq in rows}


@contextmanager
def closing_db(path: Path) -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(path, timeout=10.0)
    try:
        yield db
    finally:
        db.close()


def make_agent(index: int, broker: Broker, workdir: Path, speed: float) -> SoakAgent:
    agent_id = f"soak-agent-{index}"
    protocol = "shtrih" if index % 2 == 0 else "atol"
    scenario = SCENARIOS[index % len(SCENARIOS)]
    outbox = workdir / f"{agent_id}.sqlite"
    Outbox(outbox).close()  # the agent's own schema first, then the ledger on top of it
    with closing_db(outbox) as db:
        db.executescript(LEDGER_SQL)
    settings = {
        "agent_id": agent_id,
        "heartbeat": 2.0,
        "ack_mode": "collector",
        "broker": {"url": broker.url, "keepalive": 2, "reconnect_min": 0.1, "reconnect_max": 1.0},
        "outbox": {"path": str(outbox), "commit_interval": 0.05},
        "devices": [{
            "protocol": protocol,
            "url": f"sim://{protocol}?scenario={scenario}&speed={speed:g}",
            "register_id": f"soak-kkt-{index}",
            "poll_interval": 0.5,
        }],
    }  # fmt: skip
    validate(settings)  # a wrong key fails here, named, rather than inside the agent process
    config = workdir / f"{agent_id}.toml"
    write_agent_toml(settings, config)
    command = [sys.executable, "-m", "agent", "run", "--config", str(config)]
    return SoakAgent(agent_id, outbox, Child(agent_id, command, workdir))


# --------------------------------------------------------------------------- bad messages


class Injector:
    """Publishes bad messages of every kind to the broker, counting what the broker took; also
    watches the collector's retained status (agents start once the collector has subscribed)."""

    def __init__(self, broker: Broker, agent_ids: list[str], rng: random.Random) -> None:
        self.agent_ids = agent_ids
        self.rng = rng
        self.sent: Counter[str] = Counter()
        self.collector_online = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="soak-injector", clean_session=True)
        self.client.reconnect_delay_set(0.1, 1.0)
        self.client.on_connect = lambda client, *_: client.subscribe(COLLECTOR_STATUS_TOPIC, qos=1)
        self.client.on_message = self._on_status
        self.client.connect_async(broker.host, broker.port, keepalive=5)
        self.client.loop_start()
        now = datetime.now(UTC)
        self._foreign_state = encode_state("soak-intruder", "soak-kkt-0", 1, realistic_state("0000000000000001", now, receipts=1))[1]

    def inject(self) -> None:
        agent = self.rng.choice(self.agent_ids)
        register = f"soak-kkt-{agent.rsplit('-', 1)[1]}"
        kind, topic, payload = self.rng.choice([
            ("invalid_json", state_topic(agent, register), b'{"v": 1, "agent": '),
            ("foreign_topic", f"kassa/v1/{agent}/bogus", b"{}"),
            ("foreign_topic", f"kassa/v2/{agent}/state/{register}", b"{}"),
            ("foreign_topic", cmd_topic(agent), b"\xff not a command"),
            ("oversize", state_topic(agent, register), b"[" + b"0," * (MAX_PAYLOAD_BYTES // 2) + b"0]"),
            ("wrong_agent", state_topic(agent, register), self._foreign_state),
        ])  # fmt: skip
        if self.client.publish(topic, payload, qos=1).rc == mqtt.MQTT_ERR_SUCCESS:
            self.sent[kind] += 1

    def _on_status(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        if b'"online"' in message.payload:
            self.collector_online.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# --------------------------------------------------------------------------- chaos


@dataclass
class Chaos:
    agents: list[SoakAgent]
    collector: Child
    broker: Broker
    rng: random.Random
    kills: Counter[str] = field(default_factory=Counter)
    _restarts: list[tuple[float, Callable[[], None]]] = field(default_factory=list)

    def kill_one(self, roll: float | None = None) -> None:
        """``roll`` picks the kind: < 0.5 an agent, < 0.75 the collector, else the broker."""
        roll = self.rng.random() if roll is None else roll
        if roll < 0.5:
            agent = self.rng.choice(self.agents)
            if agent.child.running:
                agent.child.kill()
                self._later(agent.child.start)
                self.kills["agent"] += 1
        elif roll < 0.75:
            if self.collector.running:
                self.collector.kill()
                self._later(self.collector.start)
                self.kills["collector"] += 1
        elif self.broker.running:
            self.broker.kill()
            self._later(self.broker.start)
            self.kills["broker"] += 1

    def _later(self, restart: Callable[[], None]) -> None:
        self._restarts.append((time.monotonic() + self.rng.uniform(*RESTART_DELAY), restart))

    def restart_due(self, *, all_now: bool = False) -> None:
        now = time.monotonic()
        due = [item for item in self._restarts if all_now or item[0] <= now]
        self._restarts = [item for item in self._restarts if item not in due]
        for _, restart in sorted(due, key=lambda item: item[0]):
            restart()

    def ensure_all_up(self) -> None:
        self.restart_due(all_now=True)
        self.broker.start()
        self.collector.start()
        for agent in self.agents:
            agent.child.start()


# --------------------------------------------------------------------------- counting


def stored_keys(engine: sa.Engine, agent_ids: list[str]) -> tuple[dict[Key, int], Counter[str]]:
    """Stored rows per (agent, session, seq) over every sequenced table, and dead letters by reason."""
    counts: Counter[Key] = Counter()
    with engine.connect() as conn:
        for table in (state_history, events, agent_events):
            query = sa.select(table.c.agent_id, table.c.session, table.c.seq).where(table.c.agent_id.in_(agent_ids))
            counts.update((r.agent_id, int(r.session), int(r.seq)) for r in conn.execute(query))
        reasons = Counter({r.reason: int(r.n) for r in conn.execute(
            sa.select(dead_letters.c.reason, sa.func.count().label("n")).group_by(dead_letters.c.reason)
        )})  # fmt: skip
    return dict(counts), reasons


def wait_until(probe: Callable[[], bool], timeout: float, tick: Callable[[], None] = lambda: None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tick()
        if probe():
            return True
        time.sleep(0.5)
    return False


@dataclass
class Figures:
    sent: dict[Key, str]
    stored: dict[Key, int]
    pending: set[Key]
    settled: bool

    @property
    def lost(self) -> list[Key]:
        return sorted(set(self.sent) - set(self.stored) - self.pending)

    @property
    def duplicated(self) -> int:
        return sum(n - 1 for n in self.stored.values())

    def by_kind(self, kind: str) -> tuple[int, int]:
        keys = [k for k, v in self.sent.items() if v == kind]
        return len(keys), sum(1 for k in keys if k in self.stored)


def soak(args: argparse.Namespace, db_url: str, workdir: Path) -> int:
    rng = random.Random(args.seed)
    migrate(db_url)  # before the first collector start, which a kill may interrupt
    engine = create_engine_from_url(db_url)
    broker = Broker(workdir=workdir / "broker", port=free_port(), kind="mosquitto")
    broker.workdir.mkdir()
    agents = [make_agent(i, broker, workdir, args.speed) for i in range(args.agents)]
    # Every state stored: the soak counts what reached history against what the agents sent (the
    # history policy would drop heartbeats by design, which is not loss).
    os.environ["KASSA_COLLECTOR_HISTORY_SAMPLE_MINUTES"] = "0"
    collector = Child("collector", [
        sys.executable, "-m", "collector", "run", "--broker", broker.url, "--db", db_url, "--no-web",
        "--client-id", "soak-collector", "--log-level", "WARNING",
        "--company", bench_company(db_url),  # the soak's agents report without enrollment
    ], workdir)  # fmt: skip
    chaos = Chaos(agents, collector, broker, rng)
    with ExitStack() as cleanup:
        cleanup.callback(engine.dispose)
        cleanup.callback(broker.kill)
        cleanup.callback(collector.kill)
        for agent in agents:
            cleanup.callback(agent.child.kill)
        broker.start()
        injector = Injector(broker, [a.agent_id for a in agents], rng)
        cleanup.callback(injector.close)
        collector.start()
        # Deployment order: on a fresh broker, what agents publish before the collector's first
        # subscription reaches nobody, and the live session's records wait for a reconnect.
        if not injector.collector_online.wait(60):
            raise RuntimeError(f"the collector did not come online; see {collector.log_path}")
        for agent in agents:
            agent.child.start()
        log(f"soak: {args.agents} agents, {args.duration:g} s, seed {args.seed}, work dir {workdir}")
        deadline = time.monotonic() + args.duration
        def pause() -> float:  # a smoke run keeps a steady beat so each kind surely gets its kill
            return args.kill_every if args.smoke else rng.expovariate(1 / args.kill_every)

        next_kill = time.monotonic() + pause()
        while time.monotonic() < deadline:
            chaos.restart_due()
            kills = sum(chaos.kills.values())
            if time.monotonic() >= next_kill and kills < args.max_kills:
                chaos.kill_one(SMOKE_ROLLS[kills % len(SMOKE_ROLLS)] if args.smoke else None)
                next_kill = time.monotonic() + pause()
            if rng.random() < args.bad_rate * 0.1:
                injector.inject()
            time.sleep(0.1)
        log(f"chaos over (kills {dict(chaos.kills)}); restarting everything and settling")
        chaos.ensure_all_up()
        due = {key for agent in agents for key in agent.ledger()}
        settle_started = time.monotonic()
        settled = wait_until(
            lambda: due <= set(stored_keys(engine, [a.agent_id for a in agents])[0]), args.settle, chaos.ensure_all_up
        )
        log(f"{'settled' if settled else 'NOT settled'} after {time.monotonic() - settle_started:.1f} s")
        for agent in agents:
            agent.child.stop()
        # Records the agents sent just before their stop may still be on their way in.
        sent = {key: kind for agent in agents for key, kind in agent.ledger().items()}
        pending = {key for agent in agents for key in agent.pending()}
        wait_until(lambda: set(sent) - pending <= set(stored_keys(engine, [a.agent_id for a in agents])[0]), 15)
        stored, reasons = stored_keys(engine, [a.agent_id for a in agents])
        figures = Figures(sent, stored, pending & (set(sent) - set(stored)), settled)
        report(figures, chaos.kills, injector.sent, reasons, args)
    return 0 if figures.settled and not figures.lost and not figures.duplicated else 1


def report(figures: Figures, kills: Counter[str], injected: Counter[str], reasons: Counter[str], args: argparse.Namespace) -> None:
    states, events_ = figures.by_kind("state"), figures.by_kind("event")
    lines = {
        "duration_s": args.duration,
        "agents": args.agents,
        "kills": {"agent": kills["agent"], "collector": kills["collector"], "broker": kills["broker"]},
        "states_sent": states[0], "states_stored": states[1],
        "events_sent": events_[0], "events_stored": events_[1],
        "still_in_outbox": len(figures.pending),
        "lost": len(figures.lost), "duplicated": figures.duplicated,
        "settled": figures.settled,
        "bad_messages_injected": dict(sorted(injected.items())),
        "dead_letters_by_reason": dict(sorted(reasons.items())),
    }  # fmt: skip
    print("SOAK " + json.dumps(lines, ensure_ascii=False), flush=True)
    if figures.lost:
        print(f"lost (agent, session, seq), first 20: {figures.lost[:20]}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of chaos (default %(default)s)")
    parser.add_argument("--agents", type=int, default=4, help="agent processes, one register each (default %(default)s)")
    parser.add_argument("--kill-every", type=float, default=6.0, help="mean seconds between kills (default %(default)s)")
    parser.add_argument("--max-kills", type=int, default=200, help="kills at most (default %(default)s)")
    parser.add_argument("--bad-rate", type=float, default=2.0, help="bad messages per second (default %(default)s)")
    parser.add_argument("--speed", type=float, default=600.0, help="register clock speed-up (default %(default)s)")
    parser.add_argument("--settle", type=float, default=120.0, help="seconds to deliver everything after the chaos")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: a fresh one, printed)")
    parser.add_argument("--db", help="a PostgreSQL URL to use (default: a fresh database, dropped afterwards)")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it (logs, outboxes)")
    parser.add_argument("--smoke", action="store_true", help="a short run for the test suite: 15 s, 2 agents")
    args = parser.parse_args(argv)
    if args.smoke:
        args.duration, args.agents, args.kill_every, args.settle = 15.0, 2, 3.0, 60.0
    if args.seed is None:
        args.seed = random.randrange(2**32)
    if args.agents < 1 or args.duration <= 0 or args.kill_every <= 0 or args.bad_rate < 0:
        parser.error("--agents, --duration and --kill-every must be positive, --bad-rate not negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with ExitStack() as stack:
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
        workdir = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kassa-soak-")))
        db_url = args.db or stack.enter_context(database("postgresql", workdir))
        return soak(args, db_url, workdir)


if __name__ == "__main__":
    sys.exit(main())
