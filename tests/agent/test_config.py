"""Agent configuration: file < environment < flags, and errors that name the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.commands.config_check import add_parser as add_config_check
from agent.commands.config_check import redacted
from agent.commands.run import add_parser as add_run
from agent.config import ConfigError, load_config, parse_device_spec
from protocol.mqtt.actions import ActionName

EXAMPLE = Path(__file__).parents[2] / "packaging" / "agent.toml.example"

GOOD = """
agent_id = "store-1"
heartbeat = 30
[broker]
url = "mqtt://broker.local:1884"
password = "s3cret"
[[devices]]
protocol = "shtrih"
url = "/dev/ttyACM0"
baudrate = 115200
[[devices]]
protocol = "atol"
url = "socket://10.0.0.5:5555"
poll_interval = 5
register_id = "front-desk"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return exc.value.problems


def test_file_is_read_and_defaults_filled(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD), env={})
    assert config.agent_id == "store-1"
    assert config.heartbeat == 30
    assert (config.broker.host, config.broker.port, config.broker.tls) == ("broker.local", 1884, False)
    assert config.broker.keepalive == 30
    assert config.ack_mode == "collector"
    assert [d.protocol for d in config.devices] == ["shtrih", "atol"]
    assert config.devices[0].poll_interval == 10.0
    assert config.devices[1].register_id == "front-desk"


def test_shipped_example_is_valid() -> None:
    config = load_config(EXAMPLE, env={})
    assert config.broker.tls and config.broker.port == 8883
    assert config.devices[0].url == "/dev/ttyACM0"


def test_bad_device_key_is_named_with_its_index(tmp_path: Path) -> None:
    bad = GOOD.replace('poll_interval = 5', 'poll_interval = 5\nbaudrate = 12345')
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, bad), env={})
    assert any(p.startswith("devices[1].baudrate:") and "12345" in p for p in problems_of(exc))


def test_unknown_key_and_bad_broker_url_are_both_reported(tmp_path: Path) -> None:
    bad = GOOD.replace('heartbeat = 30', 'heartbeat = 30\nhartbeat = 5').replace("mqtt://", "http://")
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, bad), env={})
    text = "\n".join(problems_of(exc))
    assert "hartbeat:" in text
    assert "broker.url:" in text and "mqtt://" in text


def test_environment_overrides_file_and_flags_override_environment(tmp_path: Path) -> None:
    env = {"KASSA_AGENT_BROKER": "mqtts://env.example:8883", "KASSA_AGENT_ID": "from-env", "KASSA_AGENT_HEARTBEAT": "7"}
    config = load_config(write(tmp_path, GOOD), env=env, overrides={"agent_id": "from-flag"})
    assert config.broker.url == "mqtts://env.example:8883" and config.broker.port == 8883
    assert config.broker.password == "s3cret"  # env replaced only the url inside [broker]
    assert config.heartbeat == 7
    assert config.agent_id == "from-flag"


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    assert load_config(None, env={"KASSA_AGENT_CONFIG": str(path)}).agent_id == "store-1"


def test_unknown_environment_variable_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, GOOD), env={"KASSA_AGENT_BORKER": "mqtt://x"})
    assert problems_of(exc)[0].startswith("KASSA_AGENT_BORKER: unknown setting")


def test_missing_and_broken_files_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml", env={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "agent_id = "), env={})


@pytest.mark.parametrize("agent_id", ["", "_collector", "a/b", "x+", "has space", "a" * 65])
def test_agent_id_must_be_topic_safe(agent_id: str) -> None:
    raw = {"agent_id": agent_id, "devices": [{"protocol": "shtrih", "url": "sim://shtrih"}]}
    with pytest.raises(ConfigError) as exc:
        load_config(None, env={}, overrides=raw)
    assert problems_of(exc)[0].startswith("agent_id:")


def test_no_devices_is_an_error() -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(None, env={}, overrides={"agent_id": "a1", "devices": []})
    assert problems_of(exc)[0].startswith("devices:")


def test_client_cert_needs_its_key() -> None:
    raw = {
        "agent_id": "a1",
        "devices": [{"protocol": "shtrih", "url": "sim://shtrih"}],
        "broker": {"url": "mqtts://b:8883", "client_cert": "/x.crt"},
    }
    with pytest.raises(ConfigError, match="client_key"):
        load_config(None, env={}, overrides=raw)


def test_credentials_from_url_userinfo() -> None:
    raw = {"agent_id": "a1", "devices": [{"protocol": "shtrih", "url": "sim://shtrih"}],
           "broker": {"url": "mqtt://user%40x:p%3Ass@b:1883"}}
    assert load_config(None, env={}, overrides=raw).broker.credentials() == ("user@x", "p:ss")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("shtrih,/dev/ttyACM0", {"protocol": "shtrih", "url": "/dev/ttyACM0"}),
        ("atol,socket://h:5555,115200", {"protocol": "atol", "url": "socket://h:5555", "baudrate": "115200"}),
    ],
)
def test_device_spec(spec: str, expected: dict[str, str]) -> None:
    assert parse_device_spec(spec) == expected


@pytest.mark.parametrize("spec", ["shtrih", "shtrih,", "a,b,c,d"])
def test_bad_device_spec(spec: str) -> None:
    with pytest.raises(ConfigError, match="PROTOCOL,URL"):
        parse_device_spec(spec)


def _cli(argv: list[str]) -> object:
    import argparse

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    add_run(sub)
    add_config_check(sub)
    return parser.parse_args(argv)


def test_run_flags_without_file(monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.commands.run import config_from_args

    monkeypatch.delenv("KASSA_AGENT_CONFIG", raising=False)
    args = _cli([
        "run", "--broker", "mqtt://127.0.0.1:1883", "--agent-id", "a1", "--device", "shtrih,sim://shtrih",
        "--device", "atol,socket://h:5555,57600", "--outbox", "/tmp/o.sqlite", "--poll", "2",
    ])
    config = config_from_args(args)  # type: ignore[arg-type]
    assert [d.poll_interval for d in config.devices] == [2.0, 2.0]
    assert config.devices[1].baudrate == 57600
    assert str(config.outbox.path) == "/tmp/o.sqlite"


def test_config_check_reports_bad_key_and_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.commands.config_check import config_check_command

    monkeypatch.delenv("KASSA_AGENT_CONFIG", raising=False)
    bad = write(tmp_path, GOOD.replace("baudrate = 115200", "baudrate = 7"))
    assert config_check_command(_cli(["config", "check", "--config", str(bad)])) == 2  # type: ignore[arg-type]
    assert "devices[0].baudrate:" in capsys.readouterr().err
    good = write(tmp_path, GOOD)
    assert config_check_command(_cli(["config", "check", "--config", str(good)])) == 0  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert "config OK" in out and "device[1]: atol socket://10.0.0.5:5555" in out


def test_redacted_hides_password(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD), env={})
    assert redacted(config)["broker"]["password"] == "***"


def test_register_passwords_per_device_with_their_limits_and_hidden_in_the_check() -> None:
    raw = {"agent_id": "a1", "devices": [
        {"protocol": "shtrih", "url": "x", "action_password": 29},
        {"protocol": "atol", "url": "y", "access_password": 42, "action_password": 2929},
    ]}  # fmt: skip
    config = load_config(None, env={}, overrides=raw)
    assert [(d.access_password, d.action_password) for d in config.devices] == [(None, 29), (42, 2929)]
    assert redacted(config)["devices"][1]["access_password"] == "***"
    assert load_config(None, env={}, overrides={"agent_id": "a1", "devices": [{"protocol": "atol", "url": "y"}]}).devices[0].action_password is None

    for device, key in (
        ({"protocol": "shtrih", "url": "x", "access_password": 2**32}, "at most 4294967295"),
        ({"protocol": "atol", "url": "x", "access_password": 10_000}, "at most 9999"),
        ({"protocol": "atol", "url": "x", "action_password": 100_000_000}, "at most 99999999"),
        ({"protocol": "shtrih", "url": "x", "action_password": -1}, "action_password"),
    ):
        with pytest.raises(ConfigError) as exc:
            load_config(None, env={}, overrides={"agent_id": "a1", "devices": [device]})
        assert problems_of(exc)[0].startswith("devices[0]") and key in problems_of(exc)[0]


def test_unknown_protocol_is_named() -> None:
    raw = {"agent_id": "a1", "devices": [{"protocol": "shtrih", "url": "x"}, {"protocol": "Mercury", "url": "y"}]}
    with pytest.raises(ConfigError) as exc:
        load_config(None, env={}, overrides=raw)
    assert problems_of(exc)[0].startswith("devices[1].protocol:") and "atol, atol2, shtrih, shtrih-alt" in problems_of(exc)[0]
    raw["devices"][1]["protocol"] = "ATOL"
    assert load_config(None, env={}, overrides=raw).devices[1].protocol == "atol"


def test_remote_actions_default_to_the_read_only_ones(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD), env={})
    assert config.actions.enabled and set(config.actions.allow) == {"check_now", "x_report"}
    assert config.actions.allows(ActionName.X_REPORT) and not config.actions.allows(ActionName.CLOSE_SHIFT)
    assert set(load_config(EXAMPLE, env={}).actions.allow) == {"check_now", "x_report"}


def test_remote_actions_from_file_environment_and_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.commands.run import config_from_args

    path = write(tmp_path, GOOD + '\n[actions]\nallow = ["check_now", "close_shift"]\n')
    assert load_config(path, env={}).actions.allows(ActionName.CLOSE_SHIFT)
    env = {"KASSA_AGENT_ACTIONS_ALLOW": "x_report, set_datetime", "KASSA_AGENT_ACTIONS_ENABLED": "false"}
    from_env = load_config(path, env=env).actions
    assert from_env.allow == [ActionName.X_REPORT, ActionName.SET_DATETIME] and not from_env.enabled
    assert not from_env.allows(ActionName.X_REPORT)  # switched off wins over the list
    monkeypatch.delenv("KASSA_AGENT_CONFIG", raising=False)
    monkeypatch.delenv("KASSA_AGENT_ACTIONS_ALLOW", raising=False)
    args = _cli(["run", "--config", str(path), "--allow-actions", "reboot", "--no-remote-actions"])
    from_flags = config_from_args(args).actions  # type: ignore[arg-type]
    assert from_flags.allow == [ActionName.REBOOT] and not from_flags.enabled


def test_an_unknown_action_name_names_its_key(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + '\n[actions]\nallow = ["check_now", "format_disk"]\n')
    with pytest.raises(ConfigError) as exc:
        load_config(path, env={})
    assert problems_of(exc)[0].startswith("actions.allow[1]:")


def test_fallback_broker_urls_give_the_nodes_in_order_and_share_one_scheme() -> None:
    config = load_config(None, env={}, overrides={
        "agent_id": "pos-1",
        "broker": {"url": "mqtt://n1:1883", "fallback_urls": ["mqtt://n2", "mqtt://n3:1884"]},
        "devices": [{"protocol": "shtrih", "url": "sim://x"}],
    })
    assert config.broker.endpoints() == [("n1", 1883), ("n2", 1883), ("n3", 1884)]
    with pytest.raises(ConfigError, match="same scheme"):
        load_config(None, env={}, overrides={
            "agent_id": "pos-1",
            "broker": {"url": "mqtts://n1:8883", "fallback_urls": ["mqtt://n2"]},
            "devices": [{"protocol": "shtrih", "url": "sim://x"}],
        })
