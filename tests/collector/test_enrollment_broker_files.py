"""Credential formats without a broker: Mosquitto ``$7$`` hashes (checked against mosquitto_passwd),
the ACL file, the dynamic-security ACL entries, and the password-file backend's bookkeeping."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: the helper next to us
import enrollment_testkit as kit

from collector.enrollment.acl import Access, AclRule, agent_rules, collector_rules
from collector.enrollment.broker import (
    AdminConnection,
    DynsecBackend,
    PasswordFileBackend,
    SighupReload,
    dynsec_acls,
    parse_password_file,
    render_acl_file,
)
from collector.enrollment.errors import BrokerError
from collector.enrollment.passwords import InvalidHash, mosquitto_hash, verify


def test_hashes_from_mosquitto_passwd_verify(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    subprocess.run([kit.require_binary("mosquitto_passwd"), "-c", "-b", str(passwd), "agent-1", "s3cret Пароль"], check=True)
    hashed = parse_password_file(passwd.read_text())["agent-1"]
    assert hashed.startswith("$7$101$")
    assert verify("s3cret Пароль", hashed) and not verify("s3cret", hashed)


def test_our_hash_has_mosquitto_passwds_layout() -> None:
    hashed = mosquitto_hash("pw", salt=bytes(range(12)), iterations=101)
    assert hashed == mosquitto_hash("pw", salt=bytes(range(12)), iterations=101)  # deterministic given the salt
    _, kind, iterations, salt, digest = hashed.split("$")
    assert (kind, iterations, salt, len(digest)) == ("7", "101", "AAECAwQFBgcICQoL", 88)  # 64 bytes in base64


@settings(max_examples=25, deadline=None)
@given(password=st.text(max_size=40), other=st.text(max_size=40))
def test_hash_round_trip(password: str, other: str) -> None:
    hashed = mosquitto_hash(password)
    assert verify(password, hashed)
    assert verify(other, hashed) == (other == password)


@pytest.mark.parametrize("bad", ["", "plain", "$6$abc$def", "$7$x$AAAA$AAAA", "$7$101$!!!$AAAA"])
def test_malformed_hashes_are_a_typed_error(bad: str) -> None:
    with pytest.raises(InvalidHash):
        verify("pw", bad)


def test_agent_rules_cover_exactly_its_uplink_and_downlink() -> None:
    assert agent_rules("pos-1") == (
        AclRule(Access.PUBLISH, "kassa/v1/pos-1/status"),
        AclRule(Access.PUBLISH, "kassa/v1/pos-1/birth"),
        AclRule(Access.PUBLISH, "kassa/v1/pos-1/state/+"),
        AclRule(Access.PUBLISH, "kassa/v1/pos-1/event/+"),
        AclRule(Access.PUBLISH, "kassa/v1/pos-1/hist"),
        AclRule(Access.READ, "kassa/v1/pos-1/ack"),
        AclRule(Access.READ, "kassa/v1/pos-1/cmd"),
        AclRule(Access.READ, "kassa/v1/_collector/status"),
    )


def test_acl_file_names_collectors_and_patterns_every_agent() -> None:
    text = render_acl_file(["kassa-collector"])
    body = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert body == [
        "user kassa-collector",
        "topic read kassa/v1/#",
        "topic write kassa/v1/+/ack",
        "topic write kassa/v1/+/cmd",
        "topic write kassa/v1/_collector/status",
        "pattern write kassa/v1/%u/status",
        "pattern write kassa/v1/%u/birth",
        "pattern write kassa/v1/%u/state/+",
        "pattern write kassa/v1/%u/event/+",
        "pattern write kassa/v1/%u/hist",
        "pattern read kassa/v1/%u/ack",
        "pattern read kassa/v1/%u/cmd",
        "pattern read kassa/v1/_collector/status",
    ]
    assert collector_rules()[0] == AclRule(Access.READ, "kassa/v1/#")


def test_dynsec_acls_read_is_subscribe_plus_receive_and_agents_receive_nothing_else() -> None:
    acls = dynsec_acls([AclRule(Access.PUBLISH, "a/b"), AclRule(Access.READ, "c/d")], deny_other_reads=True)
    assert acls == [
        {"acltype": "publishClientSend", "topic": "a/b", "allow": True},
        {"acltype": "subscribePattern", "topic": "c/d", "allow": True},
        {"acltype": "publishClientReceive", "topic": "c/d", "allow": True},
        {"acltype": "publishClientReceive", "topic": "#", "allow": False, "priority": -1},
    ]


def test_password_file_backend_adds_replaces_and_removes(tmp_path: Path) -> None:
    reloads: list[int] = []
    backend = PasswordFileBackend(
        tmp_path / "passwd", tmp_path / "acl", collector_users=["kassa-collector"], reload=lambda: reloads.append(1)
    )
    backend.ensure_collector("kassa-collector", "c-pw")
    backend.add_agent("pos-1", "one")
    backend.add_agent("pos-2", "two")
    backend.add_agent("pos-1", "one-again")
    backend.remove_agent("pos-2")
    backend.remove_agent("pos-2")  # already gone: not an error
    entries = parse_password_file((tmp_path / "passwd").read_text())
    assert sorted(entries) == ["kassa-collector", "pos-1"]
    assert verify("one-again", entries["pos-1"]) and verify("c-pw", entries["kassa-collector"])
    assert "user kassa-collector" in (tmp_path / "acl").read_text()
    assert len(reloads) == 6
    assert stat.S_IMODE((tmp_path / "passwd").stat().st_mode) == 0o640
    (tmp_path / "passwd").chmod(0o600)
    backend.add_agent("pos-3", "three")
    assert stat.S_IMODE((tmp_path / "passwd").stat().st_mode) == 0o600  # the operator's mode is kept


@pytest.mark.parametrize("bad", ["a/b", "+", "#", "%u", "", "_collector", "a b"])
def test_usernames_that_could_widen_an_acl_are_refused(tmp_path: Path, bad: str) -> None:
    backend = PasswordFileBackend(tmp_path / "passwd", tmp_path / "acl")
    with pytest.raises(ValueError, match="invalid broker username"):
        backend.add_agent(bad, "pw")
    with pytest.raises(ValueError, match="collector account"):
        backend.add_agent("kassa-collector", "pw")


def test_reload_and_admin_connection_failures_are_broker_errors(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match="pid"):
        SighupReload(pid_file=tmp_path / "missing.pid")()
    with pytest.raises(BrokerError, match="cannot reach"):
        DynsecBackend(AdminConnection("127.0.0.1", kit.free_port(), "admin", "pw", timeout=1)).add_agent("pos-1", "pw")
