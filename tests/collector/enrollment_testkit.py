"""Helpers of the enrollment tests: databases (SQLite and the real PostgreSQL), private Mosquitto
brokers secured like production (dynamic-security plugin with the shipped kassa-prod.conf, or a
password + ACL file), MQTT probes that record CONNACK/SUBACK/PUBACK reason codes, and an aiohttp
server on a background thread (so a subprocess can talk to it).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa
from aiohttp import web
from paho.mqtt.enums import CallbackAPIVersion

from collector.enrollment.broker import (
    AdminConnection,
    CredentialBackend,
    DynsecBackend,
    PasswordFileBackend,
    SighupReload,
)
from collector.enrollment.errors import BrokerError
from collector.enrollment.passwords import mosquitto_hash
from collector.storage import create_engine_from_url, migrate

sys.path.insert(0, str(Path(__file__).parents[1]))  # importlib mode: tests/dbkit.py
import dbkit

REPO = Path(__file__).resolve().parents[2]
PROD_CONF = REPO / "packaging" / "mosquitto" / "kassa-prod.conf"
IN_CI = dbkit.in_ci()
ADMIN_USER = "kassa-admin"
ADMIN_PASSWORD = "admin-" + uuid.uuid4().hex
COLLECTOR_USER = "kassa-collector"
COLLECTOR_PASSWORD = "collector-" + uuid.uuid4().hex


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found"
        if IN_CI:
            pytest.fail(f"{message} and CI=true: broker security must be tested against a real Mosquitto")
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeBroker:
    """Records accounts like a broker would; ``fail`` makes the next call raise BrokerError."""

    def __init__(self) -> None:
        self.accounts: dict[str, str] = {}
        self.removed: list[str] = []
        self.fail = False
        self.lock = threading.Lock()

    def add_agent(self, username: str, password: str) -> None:
        with self.lock:
            if self.fail:
                raise BrokerError("broker down")
            self.accounts[username] = password

    def remove_agent(self, username: str) -> None:
        with self.lock:
            if self.fail:
                raise BrokerError("broker down")
            self.accounts.pop(username, None)
            self.removed.append(username)

    def ensure_collector(self, username: str, password: str) -> None:
        self.add_agent(username, password)


# --- databases -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _database_url(backend: str, tmp_dir: Path) -> Iterator[str]:
    """A SQLite file, or a fresh PostgreSQL database dropped afterwards (skipped without a server, unless CI)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_dir}/{uuid.uuid4().hex[:8]}.db"
        return
    with dbkit.fresh_pg_database("kassa_enroll") as url:
        yield url


@contextlib.contextmanager
def migrated_engine(backend: str, tmp_dir: Path) -> Iterator[sa.Engine]:
    """An engine on a database at the enrollment branch head (revisions 0001 + 0003)."""
    with _database_url(backend, tmp_dir) as url:
        engine = create_engine_from_url(url)
        try:
            migrate(engine, "enrollment@head")
            yield engine
        finally:
            engine.dispose()


# --- brokers ---------------------------------------------------------------------------------------


def make_server_cert(workdir: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1/localhost (it is its own CA for the clients)."""
    cert, key = workdir / "server.crt", workdir / "server.key"
    subprocess.run(
        [require_binary("openssl"), "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def dynsec_init(path: Path, username: str, password: str) -> None:
    """The plugin's initial JSON with one admin client: ``mosquitto_ctrl dynsec init`` when present,
    else written here (same layout: base64 PBKDF2-SHA512 digest, salt and iteration count)."""
    ctrl = shutil.which("mosquitto_ctrl")
    if ctrl is not None:
        subprocess.run([ctrl, "dynsec", "init", str(path), username, password], check=True, capture_output=True)
        return
    _, _, iterations, salt, digest = mosquitto_hash(password).split("$")
    control = "$CONTROL/dynamic-security/#"
    acls = [{"acltype": t, "topic": control, "allow": True} for t in ("publishClientSend", "publishClientReceive", "subscribePattern")]
    document = {
        "clients": [{"username": username, "password": digest, "salt": salt, "iterations": int(iterations), "roles": [{"rolename": "admin"}]}],
        "roles": [{"rolename": "admin", "acls": acls}],
        "defaultACLAccess": {"publishClientSend": False, "publishClientReceive": True, "subscribe": False, "unsubscribe": True},
    }  # fmt: skip
    path.write_text(json.dumps(document))


def render_prod_config(workdir: Path, agent_port: int, collector_port: int, cert: Path, key: Path) -> str:
    """kassa-prod.conf as shipped, with only ports, paths and the run-as user swapped for the test.

    Each substitution must hit exactly once, so a change of the shipped file that these tests
    would silently stop covering fails here instead.
    """
    text = PROD_CONF.read_text()
    replacements = [
        (r"^user mosquitto$", f"user {getpass.getuser()}"),
        (r"^pid_file .*$", f"pid_file {workdir}/mosquitto.pid"),
        (r"^plugin_opt_config_file .*$", f"plugin_opt_config_file {workdir}/dynsec.json"),
        (r"^listener 8883$", f"listener {agent_port} 127.0.0.1"),
        (r"^certfile .*$", f"certfile {cert}"),
        (r"^keyfile .*$", f"keyfile {key}"),
        (r"^listener 1883 127\.0\.0\.1$", f"listener {collector_port} 127.0.0.1"),
        (r"^persistence_location .*$", f"persistence_location {workdir}/"),
        (r"^log_dest stderr$", f"log_dest file {workdir}/mosquitto.log"),
    ]
    for pattern, replacement in replacements:
        text, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
        assert count == 1, f"kassa-prod.conf: expected one line matching {pattern!r}, found {count}"
    plugin = re.search(r"^plugin (\S+)$", text, flags=re.MULTILINE)
    assert plugin is not None and Path(plugin.group(1)).exists(), "the dynamic-security plugin path does not exist"
    return text


FILES_CONF = """\
user {user}
listener {port} 127.0.0.1
allow_anonymous false
password_file {workdir}/passwd
acl_file {workdir}/acl
message_size_limit 1048576
persistence false
log_dest file {workdir}/mosquitto.log
log_type error
log_type warning
log_type notice
"""


@dataclass
class SecuredBroker:
    """A private Mosquitto with authentication; ``backend`` manages its accounts."""

    kind: str  # "dynsec" (the shipped production config) | "files" (password + ACL file)
    workdir: Path
    agent_port: int
    collector_port: int
    ca_file: Path | None = None
    backend: CredentialBackend | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def agent_url(self) -> str:
        scheme = "mqtts" if self.ca_file else "mqtt"
        return f"{scheme}://127.0.0.1:{self.agent_port}"

    def start(self, config: str) -> None:
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(config)
        log = (self.workdir / "stdout").open("ab")
        self.process = subprocess.Popen([require_binary("mosquitto"), "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 10
        for port in {self.agent_port, self.collector_port}:
            while not _accepting(port):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not start; see {self.workdir}")
                time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def probe(self, username: str | None, password: str | None, client_id: str, **kwargs: Any) -> MqttProbe:
        """Connect to the agents' listener (TLS when the broker has a certificate)."""
        return MqttProbe(self.agent_port, username, password, client_id, ca_file=self.ca_file, **kwargs)

    def collector(self, client_id: str = "kassa-collector-1", **kwargs: Any) -> MqttProbe:
        return MqttProbe(self.collector_port, COLLECTOR_USER, COLLECTOR_PASSWORD, client_id, **kwargs)


def _accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def start_dynsec_broker(workdir: Path) -> SecuredBroker:
    cert, key = make_server_cert(workdir)
    broker = SecuredBroker("dynsec", workdir, free_port(), free_port(), ca_file=cert)
    dynsec_init(workdir / "dynsec.json", ADMIN_USER, ADMIN_PASSWORD)
    broker.start(render_prod_config(workdir, broker.agent_port, broker.collector_port, cert, key))
    broker.backend = DynsecBackend(AdminConnection("127.0.0.1", broker.collector_port, ADMIN_USER, ADMIN_PASSWORD))
    broker.backend.ensure_collector(COLLECTOR_USER, COLLECTOR_PASSWORD)
    return broker


def start_files_broker(workdir: Path) -> SecuredBroker:
    port = free_port()
    broker = SecuredBroker("files", workdir, port, port)
    files = PasswordFileBackend(workdir / "passwd", workdir / "acl", collector_users=[COLLECTOR_USER])
    files.ensure_collector(COLLECTOR_USER, COLLECTOR_PASSWORD)  # the files must exist before the broker reads them
    broker.start(FILES_CONF.format(user=getpass.getuser(), port=port, workdir=workdir))
    assert broker.process is not None
    broker.backend = PasswordFileBackend(
        workdir / "passwd", workdir / "acl", collector_users=[COLLECTOR_USER], reload=SighupReload(pid=broker.process.pid)
    )
    return broker


@contextlib.contextmanager
def secured_broker(kind: str, workdir: Path) -> Iterator[SecuredBroker]:
    broker = start_dynsec_broker(workdir) if kind == "dynsec" else start_files_broker(workdir)
    try:
        yield broker
    finally:
        broker.stop()


class MqttProbe:
    """A paho client that records what the broker answered: CONNACK, SUBACK and PUBACK reason codes."""

    def __init__(
        self,
        port: int,
        username: str | None,
        password: str | None,
        client_id: str,
        *,
        ca_file: Path | None = None,
        protocol: int = mqtt.MQTTv5,
        timeout: float = 5.0,
    ) -> None:
        self.timeout = timeout
        self.messages: list[tuple[str, bytes]] = []
        self.connack: str | None = None
        self._suback: dict[int, list[Any]] = {}
        self._puback: dict[int, Any] = {}
        self._cond = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
        if username is not None:
            self.client.username_pw_set(username, password)
        if ca_file is not None:
            self.client.tls_set(ca_certs=str(ca_file))
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self.client.reconnect_delay_set(0.05, 0.1)
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        self._wait(lambda: self.connack is not None, "CONNACK")

    @property
    def accepted(self) -> bool:
        return self.connack == "Success"

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.connack = str(reason)
        if reason.is_failure:
            client.disconnect()  # refused: stop paho's loop from retrying (and close() from waiting for it)
        self._notify()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if self.connack is None:  # a v3.1.1 refusal may arrive as a disconnect
            self.connack = str(reason)
        self._notify()

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, reasons: list[Any], _p: Any) -> None:
        self._suback[mid] = reasons
        self._notify()

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        self._puback[mid] = reason
        self._notify()

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append((message.topic, bytes(message.payload)))
            self._cond.notify_all()

    def _wait(self, predicate: Any, what: str) -> None:
        with self._cond:
            if not self._cond.wait_for(predicate, self.timeout):
                pytest.fail(f"no {what} within {self.timeout} s")

    def subscribe(self, topic_filter: str) -> Any:
        """The SUBACK reason code of one filter (``.is_failure``, ``.value``: 0x87 = not authorized)."""
        _, mid = self.client.subscribe(topic_filter, qos=1)
        self._wait(lambda: mid in self._suback, f"SUBACK for {topic_filter}")
        return self._suback[mid][0]

    def publish(self, topic: str, payload: bytes = b"x") -> Any:
        """Publish QoS 1 and return the PUBACK reason code (MQTT 5 reports a refusal there)."""
        mid = self.client.publish(topic, payload, qos=1).mid
        self._wait(lambda: mid in self._puback, f"PUBACK for {topic}")
        return self._puback[mid]

    def wait_disconnected(self) -> None:
        self._wait(lambda: not self.client.is_connected(), "disconnect")

    def wait_for(self, topic: str, payload: bytes | None = None) -> None:
        self._wait(lambda: self.got(topic, payload), f"message on {topic}")

    def got(self, topic: str, payload: bytes | None = None) -> bool:
        return any(t == topic and (payload is None or p == payload) for t, p in self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connect_until(broker: SecuredBroker, username: str, password: str, *, accepted: bool, timeout: float = 5.0) -> MqttProbe:
    """Connect until the broker's answer is as expected (the password-file backend reloads asynchronously)."""
    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        attempt += 1
        probe = broker.probe(username, password, username if accepted else f"{username}-{attempt}")
        if probe.accepted == accepted or time.monotonic() > deadline:
            return probe
        probe.close()
        time.sleep(0.05)


# --- HTTP ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def serve(app: web.Application, *, ssl_context: ssl.SSLContext | None = None) -> Iterator[str]:
    """Run ``app`` on a loopback port in a thread of its own; yields the base URL."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-http", daemon=True)
    thread.start()
    runner = web.AppRunner(app)
    port = free_port()

    def call(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(10)

    call(runner.setup())
    call(web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context).start())
    try:
        yield f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    finally:
        call(runner.cleanup())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
