"""Agent configuration: TOML file < ``KASSA_AGENT_*`` environment < command-line flags.

Validated by msgspec (pydantic would cost the agent ~13 MB of resident memory, issue 11); a bad
value becomes a ``ConfigError`` whose line names the key the installer must fix
(``devices[1].baudrate: …``), never a traceback. msgspec stops at the first bad value, so an
installer fixes one key per run.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import unquote, urlsplit

import msgspec
import msgspec.inspect
from msgspec import Meta, field
from msgspec.structs import force_setattr

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


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A table of the file: unknown keys are an error (a typo must not be silently ignored)."""


def _invalid(key: str, message: str) -> ValueError:
    # msgspec reports a __post_init__ error at the table; the key prefix makes it name the field.
    return ValueError(f"{key}: {message}")


def _check_id(key: str, value: str) -> None:
    if not _ID_RE.fullmatch(value) or value == "_collector":
        raise _invalid(key, "must be 1-64 of A-Z a-z 0-9 _ . - and start with a letter or digit")


Positive = Annotated[float, Meta(gt=0)]
_S = TypeVar("_S", bound="_Section")


class DeviceConfig(_Section, frozen=True, kw_only=True):
    protocol: str  # driver protocol name: 'shtrih', 'shtrih-alt', 'atol' or 'atol2'
    url: str  # port URL: /dev/ttyACM0, socket://host:7778, sim://shtrih, usb://…
    baudrate: int | None = None  # None: the protocol's first default rate
    poll_interval: Annotated[float, Meta(gt=0, le=3600)] = 10.0
    register_id: str | None = None  # publish under this id instead of the derived one
    # The password the status reads carry: ATOL the access password every command carries (default 0),
    # Shtrih the system administrator's (default 30; the ФН commands want it).
    access_password: Annotated[int, Meta(ge=0)] | None = None
    # The password register-changing actions run with: Shtrih an operator's (default: access_password;
    # 29 is the administrator), ATOL the mode password of 56h (default 0).
    action_password: Annotated[int, Meta(ge=0)] | None = None

    def __post_init__(self) -> None:
        from agent.drivers.registry import available_protocols  # lazy: drivers load on first use

        name = self.protocol.strip().lower()
        if name not in available_protocols():
            raise _invalid("protocol", f"unknown protocol {self.protocol!r}; known: {', '.join(available_protocols())}")
        force_setattr(self, "protocol", name)
        if self.baudrate is not None and self.baudrate not in _BAUDRATES:
            raise _invalid("baudrate", f"{self.baudrate} is not a serial rate; use one of {', '.join(map(str, _BAUDRATES))}")
        if self.register_id is not None:
            _check_id("register_id", self.register_id)
        atol = name.startswith("atol")
        access_limit = ATOL_ACCESS_PASSWORD_MAX if atol else SHTRIH_PASSWORD_MAX
        if self.access_password is not None and self.access_password > access_limit:
            raise _invalid("access_password", f"a {name} access password is at most {access_limit}")
        limit = ATOL_MODE_PASSWORD_MAX if atol else SHTRIH_PASSWORD_MAX
        if self.action_password is not None and self.action_password > limit:
            raise _invalid("action_password", f"a {name} password is at most {limit}")


def _check_mqtt_url(key: str, value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise _invalid(key, "must start with mqtt:// or mqtts://")
    if not parts.hostname:
        raise _invalid(key, "has no host")
    try:
        _ = parts.port
    except ValueError as exc:
        raise _invalid(key, f"bad port: {exc}") from None


class BrokerConfig(_Section, frozen=True, kw_only=True):
    url: str = "mqtt://127.0.0.1:1883"
    # Other nodes of a clustered broker: after a failed connect or a lost connection the agent
    # tries the next node (same credentials, same session and outbox rules).
    fallback_urls: list[str] = field(default_factory=list)
    username: str | None = None  # default: the agent id
    password: str | None = None
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    keepalive: Annotated[int, Meta(ge=2, le=65535)] = 30
    # QoS of the cmd/ack/collector-status subscriptions. 0 on a NATS cluster: its MQTT gateway
    # delivers what collectors publish over NATS at QoS 0 anyway, and a QoS 1 subscription costs a
    # replicated JetStream consumer per topic and agent (and fails while JetStream elects leaders).
    subscribe_qos: Literal[0, 1] = 1
    reconnect_min: Positive = 1.0
    reconnect_max: Positive = 120.0

    def __post_init__(self) -> None:
        _check_mqtt_url("url", self.url)
        for index, url in enumerate(self.fallback_urls):
            _check_mqtt_url(f"fallback_urls[{index}]", url)
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("client_cert and client_key must be given together")
        if self.reconnect_max < self.reconnect_min:
            raise ValueError("reconnect_max must not be below reconnect_min")
        if any(urlsplit(url).scheme != urlsplit(self.url).scheme for url in self.fallback_urls):
            raise ValueError("fallback_urls: every node must use the same scheme as url (one TLS setting)")

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


class OutboxConfig(_Section, frozen=True, kw_only=True):
    path: Path = Path("/var/lib/kassa-agent/outbox.sqlite")
    max_bytes: Annotated[int, Meta(ge=1024)] = 64 * 1024 * 1024
    max_age: Positive = 35 * 86400.0  # seconds; older rows are dropped and counted
    commit_interval: Annotated[float, Meta(gt=0, le=5)] = 0.075  # group-commit period, seconds
    gap_report_interval: Positive = 60.0  # seconds between outbox_gap reports while records keep being dropped


class ReplayConfig(_Section, frozen=True, kw_only=True):
    rate: Positive = 2000.0  # backlog records per second on hist
    batch: Annotated[int, Meta(ge=1, le=5000)] = 200
    # Collectors sharing the stream ack record by record: seconds a published record may stay
    # unacked before it is sent again, once per connection (a broker node that died lost it).
    unacked_grace: Annotated[float, Meta(gt=0, le=3600)] = 30.0


class SupervisionConfig(_Section, frozen=True, kw_only=True):
    """How the agent restarts a failed thread before it exits non-zero for systemd to restart it."""

    max_restarts: Annotated[int, Meta(ge=0, le=1000)] = 5  # restarts in a row before the agent exits
    backoff_initial: Positive = 1.0  # seconds before the first restart, doubling
    backoff_max: Positive = 30.0  # cap on the seconds between restarts
    healthy_after: Positive = 60.0  # a thread that ran this long starts a fresh count


class ActionsConfig(_Section, frozen=True, kw_only=True):
    """Which remote actions this register's PC lets the collector run (``[actions]``)."""

    enabled: bool = True  # false: every remote action is refused
    # Actions allowed; default the read-only ones (check_now, x_report). The environment gives one
    # string, KASSA_AGENT_ACTIONS_ALLOW=check_now,close_shift: see _comma_lists.
    allow: list[ActionName] = field(default_factory=lambda: sorted(READ_ONLY_ACTIONS))

    def allows(self, action: ActionName) -> bool:
        return self.enabled and action in self.allow


class AgentConfig(_Section, frozen=True, kw_only=True):
    agent_id: str
    devices: Annotated[list[DeviceConfig], Meta(min_length=1)]
    broker: BrokerConfig = field(default_factory=BrokerConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    supervision: SupervisionConfig = field(default_factory=SupervisionConfig)
    actions: ActionsConfig = field(default_factory=ActionsConfig)
    heartbeat: Positive = 60.0  # seconds between unchanged-state publishes
    # Seconds between publishes of counter-only changes (receipts, FD number, backlog within its band).
    counter_interval: Positive = 60.0
    ack_mode: Literal["collector", "puback"] = "collector"
    health_file: Path | None = None
    log_format: Literal["json", "text"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    def __post_init__(self) -> None:
        _check_id("agent_id", self.agent_id)
        ids = [d.register_id for d in self.devices if d.register_id]
        if len(ids) != len(set(ids)):
            raise _invalid("devices", "register_id values must be unique")


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


_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_KEYED = re.compile(r"^(?P<key>[a-z_]+(?:\[\d+\])?): (?P<message>.*)$", re.DOTALL)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<key>[^`]+)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<key>[^`]+)`$")


def _problem(error: msgspec.ValidationError, prefix: str = "") -> str:
    """``key: message`` from msgspec's ``message - at `$.devices[1]``` (key prefixed by the
    table's path; a message of a __post_init__ names its own key)."""
    at = _AT.match(str(error))
    assert at is not None  # the pattern matches any text
    message = at["message"]
    path = ".".join(part for part in (prefix, (at["path"] or "").lstrip(".")) if part)
    for pattern, text in ((_UNKNOWN, "unknown setting"), (_MISSING, "required")):
        if found := pattern.match(message):
            key, message = found["key"], text
            break
    else:
        keyed = _KEYED.match(message)
        if keyed is None:
            return f"{path or '(top level)'}: {message}"
        key, message = keyed["key"], keyed["message"]
    return f"{path}.{key}: {message}" if path else f"{key}: {message}"


def _path(kind: type, value: Any) -> Any:
    if kind is Path and isinstance(value, str | os.PathLike):
        return Path(value)
    raise TypeError(f"expected a path, got {type(value).__name__}")


def _comma_lists(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    """The environment gives a list as one string: ``KASSA_AGENT_ACTIONS_ALLOW=check_now,close_shift``."""
    actions = raw.get("actions")
    if isinstance(actions, Mapping) and isinstance(actions.get("allow"), str):
        allow = [part.strip() for part in actions["allow"].split(",") if part.strip()]
        return {**raw, "actions": {**actions, "allow": allow}}
    return raw


def _convert(raw: Any, section: type[_S], prefix: str = "") -> _S:
    # strict=False: the environment and flags give strings ("30", "true") for numbers and flags.
    try:
        return msgspec.convert(raw, section, strict=False, dec_hook=_path)
    except msgspec.ValidationError as exc:
        raise ConfigError([_problem(exc, prefix)]) from None


def _known_keys_only(raw: Any, section: type[msgspec.Struct], path: str, unknown: list[str]) -> Any:
    """``raw`` without the keys ``section`` does not have, each listed in ``unknown``: msgspec
    stops at the first problem, and a typo'd key must not hide a bad value (nor the other way)."""
    if not isinstance(raw, Mapping):
        return raw
    info = msgspec.inspect.type_info(section)
    assert isinstance(info, msgspec.inspect.StructType)
    tables = {f.name: f.type for f in info.fields}
    kept: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in tables:
            unknown.append(f"{where}: unknown setting")
            continue
        kind = tables[key]
        if isinstance(kind, msgspec.inspect.StructType):
            value = _known_keys_only(value, kind.cls, where, unknown)
        elif (
            isinstance(kind, msgspec.inspect.ListType)
            and isinstance(kind.item_type, msgspec.inspect.StructType)
            and isinstance(value, list)
        ):
            value = [_known_keys_only(item, kind.item_type.cls, f"{where}[{i}]", unknown) for i, item in enumerate(value)]
        kept[key] = value
    return kept


def validate(raw: Mapping[str, Any]) -> AgentConfig:
    unknown: list[str] = []
    known = _known_keys_only(_comma_lists(raw), AgentConfig, "", unknown)
    try:
        config = _convert(known, AgentConfig)
    except ConfigError as exc:
        raise ConfigError(unknown + exc.problems) from None
    if unknown:
        raise ConfigError(unknown)
    return config


def as_builtins(config: _Section) -> dict[str, Any]:
    """Plain JSON-ready tables (paths as text), e.g. for ``config check``."""
    tables: dict[str, Any] = msgspec.to_builtins(config, enc_hook=str)
    return tables


def load_outbox_config(path: Path | str | None = None, *, env: Mapping[str, str] | None = None) -> OutboxConfig:
    """Only the ``[outbox]`` table (for ``outbox status``, which needs no devices or agent id)."""
    env = os.environ if env is None else env
    source = config_path(path, env)
    raw = merge(read_toml(source) if source is not None else {}, env_overrides(env))
    return _convert(raw.get("outbox", {}), OutboxConfig, "outbox")


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
