"""A private 3-node NATS cluster (Debian's ``nats-server``) with JetStream and the MQTT gateway on
free loopback ports, for the cluster tests and ``bench/cluster_brokers.py`` (imported by path).

Each node has its own name, data dir and ports and leaves the machine's own NATS (4222) alone.
Credentials: ``users.conf`` in the cluster's work dir is included by every node's
``authorization`` block — the collector's enrollment backend rewrites it and sends each node a
reload (SIGHUP), the way an operator's config management would on real machines.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from netkit import free_ports

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
CLUSTER_NAME = "kassa"

NODE_CONF = """\
server_name: {name}
listen: 127.0.0.1:{client}
http: 127.0.0.1:{monitor}
max_payload: 1MB
jetstream {{
  store_dir: "{data}"
  max_memory_store: 64MB
  max_file_store: 1GB
}}
cluster {{
  name: {cluster}
  listen: 127.0.0.1:{route}
  routes: [{routes}]
}}
mqtt {{
  listen: 127.0.0.1:{mqtt}
  # Un-acked QoS 1 deliveries to MQTT subscribers come again after this (agents' downlink).
  ack_wait: "10s"
  stream_replicas: 3
}}
authorization {{
  include "users.conf"
}}
"""


def accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def require_nats_server() -> None:
    """Skip without the Debian package, except under CI, which must run these tests (``.ci/run``
    installs ``nats-server``)."""
    if Path(NATS_SERVER).exists():
        return
    message = "nats-server not installed: apt-get install nats-server"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class NatsNode:
    name: str
    workdir: Path
    client: int
    mqtt: int
    route: int
    monitor: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.client}"

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://127.0.0.1:{self.mqtt}"

    def start(self) -> None:
        log = open(self.workdir / f"{self.name}.log", "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            [NATS_SERVER, "-c", str(self.workdir / f"{self.name}.conf")],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
        )
        log.close()

    def kill(self) -> None:
        """SIGKILL: no goodbye to clients or peers, as when the machine dies."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def reload(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGHUP)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class NatsCluster:
    """Three nodes sharing one ``users.conf``; ``start`` waits until JetStream has a meta leader."""

    def __init__(self, workdir: Path, *, size: int = 3) -> None:
        self.workdir = workdir
        self.users_file = workdir / "users.conf"
        self.nodes = [NatsNode(f"n{index + 1}", workdir, 0, 0, 0, 0) for index in range(size)]
        self._choose_ports()

    def _choose_ports(self) -> None:
        ports = iter(free_ports(4 * len(self.nodes)))
        for node in self.nodes:
            node.client, node.mqtt, node.route, node.monitor = next(ports), next(ports), next(ports), next(ports)

    @property
    def nats_urls(self) -> list[str]:
        return [node.nats_url for node in self.nodes]

    @property
    def mqtt_urls(self) -> list[str]:
        return [node.mqtt_url for node in self.nodes]

    def write_configs(self) -> None:
        for node in self.nodes:
            routes = ", ".join(f"nats-route://127.0.0.1:{peer.route}" for peer in self.nodes if peer is not node)
            data = self.workdir / node.name / "jetstream"
            data.mkdir(parents=True, exist_ok=True)
            (self.workdir / f"{node.name}.conf").write_text(
                NODE_CONF.format(
                    name=node.name, client=node.client, monitor=node.monitor, data=data, cluster=CLUSTER_NAME,
                    route=node.route, routes=routes, mqtt=node.mqtt,
                )
            )

    def start(self, timeout: float = 30.0, attempts: int = 3) -> None:
        """Start every node; a node that lost one of its ports to another process between choosing
        and binding exits at once, and the whole cluster starts again on new ports."""
        if not self.users_file.exists():
            raise RuntimeError(f"{self.users_file} must exist before the nodes start (the users block)")
        for attempt in range(1, attempts + 1):
            self.write_configs()
            for node in self.nodes:
                node.start()
            try:
                self.wait_ready(timeout)
                return
            except RuntimeError:
                lost_port = any(not node.running for node in self.nodes) and "address already in use" in self._logs()
                if attempt == attempts or not lost_port:
                    raise
                self.stop()
                self._choose_ports()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Every running node accepts NATS and MQTT connections and JetStream is up cluster-wide."""
        deadline = time.monotonic() + timeout
        running = [node for node in self.nodes if node.running]
        while time.monotonic() < deadline:
            if any(not node.running for node in running):
                break  # a node exited (its log says why)
            if all(accepting(node.client) and accepting(node.mqtt) and _jetstream_ready(node) for node in running):
                return
            time.sleep(0.1)
        raise RuntimeError(f"NATS cluster not ready after {timeout} s: {self._logs()}")

    def _logs(self) -> str:
        return repr({node.name: (self.workdir / f"{node.name}.log").read_text()[-2000:] for node in self.nodes})

    def node_of_mqtt(self, url: str) -> NatsNode:
        return next(node for node in self.nodes if node.mqtt_url == url)

    def reload(self) -> None:
        for node in self.nodes:
            node.reload()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _jetstream_ready(node: NatsNode) -> bool:
    """The node's /healthz says JetStream is current (meta leader known, assets caught up)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{node.monitor}/healthz", timeout=1) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False
