"""``kassa-agent enroll`` as a subprocess against a collector HTTP server started here (the real
web app with the enrollment routes added) and a real Mosquitto running the production config:
the written config is 0600, keeps the installer's devices and comments, and the agent can use it
— until an operator revokes it. Also: the errors an installer sees for a bad token, an unreachable
collector and an untrusted TLS certificate, each with its own exit code.
"""

from __future__ import annotations

import json
import os
import ssl
import stat
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: the helper next to us
import enrollment_testkit as kit

from agent.config import load_config
from collector.enrollment.http import add_routes
from collector.enrollment.service import EnrollmentService
from collector.storage.tree import create_node, create_tenant
from collector.web import StaticTokenAuth, WebSettings, create_app

pytestmark = [pytest.mark.mosquitto]

ADMIN_TOKEN = "enrollment-test-admin-token"
EXISTING_CONFIG = """\
# POS 1 at Тверская: written by the installer after `kassa-agent detect`
heartbeat = 30

[outbox]
path = "{outbox}"

[[devices]]
protocol = "shtrih"
url = "/dev/ttyACM0"   # the register found by detect
baudrate = 115200
"""


@dataclass
class Collector:
    url: str
    node_id: int
    broker: kit.SecuredBroker

    def admin_post(self, path: str, body: dict[str, object]) -> tuple[int, dict[str, object]]:
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())

    def new_token(self) -> str:
        status, body = self.admin_post("/api/v1/enrollment-tokens", {"node_id": self.node_id})
        assert status == 201
        return str(body["token"])


def _collector_app(engine: sa.Engine, service: EnrollmentService) -> object:
    app = create_app(WebSettings(api_token=ADMIN_TOKEN), engine=engine, authenticator=StaticTokenAuth(ADMIN_TOKEN))
    add_routes(app, service)
    return app


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    broker_dir = tmp_path / "broker"
    broker_dir.mkdir()
    with kit.secured_broker("dynsec", broker_dir) as broker, kit.migrated_engine("sqlite", tmp_path) as engine:
        with engine.begin() as conn:
            tenant = create_tenant(conn, "Ромашка")
            node = create_node(conn, tenant, parent_id=None, kind="store", name="Тверская 1")
        assert broker.backend is not None
        service = EnrollmentService(engine, broker.backend, broker_url=broker.agent_url)
        with kit.serve(_collector_app(engine, service)) as url:  # type: ignore[arg-type]
            yield Collector(url, node, broker)


def agent_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("KASSA_AGENT_")}


def enroll(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "enroll", *args], capture_output=True, text=True, timeout=60, env=agent_env()
    )


def test_enroll_writes_a_0600_config_the_agent_uses_until_it_is_revoked(collector: Collector, tmp_path: Path) -> None:
    config = tmp_path / "etc" / "agent.toml"
    config.parent.mkdir()
    config.write_text(EXISTING_CONFIG.format(outbox=tmp_path / "outbox.sqlite"))
    config.chmod(0o644)
    token = collector.new_token()
    ca_file = collector.broker.ca_file
    assert ca_file is not None

    done = enroll("--collector", collector.url, "--token", token, "--config", str(config), "--ca-file", str(ca_file),
                  "--hostname", "POS-1")  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert "enrolled as agent pos-1-" in done.stdout and "next steps" in done.stdout
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    text = config.read_text()
    assert "# the register found by detect" in text and "heartbeat = 30" in text
    settings = load_config(config, env={})
    assert settings.agent_id.startswith("pos-1-") and settings.devices[0].url == "/dev/ttyACM0"
    assert settings.broker.url == collector.broker.agent_url and settings.broker.ca_file == ca_file
    username, password = settings.broker.credentials()
    assert username == settings.agent_id

    watcher = collector.broker.collector()
    watcher.subscribe("kassa/v1/#")
    agent = kit.MqttProbe(settings.broker.port, username, password, settings.agent_id, ca_file=settings.broker.ca_file)
    assert agent.accepted
    state_topic = f"kassa/v1/{settings.agent_id}/state/kkt-1"
    assert not agent.publish(state_topic, b"{}").is_failure
    watcher.wait_for(state_topic, b"{}")
    assert not agent.subscribe(f"kassa/v1/{settings.agent_id}/cmd").is_failure
    agent.close()

    # The real agent with this config: TLS, its credentials, its LWT and subscriptions all pass
    # the ACLs (its register is absent here; status and birth are published regardless).
    runtime = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(config)], env=agent_env(),
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        watcher.wait_for(f"kassa/v1/{settings.agent_id}/birth")
        watcher.wait_for(f"kassa/v1/{settings.agent_id}/status")
    finally:
        runtime.terminate()
        _, stderr = runtime.communicate(timeout=20)
    assert "not authorized" not in stderr.lower(), stderr

    again = enroll("--collector", collector.url, "--token", token, "--config", str(config), "--ca-file", str(ca_file))
    assert again.returncode == 2
    assert "already used" in again.stderr and "hint:" in again.stderr
    assert config.read_text() == text  # a refused enrollment leaves the config alone

    status, body = collector.admin_post(f"/api/v1/agents/{settings.agent_id}/revoke", {})
    assert (status, body["revoked"]) == (200, True)
    refused = kit.MqttProbe(settings.broker.port, username, password, settings.agent_id, ca_file=ca_file)
    assert refused.connack == "Not authorized"
    refused.close()
    watcher.close()


def test_enroll_creates_a_new_config_when_none_exists(collector: Collector, tmp_path: Path) -> None:
    config = tmp_path / "new" / "agent.toml"
    done = enroll("--collector", collector.url, "--token", collector.new_token(), "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert "[[devices]]" in config.read_text()  # commented example, the installer adds the register
    assert "kassa-agent detect" in done.stdout


def test_a_wrong_token_exits_2_with_a_hint(collector: Collector, tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    done = enroll("--collector", collector.url, "--token", "not-a-real-token", "--config", str(config))
    assert done.returncode == 2
    assert "refused the token" in done.stderr and "hint:" in done.stderr
    assert not config.exists()


def test_an_unreachable_collector_exits_3(tmp_path: Path) -> None:
    done = enroll("--collector", f"http://127.0.0.1:{kit.free_port()}", "--token", "t", "--config", str(tmp_path / "a.toml"),
                  "--timeout", "3")  # fmt: skip
    assert done.returncode == 3
    assert "cannot reach" in done.stderr


def test_an_untrusted_tls_certificate_exits_4_and_works_with_ca_file(tmp_path: Path) -> None:
    cert, key = kit.make_server_cert(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    broker_dir = tmp_path / "broker"
    broker_dir.mkdir()
    with kit.secured_broker("files", broker_dir) as broker, kit.migrated_engine("sqlite", tmp_path) as engine:
        with engine.begin() as conn:
            node = create_node(conn, create_tenant(conn, "T"), parent_id=None, kind="store", name="S")
        assert broker.backend is not None
        service = EnrollmentService(engine, broker.backend, broker_url=broker.agent_url)
        token = service.create_token(node, created_by="test").token
        with kit.serve(_collector_app(engine, service), ssl_context=context) as url:  # type: ignore[arg-type]
            config = tmp_path / "agent.toml"
            untrusted = enroll("--collector", url, "--token", token, "--config", str(config))
            assert untrusted.returncode == 4
            assert "not trusted" in untrusted.stderr and "--ca-file" in untrusted.stderr
            trusted = enroll("--collector", url, "--token", token, "--config", str(config), "--ca-file", str(cert))
            assert trusted.returncode == 0, trusted.stderr
        agent_id = trusted.stdout.split("enrolled as agent ")[1].split()[0]
        device = {"protocol": "shtrih", "url": "/dev/ttyACM0"}  # a new config has none yet
        password = load_config(config, env={}, overrides={"devices": [device]}).broker.password
        assert password is not None
        agent = kit.connect_until(broker, agent_id, password, accepted=True)  # password file + SIGHUP reload
        assert agent.accepted
        agent.close()
