"""Orchestration of ``python -m demo``: broker → database and demo company → collector with its
web app → the offline agent → one agent per register; then the banner; on stop the reverse:
agents say ``offline`` and disconnect, the collector flushes and says ``offline``, the broker closes.

The demo is throwaway: each run starts from a fresh database in ``--data-dir`` (only the files
the demo itself writes there are removed).
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TextIO

import sqlalchemy as sa

from collector.config import CollectorConfig, NotifySettings
from collector.service import CollectorService
from collector.storage import create_engine_from_url, migrate
from collector.storage.schema import register_state
from collector.web.pages import EventHub, alert_notice_feed
from demo.agents import PARALLEL, DoomedAgent, InProcessAgents
from demo.banner import banner
from demo.broker import EmbeddedBroker, clear_retained, external_broker_url
from demo.fleet import DEFAULT_REGISTERS, Fleet, build_fleet
from demo.mailbox import MAILBOX_PATH, DemoMailbox
from demo.seed import Seeded, seed
from demo.web import demo_app_factory
from protocol.mqtt.topics import status_topic

DB_FILE = "collector.sqlite"
CREDENTIALS_FILE = "credentials.json"
LOG_FILE = "demo.log"
# What a run leaves in the data dir; removed at the next start, nothing else is touched.
DEMO_FILES = (DB_FILE, f"{DB_FILE}-wal", f"{DB_FILE}-shm", CREDENTIALS_FILE, LOG_FILE)
DEMO_DIRS = ("agents", "offline-agent")
# Seen offline after 30 s of silence instead of 5 min, so the killed agent shows within a minute;
# the in-process agents publish at least every 10 s, so they never cross it.
DEMO_THRESHOLDS = {"agent_offline_warning": 30}
EVALUATOR_PERIOD = 5.0  # seconds between full alert sweeps (production default 15)
OFFLINE_REPORT_TIMEOUT = 20.0
log = logging.getLogger(__name__)
NOISY_LOGGERS = ("amqtt", "transitions", "aiohttp.access")  # a line per connection/request


class DemoCancelled(Exception):
    """Ctrl-C arrived while the demo was still starting."""


@dataclass(frozen=True)
class DemoOptions:
    data_dir: Path = Path("demo-data")
    speed: float = 60.0
    port: int = 8080
    registers: int = DEFAULT_REGISTERS
    host: str = "127.0.0.1"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{(self.data_dir / DB_FILE).resolve()}"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/"


def check_port_free(host: str, port: int) -> None:
    """Fail before anything starts, with the fix in the message, when the web port is taken."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds: TIME_WAIT is fine
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise OSError(
                f"port {port} on {host} is not free ({exc.strerror}); pass --port N (or: DEMO_PORT=N make demo)"
            ) from None


def reset_data_dir(data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in DEMO_FILES:
        (data_dir / name).unlink(missing_ok=True)
    for name in DEMO_DIRS:
        shutil.rmtree(data_dir / name, ignore_errors=True)


def configure_logging(data_dir: Path) -> None:
    """Everything to ``demo.log``; the console keeps only progress lines, the banner and errors."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    file_handler = logging.FileHandler(data_dir / LOG_FILE, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"))
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.ERROR)
    root.handlers[:] = [file_handler, console]
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


class Progress:
    """``step… ok`` lines; counters rewrite one line on a terminal and print a line per batch otherwise."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self._open = False

    def begin(self, text: str) -> None:
        self.out.write(f"{text}… ")
        self.out.flush()
        self._open = True

    def done(self, detail: str = "") -> None:
        self.out.write(f"ok{f' ({detail})' if detail else ''}\n")
        self.out.flush()
        self._open = False

    def failed(self) -> None:
        """End a step left open by an exception, so later lines start on their own line."""
        if self._open:
            self.out.write("failed\n")
            self.out.flush()
            self._open = False

    def count(self, what: str, done: int, total: int) -> None:
        if self.tty:
            self.out.write(f"\r{what} {done}/{total}…" + ("\n" if done == total else ""))
        elif done == total or done % PARALLEL == 0:
            self.out.write(f"{what} {done}/{total}…\n")
        self.out.flush()

    def line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()


class Demo:
    def __init__(self, options: DemoOptions, stop: threading.Event, out: TextIO = sys.stdout) -> None:
        self.options = options
        self.stop_requested = stop
        self.progress = Progress(out)
        self.fleet: Fleet = build_fleet(options.registers)
        self.broker: EmbeddedBroker | None = None
        self.broker_url = ""
        self.engine: sa.Engine | None = None
        self.seeded: Seeded | None = None
        self.collector: CollectorService | None = None
        self.agents: InProcessAgents | None = None
        self.doomed: DoomedAgent | None = None
        self.mailbox = DemoMailbox()

    def _checkpoint(self) -> None:
        if self.stop_requested.is_set():
            raise DemoCancelled

    # --- start --------------------------------------------------------------------------------

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.progress.failed()
            raise

    def _start(self) -> None:
        check_port_free(self.options.host, self.options.port)
        self._start_broker()
        self._checkpoint()
        self._prepare_database()
        self._checkpoint()
        self._start_collector()
        self._checkpoint()
        self._start_agents()
        self._checkpoint()
        self._take_offline_agent_down()
        self._write_credentials()

    def _start_broker(self) -> None:
        external = external_broker_url()
        if external is not None:
            self.progress.begin("using the broker from KASSA_MQTT_URL")
            self.broker_url = external
            clear_retained(external, [status_topic(r.agent_id) for r in self.fleet.registers])
            self.progress.done(f"{external}; the demo agents' old retained statuses cleared")
            return
        self.progress.begin("starting broker")
        self.broker = EmbeddedBroker()
        self.broker_url = self.broker.start()
        self.progress.done(f"embedded amqtt, {self.broker_url}")

    def _prepare_database(self) -> None:
        self.progress.begin("preparing database")
        self.engine = create_engine_from_url(self.options.db_url)
        migrate(self.engine)
        self.progress.done(str(self.options.data_dir / DB_FILE))
        fleet = self.fleet
        self.progress.begin("creating the demo company")
        self.seeded = seed(self.engine, fleet, now=datetime.now(UTC), today=date.today())
        brands = {s.brand for s in fleet.stores}
        cities = {s.city for s in fleet.stores}
        self.progress.done(
            f"{len(brands)} brands, {len(cities)} cities, {len(fleet.stores)} stores, "
            f"{len(fleet.registers)} registers, {len(fleet.users)} users"
        )

    def _start_collector(self) -> None:
        self.progress.begin("starting collector")
        log.info("demo fleet: %s", ", ".join(f"{r.register_id}={r.profile.name}" for r in self.fleet.registers))
        config = CollectorConfig(
            broker_url=self.broker_url,
            db_url=self.options.db_url,
            listen=f"{self.options.host}:{self.options.port}",
            client_id="kassa-collector-demo",
            evaluator_period=EVALUATOR_PERIOD,
            enforce_enrollment=True,
            thresholds=DEMO_THRESHOLDS,
            cookie_secure=False,  # plain HTTP on loopback: a Secure cookie would never come back
            notify=NotifySettings(public_url=self.options.base_url.rstrip("/")),  # links on the real port
        )
        assert self.engine is not None
        hub = EventHub()  # alert changes reach open pages live (SSE)
        self.collector = CollectorService(
            config, app_factory=demo_app_factory(hub, self.mailbox, self.options.base_url), notify=alert_notice_feed(self.engine, hub)
        )
        self.collector.start(wait_for_broker=10.0)
        self.progress.done(f"web on {self.options.base_url}")

    def _start_agents(self) -> None:
        offline = [r for r in self.fleet.registers if r.profile.agent_offline]
        live = [r for r in self.fleet.registers if not r.profile.agent_offline]
        data_dir, speed = self.options.data_dir, self.options.speed
        if offline:
            # Started first: its interpreter boots while the in-process agents connect.
            self.doomed = DoomedAgent(offline[0], broker_url=self.broker_url, speed=speed, data_dir=data_dir)
            self.doomed.start()
        self.agents = InProcessAgents(live, broker_url=self.broker_url, speed=speed, data_dir=data_dir)
        self.agents.start(lambda done, total: self.progress.count("agents", done, total))

    def _take_offline_agent_down(self) -> None:
        doomed = self.doomed
        if doomed is None:
            return
        register = doomed.register
        self.progress.begin(f"offline agent {register.agent_id}: waiting for its first report, then killing it")
        reported = doomed.kill_when(
            lambda: self._has_state(register.register_id) or self.stop_requested.is_set(),
            OFFLINE_REPORT_TIMEOUT,
        )
        self.progress.done("killed with SIGKILL; the broker published its last will")
        if not reported:
            self.progress.line(f"  (it never reported; see {doomed.log_path})")

    def _has_state(self, register_id: str) -> bool:
        assert self.engine is not None
        with self.engine.connect() as conn:
            query = sa.select(register_state.c.register_id).where(register_state.c.register_id == register_id)
            return conn.execute(query).first() is not None

    def _write_credentials(self) -> None:
        assert self.seeded is not None
        document = {
            "url": self.options.base_url,
            "api": f"{self.options.base_url}api/v1",
            "mqtt": self.broker_url,
            "speed": self.options.speed,
            "users": [
                {
                    "email": s.user.email,
                    "password": s.user.password,
                    "role": s.user.role,
                    "scope": "/".join(s.user.scope) or "company",
                    "token": s.token,
                }
                for s in self.seeded.users
            ],
        }
        path = self.options.data_dir / CREDENTIALS_FILE
        path.write_text(json.dumps(document, ensure_ascii=False, indent=2), encoding="utf-8")
        path.chmod(0o600)

    def _step(self, label: str, action: Callable[[], None]) -> None:
        self.progress.begin(label)
        action()
        self.progress.done()

    # --- stop ---------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop whatever was started, in reverse order; safe after a partial start."""
        if self.agents is not None:
            self._step("stopping agents", self.agents.stop)
        if self.doomed is not None:
            self.doomed.kill()
        if self.collector is not None:
            self._step("stopping collector", self.collector.stop)
        if self.broker is not None:
            self._step("stopping broker", self.broker.stop)
        if self.engine is not None:
            self.engine.dispose()


def run(options: DemoOptions, stop: threading.Event, out: TextIO = sys.stdout) -> int:
    """Start the demo, show the banner, wait for ``stop`` (Ctrl-C), stop everything."""
    reset_data_dir(options.data_dir)
    configure_logging(options.data_dir)
    demo = Demo(options, stop, out)
    try:
        demo.start()
        assert demo.seeded is not None
        text = banner(
            url=options.base_url,
            speed=options.speed,
            credentials=options.data_dir / CREDENTIALS_FILE,
            mail_log=options.data_dir / LOG_FILE,
            mailbox_url=options.base_url.rstrip("/") + MAILBOX_PATH,
            broker_url=demo.broker_url,
            embedded=demo.broker is not None,
            seeded=demo.seeded,
            fleet=demo.fleet,
        )
        out.write(text + "\n")
        out.flush()
        stop.wait()
        out.write("\nCtrl-C: stopping…\n")
    except DemoCancelled:
        out.write("\nCtrl-C during start: stopping…\n")
    finally:
        out.flush()
        demo.stop()
    out.write("demo stopped\n")
    out.flush()
    return 0
