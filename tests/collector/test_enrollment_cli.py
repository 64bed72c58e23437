"""``kassa-collector enrollment token|revoke|broker-setup`` and the settings that build the backend."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: the helper next to us
import enrollment_testkit as kit

from collector.enrollment.broker import DynsecBackend, PasswordFileBackend, parse_password_file
from collector.enrollment.cli import add_parser
from collector.enrollment.passwords import verify
from collector.enrollment.settings import EnrollmentSettings
from collector.storage.agents import get_agent
from collector.storage.tree import create_node, create_tenant


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="kassa-collector")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_token_then_revoke_with_the_files_backend(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with kit.migrated_engine("sqlite", tmp_path) as engine:
        with engine.begin() as conn:
            node = create_node(conn, create_tenant(conn, "T"), parent_id=None, kind="store", name="S")
        db = str(engine.url)
        files = ["--backend", "files", "--password-file", str(tmp_path / "passwd"), "--acl-file", str(tmp_path / "acl")]
        common = ["enrollment", "--db", db, "--agent-broker", "mqtts://mqtt.kassa.test:8883", *files]

        assert run([*common, "token", "--node", str(node), "--ttl-hours", "2"]) == 0
        token = capsys.readouterr().out.strip().splitlines()[-1]
        settings = EnrollmentSettings(
            enroll_backend="files", broker_password_file=tmp_path / "passwd", broker_acl_file=tmp_path / "acl",
            enroll_broker_url="mqtts://mqtt.kassa.test:8883",
        )  # fmt: skip
        enrolled = settings.service(engine).redeem(token, "pos")
        assert enrolled.broker_url == "mqtts://mqtt.kassa.test:8883"
        assert verify(enrolled.password, parse_password_file((tmp_path / "passwd").read_text())[enrolled.agent_id])

        assert run([*common, "revoke", enrolled.agent_id]) == 0
        assert enrolled.agent_id not in parse_password_file((tmp_path / "passwd").read_text())
        with engine.connect() as conn:
            agent = get_agent(conn, enrolled.agent_id)
        assert agent is not None and agent.revoked
        assert run([*common, "revoke", "nobody-1"]) == 1
        assert "not enrolled" in capsys.readouterr().err
        assert run([*common, "token", "--node", "999999"]) == 1


def test_broker_setup_takes_the_password_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    files = ["--backend", "files", "--password-file", str(tmp_path / "passwd"), "--acl-file", str(tmp_path / "acl")]
    monkeypatch.delenv("KASSA_COLLECTOR_BROKER_PASSWORD", raising=False)
    assert run(["enrollment", *files, "broker-setup"]) == 2
    monkeypatch.setenv("KASSA_COLLECTOR_BROKER_PASSWORD", "collector-secret")
    assert run(["enrollment", *files, "broker-setup", "--collector-user", "kassa-collector"]) == 0
    assert verify("collector-secret", parse_password_file((tmp_path / "passwd").read_text())["kassa-collector"])
    assert "user kassa-collector" in (tmp_path / "acl").read_text()
    assert run(["enrollment", "--db", "mysql://x/y", "token", "--node", "1"]) == 2
    assert "unsupported database" in capsys.readouterr().err


def test_settings_from_the_collector_config_pick_the_backend() -> None:
    config = SimpleNamespace(broker_url="mqtt://10.0.0.2:1884", dynsec_admin_password="pw", unrelated=1)
    settings = EnrollmentSettings.from_config(config)
    assert settings.agent_broker_url == "mqtt://10.0.0.2:1884"
    assert isinstance(settings.backend(), DynsecBackend)
    with pytest.raises(ValueError, match="dynsec_admin_password"):
        EnrollmentSettings().backend()
    with pytest.raises(ValueError, match="broker_password_file"):
        EnrollmentSettings(enroll_backend="files").backend()
    files = EnrollmentSettings(enroll_backend="files", broker_password_file=Path("p"), broker_acl_file=Path("a"))
    assert isinstance(files.backend(), PasswordFileBackend)
    assert isinstance(files.service(sa.create_engine("sqlite://")).broker_url, str)
