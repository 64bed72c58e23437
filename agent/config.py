"""Agent configuration: TOML file < ``KASSA_AGENT_*`` environment < command-line flags.

Everything is validated by pydantic; a bad value becomes one ``ConfigError`` whose lines name
the key the installer must fix (``devices[1].baudrate: …``), never a traceback.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from protocol.mqtt.actions import READ_ONLY_ACTIONS, ActionName

DEFAULT_CONFIG_PATH = Path("/etc/kassa-agent/agent.toml")
CONFIG_PATH_ENV = "KASSA_AGENT_CONFIG"
ENV_PREFIX = "KASSA_AGENT_"
# Same rule as the MQTT contract's ids (protocol.mqtt.topics); repeated here so a bad id is
# reported against the config key instead of failing later when a topic is built.
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_BAUDRATES = (1200, 2400, 4800, 9600, 14400, 19200, 38400, 57600, 115200, 230400, 460800, 921600)


# Password widths on the wire: ATOL access 2 BCD bytes, ATOL mode 4 BCD bytes, Shtrih 4 bytes binary.
ATOL_ACCESS_PASSWORD_MAX = 9999
ATOL_MODE_PASSWORD_MAX = 99_999_999
SHTRIH_PASSWORD_MAX = 0xFFFFFFFF


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` holds one ``key: message`` line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid agent configuration:\n  " + "\n  ".join(problems))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_id(value: str) -> str:
    if not _ID_RE.fullmatch(value) or value == "_collector":
        raise ValueError("must be 1-64 of A-Z a-z 0-9 _ . - and start with a letter or digit")
    return value


class DeviceConfig(_Section):
    protocol: str = Field(description="driver protocol name: 'shtrih', 'shtrih-alt', 'atol' or 'atol2'")
    url: str = Field(description="port URL: /dev/ttyACM0, socket://host:7778, sim://shtrih, usb://…")
    baudrate: int | None = Field(None, description="None: the protocol's first default rate")
    poll_interval: float = Field(10.0, gt=0, le=3600)
    register_id: str | None = Field(None, description="publish under this id instead of the derived one")
    access_password: int | None = Field(
        None,
        ge=0,
        description="the password the status reads carry: ATOL the access password every command carries "
        "(default 0), Shtrih the system administrator's (default 30; the ФН commands want it)",
    )
    action_password: int | None = Field(
        None,
        ge=0,
        description="the password register-changing actions run with: Shtrih an operator's (default: "
        "access_password; 29 is the administrator), ATOL the mode password of 56h (default 0)",
    )

    @field_validator("protocol")
    @classmethod
    def _known_protocol(cls, value: str) -> str:
        from agent.drivers.registry import available_protocols  # lazy: drivers load on first use

        name = value.strip().lower()
        if name not in available_protocols():
            raise ValueError(f"unknown protocol {value!r}; known: {', '.join(available_protocols())}")
        return name

    @field_validator("baudrate")
    @classmethod
    def _known_baudrate(cls, value: int | None) -> int | None:
        if value is not None and value not in _BAUDRATES:
            raise ValueError(f"{value} is not a serial rate; use one of {', '.join(map(str, _BAUDRATES))}")
        return value

    @field_validator("register_id")
    @classmethod
    def _valid_register_id(cls, value: str | None) -> str | None:
        return None if value is None else _check_id(value)

    @model_validator(mode="after")
    def _passwords_fit_the_protocol(self) -> DeviceConfig:
        atol = self.protocol.startswith("atol")
        access_limit = ATOL_ACCESS_PASSWORD_MAX if atol else SHTRIH_PASSWORD_MAX
        if self.access_password is not None and self.access_password > access_limit:
            raise ValueError(f"access_password: a {self.protocol} access password is at most {access_limit}")
        limit = ATOL_MODE_PASSWORD_MAX if atol else SHTRIH_PASSWORD_MAX
        if self.action_password is not None and self.action_password > limit:
            raise ValueError(f"action_password: a {self.protocol} password is at most {limit}")
        return self


def _check_mqtt_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError("must start with mqtt:// or mqtts://")
    if not parts.hostname:
        raise ValueError("has no host")
    try:
        _ = parts.port
    except ValueError as exc:
        raise ValueError(f"bad port: {exc}") from None
    return value


class BrokerConfig(_Section):
    url: str = "mqtt://127.0.0.1:1883"
    # Other nodes of a clustered broker: after a failed connect or a lost connection the agent
    # tries the next node (same credentials, same session and outbox rules).
    fallback_urls: list[str] = Field(default_factory=list)
    username: str | None = Field(None, description="default: the agent id")
    password: str | None = None
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    keepalive: int = Field(30, ge=2, le=65535)
    # QoS of the cmd/ack/collector-status subscriptions. 0 on a NATS cluster: its MQTT gateway
    # delivers what collectors publish over NATS at QoS 0 anyway, and a QoS 1 subscription costs a
    # replicated JetStream consumer per topic and agent (and fails while JetStream elects leaders).
    subscribe_qos: Literal[0, 1] = 1
    reconnect_min: float = Field(1.0, gt=0)
    reconnect_max: float = Field(120.0, gt=0)

    @field_validator("url")
    @classmethod
    def _mqtt_url(cls, value: str) -> str:
        return _check_mqtt_url(value)

    @field_validator("fallback_urls")
    @classmethod
    def _mqtt_urls(cls, value: list[str]) -> list[str]:
        return [_check_mqtt_url(url) for url in value]

    @model_validator(mode="after")
    def _cert_pair(self) -> BrokerConfig:
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("client_cert and client_key must be given together")
        if self.reconnect_max < self.reconnect_min:
            raise ValueError("reconnect_max must not be below reconnect_min")
        if any(urlsplit(url).scheme != urlsplit(self.url).scheme for url in self.fallback_urls):
            raise ValueError("fallback_urls: every node must use the same scheme as url (one TLS setting)")
        return self

    def endpoints(self) -> list[tuple[str, int]]:
        """(host, port) of ``url`` then of each fallback: the nodes the agent may connect to."""
        default = 8883 if self.tls else 1883
        return [
            (parts.hostname or "", parts.port or default)
            for parts in (urlsplit(url) for url in (self.url, *self.fallback_urls))
        ]

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or (8883 if self.tls else 1883)

    def credentials(self) -> tuple[str | None, str | None]:
        """Username/password from the fields, else from the URL's userinfo."""
        parts = urlsplit(self.url)
        user = self.username or (unquote(parts.username) if parts.username else None)
        password = self.password or (unquote(parts.password) if parts.password else None)
        return user, password


class OutboxConfig(_Section):
    path: Path = Path("/var/lib/kassa-agent/outbox.sqlite")
    max_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    max_age: float = Field(35 * 86400, gt=0, description="seconds; older rows are dropped and counted")
    commit_interval: float = Field(0.075, gt=0, le=5, description="group-commit period, seconds")
    gap_report_interval: float = Field(
        60.0, gt=0, description="seconds between outbox_gap reports while records keep being dropped"
    )


class ReplayConfig(_Section):
    rate: float = Field(2000.0, gt=0, description="backlog records per second on hist")
    batch: int = Field(200, ge=1, le=5000)
    unacked_grace: float = Field(
        30.0, gt=0, le=3600,
        description="collectors sharing the stream ack record by record: seconds a published record may stay "
        "unacked before it is sent again, once per connection (a broker node that died lost it)",
    )


class SupervisionConfig(_Section):
    """How the agent restarts a failed thread before it exits non-zero for systemd to restart it."""

    max_restarts: int = Field(5, ge=0, le=1000, description="restarts in a row before the agent exits")
    backoff_initial: float = Field(1.0, gt=0, description="seconds before the first restart, doubling")
    backoff_max: float = Field(30.0, gt=0, description="cap on the seconds between restarts")
    healthy_after: float = Field(60.0, gt=0, description="a thread that ran this long starts a fresh count")


class ActionsConfig(_Section):
    """Which remote actions this register's PC lets the collector run (``[actions]``)."""

    enabled: bool = Field(True, description="false: every remote action is refused")
    allow: list[ActionName] = Field(
        default_factory=lambda: sorted(READ_ONLY_ACTIONS),
        description="actions allowed; default the read-only ones (check_now, x_report)",
    )

    @field_validator("allow", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        """The environment gives one string: ``KASSA_AGENT_ACTIONS_ALLOW=check_now,close_shift``."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def allows(self, action: ActionName) -> bool:
        return self.enabled and action in self.allow


class AgentConfig(_Section):
    agent_id: str
    devices: list[DeviceConfig] = Field(min_length=1)
    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    replay: ReplayConfig = Field(default_factory=ReplayConfig)
    supervision: SupervisionConfig = Field(default_factory=SupervisionConfig)
    actions: ActionsConfig = Field(default_factory=ActionsConfig)
    heartbeat: float = Field(60.0, gt=0, description="seconds between unchanged-state publishes")
    counter_interval: float = Field(
        60.0, gt=0, description="seconds between publishes of counter-only changes (receipts, FD number, backlog within its band)"
    )
    ack_mode: Literal["collector", "puback"] = "collector"
    health_file: Path | None = None
    log_format: Literal["json", "text"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("agent_id")
    @classmethod
    def _valid_agent_id(cls, value: str) -> str:
        return _check_id(value)

    @model_validator(mode="after")
    def _unique_register_ids(self) -> AgentConfig:
        ids = [d.register_id for d in self.devices if d.register_id]
        if len(ids) != len(set(ids)):
            raise ValueError("devices: register_id values must be unique")
        return self


# Environment variable suffix -> dotted key. Explicit, so a typo'd variable is not silently
# half-applied and `config check` can list what the environment contributed.
ENV_KEYS: dict[str, str] = {
    "ID": "agent_id",
    "AGENT_ID": "agent_id",
    "BROKER": "broker.url",
    "BROKER_USERNAME": "broker.username",
    "BROKER_PASSWORD": "broker.password",
    "BROKER_CA_FILE": "broker.ca_file",
    "BROKER_CLIENT_CERT": "broker.client_cert",
    "BROKER_CLIENT_KEY": "broker.client_key",
    "KEEPALIVE": "broker.keepalive",
    "OUTBOX": "outbox.path",
    "OUTBOX_MAX_BYTES": "outbox.max_bytes",
    "OUTBOX_MAX_AGE": "outbox.max_age",
    "REPLAY_RATE": "replay.rate",
    "HEARTBEAT": "heartbeat",
    "COUNTER_INTERVAL": "counter_interval",
    "ACK_MODE": "ack_mode",
    "HEALTH_FILE": "health_file",
    "LOG_FORMAT": "log_format",
    "LOG_LEVEL": "log_level",
    "ACTIONS_ENABLED": "actions.enabled",
    "ACTIONS_ALLOW": "actions.allow",
}


def parse_device_spec(spec: str, poll_interval: float | None = None) -> dict[str, Any]:
    """``PROTOCOL,URL[,BAUD]`` from ``--device`` into a device table."""
    parts = [p.strip() for p in spec.split(",")]
    if len(parts) not in (2, 3) or not all(parts):
        raise ConfigError([f"--device {spec!r}: expected PROTOCOL,URL[,BAUD]"])
    device: dict[str, Any] = {"protocol": parts[0], "url": parts[1]}
    if len(parts) == 3:
        device["baudrate"] = parts[2]
    if poll_interval is not None:
        device["poll_interval"] = poll_interval
    return device


def config_path(explicit: Path | str | None, env: Mapping[str, str]) -> Path | None:
    """The file to read: ``--config``, else ``KASSA_AGENT_CONFIG``, else the default if it exists."""
    if explicit is not None:
        return Path(explicit)
    if env.get(CONFIG_PATH_ENV):
        return Path(env[CONFIG_PATH_ENV])
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except PermissionError:
        raise ConfigError([f"{path}: permission denied (is the agent user allowed to read it?)"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None


def env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """Nested overrides from ``KASSA_AGENT_*``; unknown suffixes are an error, not ignored."""
    tree: dict[str, Any] = {}
    unknown: list[str] = []
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_PATH_ENV:
            continue
        key = ENV_KEYS.get(name[len(ENV_PREFIX) :])
        if key is None:
            unknown.append(f"{name}: unknown setting (known: {', '.join(ENV_PREFIX + k for k in ENV_KEYS)})")
            continue
        _set_dotted(tree, key, value)
    if unknown:
        raise ConfigError(unknown)
    return tree


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge of tables; lists and scalars in ``override`` replace the base value."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def validate(raw: Mapping[str, Any]) -> AgentConfig:
    try:
        return AgentConfig.model_validate(raw)
    except ValidationError as exc:
        problems = [f"{_location(err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise ConfigError(problems) from None


def load_outbox_config(path: Path | str | None = None, *, env: Mapping[str, str] | None = None) -> OutboxConfig:
    """Only the ``[outbox]`` table (for ``outbox status``, which needs no devices or agent id)."""
    env = os.environ if env is None else env
    source = config_path(path, env)
    raw = merge(read_toml(source) if source is not None else {}, env_overrides(env))
    try:
        return OutboxConfig.model_validate(raw.get("outbox", {}))
    except ValidationError as exc:
        raise ConfigError([f"outbox.{_location(err['loc'])}: {err['msg']}" for err in exc.errors()]) from None


def load_config(
    path: Path | str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> AgentConfig:
    """Read, merge and validate. ``overrides`` carries the command-line flags as nested tables."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    source = config_path(path, env)
    if source is not None:
        raw = read_toml(source)
    raw = merge(raw, env_overrides(env))
    raw = merge(raw, overrides or {})
    return validate(raw)
