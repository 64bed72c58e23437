"""The NATS users file of the cluster deployment (collector/enrollment/nats_users.py): the same
rules as the Mosquitto ACLs, bcrypt hashes nats-server checks, rewritten without losing accounts,
and accepted by nats-server itself when it is installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import bcrypt
import pytest

from collector.enrollment.acl import agent_rules
from collector.enrollment.nats_users import (
    MQTT_DELIVERY_SUBJECTS,
    NatsUsersBackend,
    agent_permissions,
    parse_accounts,
)

sys.path.insert(0, str(Path(__file__).parents[1]))  # importlib mode: tests/natskit.py
from natskit import NATS_SERVER, require_nats_server


def test_agent_permissions_are_the_acl_rules_as_subjects() -> None:
    permissions = agent_permissions(agent_rules("pos-1"))
    assert permissions["publish"]["allow"] == [
        "kassa.v1.pos-1.status", "kassa.v1.pos-1.birth", "kassa.v1.pos-1.state.*", "kassa.v1.pos-1.event.*",
        "kassa.v1.pos-1.hist",
    ]
    assert permissions["subscribe"]["allow"] == [
        "kassa.v1.pos-1.ack", "kassa.v1.pos-1.cmd", "kassa.v1._collector.status", MQTT_DELIVERY_SUBJECTS,
    ]


def test_accounts_survive_rewrites_and_revocation_removes_one(tmp_path: Path) -> None:
    reloads: list[int] = []
    backend = NatsUsersBackend(tmp_path / "users.conf", reload=lambda: reloads.append(1))
    backend.ensure_collector("kassa-collector", "c-secret")
    backend.add_agent("pos-1", "p1-secret")
    backend.add_agent("pos-2", "p2-secret")
    backend.remove_agent("pos-2")
    backend.remove_agent("never-enrolled")  # not an error
    accounts = parse_accounts((tmp_path / "users.conf").read_text())
    assert sorted(accounts) == ["kassa-collector", "pos-1"]
    assert accounts["pos-1"][0] == "agent" and accounts["kassa-collector"][0] == "collector"
    assert bcrypt.checkpw(b"p1-secret", accounts["pos-1"][1].encode())
    assert "p1-secret" not in (tmp_path / "users.conf").read_text()
    assert len(reloads) == 5


def test_collector_names_and_pattern_characters_are_refused(tmp_path: Path) -> None:
    backend = NatsUsersBackend(tmp_path / "users.conf")
    with pytest.raises(ValueError, match="collector account"):
        backend.add_agent("kassa-collector", "x")
    for bad in ("a/b", "a+b", "a#", "*", "a>b", ""):
        with pytest.raises(ValueError):
            backend.add_agent(bad, "x")


def test_nats_server_accepts_the_file(tmp_path: Path) -> None:
    require_nats_server()  # skips without the package, except under CI
    backend = NatsUsersBackend(tmp_path / "users.conf")
    backend.ensure_collector("kassa-collector", "c-secret")
    backend.add_agent("pos-1", "p1-secret")
    (tmp_path / "node.conf").write_text('listen: 127.0.0.1:-1\nauthorization {\n  include "users.conf"\n}\n')
    checked = subprocess.run([NATS_SERVER, "-c", str(tmp_path / "node.conf"), "-t"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr + checked.stdout
