"""Root fixtures: a private MQTT broker per test and a small recording MQTT client.

The broker is a real ``mosquitto`` on a free loopback port with its own generated config and
temp dir, so tests can stop, kill (-9) and restart it to simulate outages. Without a mosquitto
binary the fixture falls back to an amqtt broker subprocess (same start/stop/kill API); under
``CI=true`` a missing mosquitto fails the test instead, because CI must test the real broker.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# ``user``: mosquitto started as root drops to user "mosquitto", which cannot write our temp dir.
MOSQUITTO_CONF = """\
user {user}
listener {port} 127.0.0.1
allow_anonymous true
persistence true
persistence_location {data}/
autosave_interval 1
max_queued_messages 100000
max_inflight_messages 0
message_size_limit 1048576
log_dest file {data}/mosquitto.log
log_type error
log_type warning
log_type notice
"""

AMQTT_CONF = """\
listeners:
  default:
    type: tcp
    bind: 127.0.0.1:{port}
auth:
  allow-anonymous: true
  plugins: [auth_anonymous]
topic-check:
  enabled: false
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class Broker:
    """A broker subprocess on a fixed port; ``stop``/``kill``/``start`` keep the port and data."""

    workdir: Path
    port: int
    kind: str  # "mosquitto" | "amqtt"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _command(self) -> list[str]:
        if self.kind == "mosquitto":
            conf = self.workdir / "mosquitto.conf"
            conf.write_text(MOSQUITTO_CONF.format(port=self.port, data=self.workdir, user=getpass.getuser()))
            return [shutil.which("mosquitto") or "mosquitto", "-c", str(conf)]
        conf = self.workdir / "amqtt.yaml"
        conf.write_text(AMQTT_CONF.format(port=self.port))
        amqtt = Path(sys.prefix) / "bin" / "amqtt"  # the venv's console script
        return [str(amqtt) if amqtt.exists() else "amqtt", "-c", str(conf)]

    def start(self, timeout: float = 10.0) -> None:
        if self.running:
            return
        log = (self.workdir / f"{self.kind}.stdout").open("ab")
        self.process = subprocess.Popen(self._command(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.process.returncode}; see {self.workdir}")
            if _accepting(self.port):
                return
            time.sleep(0.02)
        raise RuntimeError(f"{self.kind} did not listen on {self.port} within {timeout} s")

    def stop(self) -> None:
        """Graceful stop (SIGTERM): clients see a clean TCP close."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: the broker vanishes without saving anything since its last autosave."""
        self._signal(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _signal(self, sig: signal.Signals) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def _broker_kind() -> str:
    if shutil.which("mosquitto"):
        return "mosquitto"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("mosquitto binary not found and CI=true: the suite must run against a real Mosquitto")
    return "amqtt"


@pytest.fixture
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A fresh private broker for one test (mosquitto, or amqtt when mosquitto is absent)."""
    broker = Broker(workdir=tmp_path_factory.mktemp("broker"), port=free_port(), kind=_broker_kind())
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    at: float
    qos: int = 1


class MqttRecorder:
    """A paho client that records everything on its subscriptions, for assertions in tests."""

    def __init__(self, broker: Broker, topics: list[str], client_id: str, persistent: bool = False) -> None:
        import paho.mqtt.client as mqtt

        self._mqtt = mqtt
        self.messages: list[Received] = []
        self._cond = threading.Condition()
        self._topics = topics
        self._connected = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not persistent
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = lambda *args: self._connected.clear()
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect_async(broker.host, broker.port, keepalive=10)
        self.client.loop_start()
        if not self._connected.wait(10):
            raise RuntimeError("test recorder could not connect to the broker")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            for topic in self._topics:
                client.subscribe(topic, qos=1)
            self._connected.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._cond:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain), time.monotonic(), msg.qos))
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 10.0) -> list[Received]:
        """Block until ``predicate(messages)`` is true; fail the test with what arrived otherwise."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(m.topic, m.payload[:120]) for m in self.messages[-15:]]
                    pytest.fail(f"timed out after {timeout} s; last messages: {seen}")
                self._cond.wait(min(left, 0.1))
            return list(self.messages)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        if not self._connected.wait(10):
            pytest.fail("test recorder is not connected to the broker")
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def mqtt_recorder(mqtt_broker: Broker) -> Iterator[Callable[..., MqttRecorder]]:
    """Factory: ``mqtt_recorder(["kassa/v1/#"])`` subscribes and records; closed after the test."""
    made: list[MqttRecorder] = []

    def make(topics: list[str], client_id: str | None = None, persistent: bool = False) -> MqttRecorder:
        """``persistent``: a broker-side session, so nothing is missed across a broker restart."""
        recorder = MqttRecorder(mqtt_broker, topics, client_id or f"test-recorder-{len(made)}", persistent)
        made.append(recorder)
        return recorder

    yield make
    for recorder in made:
        recorder.close()


class ModelRegister:
    """An in-process simulated register for runtime tests: a ``RegisterModel`` behind ``poll()``.

    It renders the model straight into a ``RegisterState`` (what a driver would read over the
    wire), and ``unplug()``/``replug()`` make ``poll`` raise ``LinkClosed`` like a pulled cable.
    Driver-vs-simulator wire tests live with the drivers; here the runtime is under test.
    """

    def __init__(self, clock: Callable[[], Any] | None = None) -> None:
        from datetime import datetime

        from firmware_sim.model import RegisterModel

        self.model = RegisterModel(clock=clock or (lambda: datetime.now().replace(microsecond=0)))
        self.plugged = True
        self.polls = 0
        self.lock = threading.Lock()

    def unplug(self) -> None:
        self.plugged = False

    def replug(self) -> None:
        self.plugged = True

    def poll(self) -> Any:
        from agent.drivers.link import LinkClosed
        from protocol.kkt.fn import FnWarning
        from protocol.kkt.vocabulary import Vendor
        from protocol.mqtt.wire import DeviceState, FnState, OfdState, RegisterState, ShiftState

        with self.lock:
            self.polls += 1
            if not self.plugged:
                raise LinkClosed("device disappeared", "check the USB cable")
            m = self.model
            flags = m.warnings()
            oldest = m.ofd_queue[0] if m.ofd_queue else None
            return RegisterState(
                vendor=Vendor.SHTRIH,
                protocol="shtrih",
                model=m.model_name,
                serial=m.serial,
                rnm=m.rnm,
                inn=m.inn,
                firmware=m.firmware,
                ffd_version=m.ffd_version,
                register_clock=m.now(),
                last_fd_number=m.last_fd_number,
                shift=ShiftState(
                    status=m.shift_status(),
                    number=m.shift_number,
                    receipts=m.receipts_in_shift,
                    opened_at=m.shift_opened_at,
                ),
                fn=FnState(
                    serial=m.fn_serial,
                    phase=int(m.fn_phase),
                    fiscal=int(m.fn_phase) == 3,
                    valid_until=m.fn_valid_until,
                    documents_left=m.documents_left,
                    warning_flags=int(flags),
                    warnings=[f.name for f in FnWarning if f in flags and f.name],
                ),
                ofd=OfdState(
                    unsent_count=len(m.ofd_queue),
                    first_unsent_number=oldest.number if oldest else None,
                    first_unsent_at=oldest.created_at if oldest else None,
                    transport_connected=m.ofd_connected,
                ),
                device=DeviceState(paper_present=m.paper_present, cover_open=m.cover_open),
            )

    def close(self) -> None:
        return None

    def change(self, action: Callable[[Any], Any]) -> Any:
        """Mutate the model atomically with respect to polls (e.g. ``reg.change(lambda m: m.open_shift())``)."""
        with self.lock:
            return action(self.model)


@pytest.fixture
def model_register() -> ModelRegister:
    return ModelRegister()


AGENT_RUNNER = '''
"""Test agent process: the real AgentRuntime polling an in-process ModelRegister.

Every poll toggles the shift (one shift_opened/shift_closed event per poll), and every event
the runtime created is appended to EVENTS_LOG as "session seq kind" after it is in the outbox.
"""
import signal
import sys

sys.path.insert(0, {tests_dir!r})
from conftest import ModelRegister  # noqa: E402

from agent.config import load_config  # noqa: E402
from agent.logging_setup import configure_logging  # noqa: E402
from agent.runtime import AgentRuntime  # noqa: E402


class TogglingRegister(ModelRegister):
    def poll(self):
        with self.lock:
            if not {toggle!r}:
                return super().poll()
            if self.model.shift_open:
                self.model.close_shift()
            else:
                self.model.open_shift()
        return super().poll()


config = load_config({config!r}, env={{}})
configure_logging("text", "INFO")
register = TogglingRegister()
runtime = AgentRuntime(config, opener=lambda device: register)
log = open({events_log!r}, "a", buffering=1)
emit_event = runtime.emit_event


def logged_emit(register_id, kind, *args, **kwargs):
    session, seq = emit_event(register_id, kind, *args, **kwargs)
    log.write(f"{{session}} {{seq}} {{kind}}\\n")
    return session, seq


runtime.emit_event = logged_emit
signal.signal(signal.SIGTERM, lambda *a: runtime.stopping.set())
runtime.run_forever()
'''


class AgentProcess:
    """``AgentRuntime`` in a child process (so tests can SIGKILL it), configured from a TOML file."""

    def __init__(self, workdir: Path, config_toml: str, toggle: bool = True) -> None:
        self.workdir = workdir
        self.config_path = workdir / "agent.toml"
        self.config_path.write_text(config_toml)
        self.events_log = workdir / "events.log"
        self.script = workdir / "run_agent.py"
        self.script.write_text(
            AGENT_RUNNER.format(
                tests_dir=str(Path(__file__).parent),
                config=str(self.config_path),
                events_log=str(self.events_log),
                toggle=toggle,
            )
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.workdir / "agent.stderr").open("ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("KASSA_AGENT_")}
        self.process = subprocess.Popen([sys.executable, str(self.script)], stderr=log, env=env)
        log.close()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def terminate(self, timeout: float = 10.0) -> int:
        assert self.process is not None
        self.process.terminate()
        return self.process.wait(timeout)

    def created_events(self) -> list[tuple[int, int, str]]:
        if not self.events_log.exists():
            return []
        rows = []
        for line in self.events_log.read_text().splitlines():
            session, seq, kind = line.split()
            rows.append((int(session), int(seq), kind))
        return rows

    def stderr(self) -> str:
        path = self.workdir / "agent.stderr"
        return path.read_text(errors="replace") if path.exists() else ""


def agent_toml(broker: Broker, workdir: Path, agent_id: str, **extra: Any) -> str:
    """A TOML config for test agents: short intervals so outages and reconnects take ~1 s."""
    settings: dict[str, Any] = {"heartbeat": 60, "ack_mode": "collector", "poll": 0.2, "keepalive": 2}
    settings.update(extra)
    return f"""
agent_id = "{agent_id}"
heartbeat = {settings["heartbeat"]}
ack_mode = "{settings["ack_mode"]}"
health_file = "{workdir / "health.json"}"
[broker]
url = "{broker.url}"
keepalive = {settings["keepalive"]}
reconnect_min = 0.05
reconnect_max = 0.5
[outbox]
path = "{workdir / "outbox.sqlite"}"
commit_interval = 0.05
[[devices]]
protocol = "shtrih"
url = "sim://shtrih"
poll_interval = {settings["poll"]}
register_id = "kkt-1"
"""


@pytest.fixture
def agent_process(mqtt_broker: Broker, tmp_path: Path) -> Iterator[Callable[..., AgentProcess]]:
    """Factory: ``agent_process("agent-id", poll=0.2)`` writes the config; call ``.start()``.

    ``toggle=False``: the register stays unchanged (no events, no outbox writes after the first state).
    """
    made: list[AgentProcess] = []

    def make(agent_id: str, toggle: bool = True, **extra: Any) -> AgentProcess:
        workdir = tmp_path / f"agent-{len(made)}"
        workdir.mkdir()
        proc = AgentProcess(workdir, agent_toml(mqtt_broker, workdir, agent_id, **extra), toggle)
        made.append(proc)
        return proc

    yield make
    for proc in made:
        proc.kill()
