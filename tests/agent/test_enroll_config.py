"""``kassa-agent enroll`` config editing: identity and credentials go in, everything else stays."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import validate
from agent.enroll import EnrollError, Enrollment, enroll_url, updated_config, write_config

EXAMPLE = Path(__file__).resolve().parents[2] / "packaging" / "agent.toml.example"
ENROLLED = Enrollment("pos-1-abcd0123", "mqtts://mqtt.kassa.test:8883", "pos-1-abcd0123", "pw-from-collector")


def test_the_shipped_example_gets_the_new_identity_and_keeps_everything_else() -> None:
    original = EXAMPLE.read_text()
    text = updated_config(original, ENROLLED, ca_file=Path("/etc/kassa-agent/ca.pem"))
    config = validate(tomllib.loads(text))
    assert config.agent_id == "pos-1-abcd0123"
    assert config.broker.credentials() == ("pos-1-abcd0123", "pw-from-collector")
    assert config.broker.url == "mqtts://mqtt.kassa.test:8883" and config.broker.keepalive == 30
    assert [d.url for d in config.devices] == ["/dev/ttyACM0"]
    # Only the four enrolled lines differ (username is added); comments stay where they were.
    removed = set(original.splitlines()) - set(text.splitlines())
    assert removed == {'agent_id = "store-0042-pos1"', 'url = "mqtts://mqtt.example.ru:8883"', 'password = "from-enrollment"'}
    assert "# Agent id: MQTT client id and username." in text


def test_a_config_without_identity_or_broker_table_gets_both() -> None:
    original = '[[devices]]\nprotocol = "atol"\nurl = "socket://10.0.0.5:5555"\n'
    parsed = tomllib.loads(updated_config(original, ENROLLED))
    assert parsed["agent_id"] == "pos-1-abcd0123" and parsed["broker"]["password"] == "pw-from-collector"
    assert parsed["devices"] == [{"protocol": "atol", "url": "socket://10.0.0.5:5555"}]


def test_no_config_yet_gives_a_commented_starting_point() -> None:
    text = updated_config(None, ENROLLED)
    parsed = tomllib.loads(text)
    assert (parsed["agent_id"], parsed["broker"]["url"]) == ("pos-1-abcd0123", "mqtts://mqtt.kassa.test:8883")
    assert "kassa-agent detect" in text and "devices" not in parsed


def test_the_ca_file_is_written_only_for_a_tls_broker() -> None:
    plain = Enrollment("a-1", "mqtt://10.0.0.1:1883", "a-1", "pw")
    assert "ca_file" not in tomllib.loads(updated_config(None, plain, ca_file=Path("/ca.pem")))["broker"]


def test_a_config_it_cannot_edit_safely_is_refused() -> None:
    with pytest.raises(EnrollError, match=r"fix the file by hand|cleanly"):
        updated_config('broker.url = "mqtt://old:1883"\n[[devices]]\nprotocol = "shtrih"\nurl = "/dev/ttyS0"\n', ENROLLED)


@settings(max_examples=40, deadline=None)
@given(password=st.text(min_size=1, max_size=30))
def test_any_password_survives_the_round_trip(password: str) -> None:
    enrolled = Enrollment("a-1", "mqtt://h:1883", "a-1", password)
    assert tomllib.loads(updated_config(EXAMPLE.read_text(), enrolled))["broker"]["password"] == password


def test_write_config_is_0600_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "etc" / "agent.toml"
    write_config(target, "a = 1\n")
    target.chmod(0o644)
    write_config(target, "a = 2\n")
    assert target.read_text() == "a = 2\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert os.listdir(target.parent) == ["agent.toml"]
    with pytest.raises(EnrollError, match="no such user"):
        write_config(target, "a = 3\n", owner="no-such-user-kassa")
    assert target.read_text() == "a = 2\n" and os.listdir(target.parent) == ["agent.toml"]


@pytest.mark.parametrize("bad", ["collector.example.ru", "ftp://x", "https://"])
def test_collector_urls_must_be_http_or_https(bad: str) -> None:
    with pytest.raises(EnrollError, match="must look like"):
        enroll_url(bad)
    assert enroll_url("https://c.example.ru/") == "https://c.example.ru/api/v1/enroll"
