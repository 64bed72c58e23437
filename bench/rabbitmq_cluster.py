"""A private 3-node RabbitMQ cluster (Debian's rabbitmq-server + rabbitmq_mqtt) on free loopback
ports, for the broker comparison in bench/cluster_brokers.py only: own node names, cookie, data
and log dirs, env file; the machine's own RabbitMQ is left alone."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SBIN = Path("/usr/lib/rabbitmq/bin")

NODE_CONF = """\
listeners.tcp.default = 127.0.0.1:{amqp}
mqtt.listeners.tcp.default = 127.0.0.1:{mqtt}
mqtt.allow_anonymous = false
mqtt.durable_queue_type = quorum
loopback_users = none
default_user = bench
default_pass = bench
cluster_formation.peer_discovery_backend = classic_config
{peers}
log.file.level = warning
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RabbitNode:
    name: str
    workdir: Path
    amqp: int = field(default_factory=free_port)
    mqtt: int = field(default_factory=free_port)
    dist: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def nodename(self) -> str:
        return f"{self.name}@localhost"

    def env(self) -> dict[str, str]:
        base = self.workdir / self.name
        return {
            **os.environ,
            "HOME": str(self.workdir),  # .erlang.cookie, shared by the three nodes
            "RABBITMQ_CONF_ENV_FILE": str(self.workdir / "rabbitmq-env.conf"),
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_DIST_PORT": str(self.dist),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.workdir / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(base / "pid"),
        }

    def start(self) -> None:
        log = (self.workdir / f"{self.name}.out").open("ab")
        self.process = subprocess.Popen([str(SBIN / "rabbitmq-server")], env=self.env(), stdout=log, stderr=log)
        log.close()

    def ctl(self, *args: str, timeout: float = 120) -> str:
        return subprocess.run(
            [str(SBIN / "rabbitmqctl"), "-n", self.nodename, *args], env=self.env(),
            capture_output=True, text=True, timeout=timeout, check=True,
        ).stdout

    def pid(self) -> int:
        return int((self.workdir / self.name / "pid").read_text().strip())

    def kill(self) -> None:
        os.kill(self.pid(), 9)


class RabbitCluster:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.nodes = [RabbitNode(f"kassa-bench-{index}", workdir) for index in (1, 2, 3)]

    def start(self, timeout: float = 300) -> float:
        """Start all three nodes and wait until they form one cluster; returns the seconds it took."""
        started = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / ".erlang.cookie").write_text(secrets.token_hex(16))
        (self.workdir / ".erlang.cookie").chmod(0o400)
        (self.workdir / "rabbitmq-env.conf").write_text("")
        (self.workdir / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        peers = "\n".join(
            f"cluster_formation.classic_config.nodes.{index} = {node.nodename}"
            for index, node in enumerate(self.nodes, 1)
        )
        for node in self.nodes:
            (self.workdir / node.name).mkdir(parents=True, exist_ok=True)
            (self.workdir / node.name / "rabbitmq.conf").write_text(
                NODE_CONF.format(amqp=node.amqp, mqtt=node.mqtt, peers=peers)
            )
            node.start()
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            while True:  # await_startup fails (69) until the node has registered with epmd
                try:
                    node.ctl("await_startup", timeout=max(1.0, deadline - time.monotonic()))
                    break
                except subprocess.CalledProcessError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(1)
        while time.monotonic() < deadline:
            status = self.nodes[0].ctl("cluster_status", "--formatter", "json")
            if all(node.nodename in status.split("running_nodes", 1)[-1] for node in self.nodes):
                return time.monotonic() - started
            time.sleep(1)
        raise RuntimeError(f"RabbitMQ cluster did not form within {timeout} s (logs in {self.workdir})")

    def stop(self) -> None:
        for node in self.nodes:
            try:
                node.ctl("stop", timeout=60)
            except (subprocess.SubprocessError, OSError):
                with contextlib.suppress(OSError, ValueError):
                    node.kill()
            if node.process is not None:
                try:
                    node.process.wait(30)
                except subprocess.TimeoutExpired:
                    node.process.kill()
