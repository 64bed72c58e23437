"""Collector settings (TOML ← env ← flags), the CLI's subcommand discovery and ``migrate``, and
the service starting the web app on ``--listen``."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from collector.cli import build_parser, main
from collector.config import CollectorConfigError, load_config
from collector.ingest.consumer import subscription_filters
from collector.service import CollectorService, writer_settings
from collector.storage.migrations import current_revisions, head_revisions


def test_sources_merge_file_then_environment_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "collector.toml"
    path.write_text(
        'db_url = "sqlite:///from-file.db"\nclient_id = "c-file"\nbatch_max_rows = 100\n'
        "[thresholds]\nofd_backlog_critical = 1728000\n"
    )
    env = {"KASSA_COLLECTOR_CLIENT_ID": "c-env", "KASSA_COLLECTOR_SHARED": "true", "PATH": "/bin"}
    config = load_config(path, env=env, overrides={"batch_max_rows": 50, "db_url": None})
    assert config.db_url == "sqlite:///from-file.db"  # a flag left unset does not override
    assert config.client_id == "c-env"
    assert config.shared is True
    assert config.batch_max_rows == 50
    assert config.alert_thresholds().ofd_backlog_critical.days == 20
    assert load_config(None, env={"KASSA_COLLECTOR_CONFIG": str(path)}).client_id == "c-file"


@pytest.mark.parametrize(
    ("overrides", "env", "fragment"),
    [
        ({"listen": "8080"}, {}, "listen"),
        ({"broker_url": "http://x"}, {}, "broker_url"),
        ({"client_id": "has space"}, {}, "client_id"),
        ({"thresholds": {"shift_warning": 999_999}}, {}, "thresholds"),
        ({}, {"KASSA_COLLECTOR_DB_ULR": "typo"}, "KASSA_COLLECTOR_DB_ULR"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(overrides: dict[str, Any], env: dict[str, str], fragment: str) -> None:
    with pytest.raises(CollectorConfigError, match=fragment):
        load_config(None, env=env, overrides=overrides)


def test_broker_credentials_and_shared_subscription_filters() -> None:
    config = load_config(None, overrides={"broker_url": "mqtts://coll%40a:s3cret@broker:8883", "shared": True})
    assert config.broker_credentials() == ("coll@a", "s3cret")
    assert (config.broker_host, config.broker_port, config.broker_tls) == ("broker", 8883, True)
    filters = subscription_filters(config)
    assert filters and all(f.startswith("$share/collectors/kassa/v1/+/") for f in filters)
    assert writer_settings(config).contiguous_acks is False  # gaps are normal under $share


def test_the_cli_discovers_subcommand_modules() -> None:
    parser = build_parser()
    args = parser.parse_args(["run", "--broker", "mqtt://b:1883", "--db", "sqlite:///x.db", "--listen", "0.0.0.0:9000"])
    assert (args.broker, args.db, args.listen) == ("mqtt://b:1883", "sqlite:///x.db", "0.0.0.0:9000")
    with pytest.raises(SystemExit):
        parser.parse_args(["no-such-command"])


def test_migrate_creates_then_reports_the_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/c.db"
    assert main(["migrate", "--db", url]) == 0
    assert set(current_revisions(url)) == set(head_revisions())
    assert main(["migrate", "--db", url]) == 0
    assert "already at" in capsys.readouterr().out
    assert main(["migrate", "--db", "mysql://x/y"]) == 2


def test_the_service_serves_the_web_app_on_listen(tmp_path: Path) -> None:
    from aiohttp import web

    seen: dict[str, Any] = {}

    def factory(config: Any, *, engine: Any = None, metrics_registry: Any = None) -> web.Application:
        seen.update(engine=engine, registry=metrics_registry)
        async def ping(request: web.Request) -> web.Response:
            return web.json_response({"db": config.db_url})

        app = web.Application()
        app.router.add_get("/ping", ping)
        return app

    port = _free_port()
    config = load_config(None, overrides={
        "db_url": f"sqlite:///{tmp_path}/w.db", "listen": f"127.0.0.1:{port}", "broker_url": "mqtt://127.0.0.1:1",
    })
    service = CollectorService(config, app_factory=factory)
    service.start(wait_for_broker=None)  # no broker: ingest retries in the background
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5) as response:
            assert json.load(response) == {"db": config.db_url}
        assert seen["engine"] is service.engine and seen["registry"] is service.metrics.registry
    finally:
        service.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_a_nats_broker_means_competing_consumers_and_takes_fallback_nodes() -> None:
    config = load_config(overrides={
        "broker_url": "nats://n1:4222", "broker_fallback_urls": ["nats://n2:4222", "nats://n3:4222"],
    })
    assert config.broker_urls == ["nats://n1:4222", "nats://n2:4222", "nats://n3:4222"]
    assert config.competing_consumers and not writer_settings(config).contiguous_acks
    assert not load_config(overrides={"broker_url": "mqtt://h:1883"}).competing_consumers
    with pytest.raises(CollectorConfigError, match="broker_fallback_urls"):
        load_config(overrides={"broker_url": "mqtt://h:1883", "broker_fallback_urls": ["mqtt://h2:1883"]})


def test_shipped_cluster_collector_example_is_valid() -> None:
    example = Path(__file__).parents[2] / "packaging" / "nats" / "collector.toml.example"
    config = load_config(example, overrides={"broker_password": "from-secrets-env"})
    assert config.competing_consumers and len(config.broker_urls) == 3
    assert config.enroll_backend == "nats" and config.enrollment_enabled
