"""Collector settings: defaults ← TOML file ← environment (``KASSA_COLLECTOR_*``) ← CLI flags.

Keys are the field names of :class:`CollectorConfig`, the same in all three sources
(``db_url = "…"`` in TOML, ``KASSA_COLLECTOR_DB_URL``, ``--db``). Alert threshold overrides live
in a ``[thresholds]`` table and use :class:`collector.alerts.Thresholds` field names.
Notification settings live in a ``[notify]`` table (:class:`NotifySettings` field names); in the
environment they are ``KASSA_COLLECTOR_NOTIFY_<FIELD>`` and in ``overrides`` ``notify_<field>``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from collector.alerts import Thresholds
from protocol.mqtt.models import MAX_PAYLOAD_BYTES
from protocol.mqtt.topics import is_valid_id

ENV_PREFIX = "KASSA_COLLECTOR_"
NOTIFY_PREFIX = "notify_"


class CollectorConfigError(ValueError):
    """Settings that cannot be used; the message names every bad key and where it came from."""


class NotifySettings(BaseModel):
    """Outgoing notifications: the SMTP relay, the base of links in messages, grouping timers.

    Notifications run when SMTP is configured or a webhook receiver exists (``enabled`` None),
    or as ``enabled`` says. Receivers themselves live in the database (``notification_receivers``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool | None = Field(None, description="None: on when SMTP is set or a webhook receiver exists")
    smtp_host: str | None = None
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_security: Literal["none", "starttls", "ssl"] = "starttls"
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_sender: str = Field("Касса-Монитор <noreply@localhost>", min_length=3)
    smtp_timeout: float = Field(15.0, gt=0)
    public_url: str = Field("http://localhost:8080", description="base of the links to our web UI")
    group_wait: float = Field(30.0, ge=0, description="seconds a store's first alert waits for others")
    group_interval: float = Field(300.0, ge=0, description="seconds between two updates of a store")
    repeat_interval: float = Field(14_400.0, ge=0, description="seconds before an unchanged group repeats")
    tick: float = Field(1.0, gt=0, le=60, description="seconds between two flushes of due groups")
    receivers_refresh: float = Field(30.0, gt=0, description="seconds receivers are cached from the database")
    retry_attempts: int = Field(5, ge=1, le=20)
    retry_backoff: float = Field(1.0, ge=0, description="seconds before the second attempt (then doubling)")

    @field_validator("public_url")
    @classmethod
    def _absolute_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an absolute http(s) URL, e.g. https://kassa.example.ru")
        return value

    @field_validator("smtp_host", "smtp_username", "smtp_password")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        # An empty environment variable means "not configured", not a host named "".
        return value if value is None or value.strip() else None

    @model_validator(mode="after")
    def _login_pair(self) -> NotifySettings:
        if (self.smtp_username is None) != (self.smtp_password is None):
            raise ValueError("SMTP login needs both smtp_username and smtp_password")
        return self

    @property
    def smtp_configured(self) -> bool:
        return self.smtp_host is not None


NATS_SCHEMES = ("nats", "tls")


def _check_broker_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("mqtt", "mqtts", *NATS_SCHEMES) or not parts.hostname:
        raise ValueError("must look like mqtt://host:1883, mqtts://host:8883 or nats://host:4222")
    try:
        _ = parts.port
    except ValueError as exc:
        raise ValueError(f"bad port: {exc}") from None
    return value


class CollectorConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    broker_url: str = "mqtt://127.0.0.1:1883"
    # More nodes of the same cluster (nats:// only): tried when broker_url's node is down.
    broker_fallback_urls: list[str] = Field(default_factory=list)
    broker_username: str | None = None
    broker_password: str | None = None
    broker_keepalive: int = Field(30, ge=2, le=65535)
    # paho's default window is 20 unacknowledged QoS 1 publishes: the collector publishes one ack per
    # agent per batch, so at tens of thousands of agents the acks queued in its memory without bound.
    broker_max_inflight: int = Field(1000, ge=1, le=65535, description="outgoing QoS 1 publishes awaiting PUBACK")
    db_url: str = "sqlite:///collector.db"
    auto_migrate: bool = Field(True, description="upgrade the schema on start (run)")
    listen: str = "127.0.0.1:8080"
    client_id: str = Field("kassa-collector-1", min_length=1, max_length=64)
    shared: bool = Field(False, description="subscribe under $share/<shared_group>/ (N collectors)")
    shared_group: str = "collectors"
    # nats:// brokers (collector.ingest.jetstream): the replicated stream and its shared consumer.
    jetstream_stream: str = Field("KASSA_UPLINK", pattern=r"^[A-Za-z0-9_-]+$")
    jetstream_replicas: int = Field(3, ge=1, le=5, description="copies of the stream (3 on a 3-node cluster)")
    jetstream_ack_wait: float = Field(
        30.0, ge=1, description="seconds before a fetched, unacked message goes to another collector"
    )
    jetstream_max_ack_pending: int = Field(20_000, ge=100, description="unacked messages across all collectors")
    collector_status_period: float = Field(
        15.0, gt=0, description="seconds between re-publishing the collector's online status (nats://)"
    )
    batch_max_rows: int = Field(500, ge=1, le=20_000)
    batch_max_delay: float = Field(0.2, gt=0, le=5, description="seconds a message may wait for its batch")
    batch_linger: float = Field(0.05, ge=0, le=1, description="seconds a small batch waits for more messages")
    queue_max: int = Field(50_000, ge=100, description="messages buffered between paho and the writer")
    reorder_window: float = Field(2.0, gt=0, description="seconds a seq gap may stay open before a rebirth")
    max_session_jump: int = Field(
        1000, ge=1, description="a session this far past the agent's highest stored one is dead-lettered as forged"
    )
    max_message_bytes: int = Field(
        MAX_PAYLOAD_BYTES, ge=4096, le=MAX_PAYLOAD_BYTES,
        description="larger messages are dead-lettered before decoding (only a prefix, size and SHA-256 kept)",
    )
    evaluator_period: float = Field(15.0, gt=0, description="seconds between full re-evaluations")
    history_days: float = Field(180.0, ge=0, description="days of state history kept; 0 keeps it forever")
    # collector/ingest/history_policy.py: significant changes are always kept; 0 keeps every state.
    history_sample_minutes: float = Field(
        15.0, ge=0, description="minutes between chart samples in history while counters move; 0 keeps every state"
    )
    history_idle_sample_hours: float = Field(6.0, gt=0, description="hours between samples of a register whose charted values stay flat")
    events_days: float = Field(365.0, ge=0, description="days of register and agent events kept; 0: forever")
    dead_letters_days: float = Field(30.0, ge=0, description="days of dead letters kept; 0: forever")
    retention_period: float = Field(3600.0, gt=0, description="seconds between two retention runs")
    # Single-company install: agents nobody enrolled join this company (name or ИНН) under «Новые кассы».
    # Multi-company install (no company): they are refused and listed for the operator.
    company: str | None = Field(None, description="company that agents nobody enrolled join (name or ИНН)")
    new_registers_node: str = Field("Новые кассы", min_length=1, max_length=200,
                                    description="node under the company root where they appear")
    enforce_enrollment: bool | None = Field(
        None, description="refuse agents nobody enrolled; default: on unless a company is named"
    )
    thresholds: dict[str, Any] = Field(default_factory=dict)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    # Read by collector.web (WebSettings.from_config).
    web_auth: Literal["accounts", "token", "open"] | None = Field(
        None, description="accounts (default), token (default when api_token is set) or open (demo only)"
    )
    api_token: str | None = None
    cookie_secure: bool = Field(True, description="Secure flag of the session cookie; off only for plain-HTTP localhost")
    # Agent enrollment (collector.enrollment.settings reads these by name); off until a backend is set up.
    enroll_broker_url: str | None = Field(None, description="broker URL given to enrolled agents")
    enroll_broker_fallback_urls: list[str] | None = Field(
        None, description="a clustered broker's other nodes, given to enrolled agents as fallbacks"
    )
    enroll_backend: Literal["dynsec", "files", "nats"] | None = None
    enroll_token_ttl_hours: float | None = Field(None, gt=0, le=720)
    dynsec_admin_username: str | None = None
    dynsec_admin_password: str | None = None
    broker_ca_file: str | None = None
    broker_password_file: str | None = None
    broker_acl_file: str | None = None
    broker_pid_file: str | None = None
    nats_users_file: str | None = None

    @property
    def public_url(self) -> str:
        """Base of links in account and notification e-mails (``[notify] public_url``)."""
        return self.notify.public_url

    @property
    def enrollment_enabled(self) -> bool:
        if self.enroll_backend == "files":
            return bool(self.broker_password_file and self.broker_acl_file)
        if self.enroll_backend == "nats":
            return bool(self.nats_users_file)
        return bool(self.dynsec_admin_password)

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        return _check_broker_url(value)

    @field_validator("broker_fallback_urls")
    @classmethod
    def _fallback_urls(cls, value: list[str]) -> list[str]:
        return [_check_broker_url(url) for url in value]

    @model_validator(mode="after")
    def _fallbacks_on_nats_only(self) -> CollectorConfig:
        schemes = {urlsplit(url).scheme in NATS_SCHEMES for url in self.broker_urls}
        if self.broker_fallback_urls and schemes != {True}:
            raise ValueError("broker_fallback_urls: only for a nats:// broker_url, and all nats:// or tls://")
        return self

    @property
    def competing_consumers(self) -> bool:
        """Each collector sees only part of every agent's stream: under ``$share``, and always on a
        NATS cluster (one shared JetStream consumer)."""
        return self.shared or urlsplit(self.broker_url).scheme in NATS_SCHEMES

    @property
    def broker_urls(self) -> list[str]:
        return [self.broker_url, *self.broker_fallback_urls]

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:8080")
        return value

    @field_validator("shared_group")
    @classmethod
    def _group(cls, value: str) -> str:
        if not value or any(ch in value for ch in "/+#"):
            raise ValueError("must be a plain name without / + #")
        return value

    @field_validator("company", "new_registers_node")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        return None if value is None or not value.strip() else " ".join(value.split())

    @model_validator(mode="after")
    def _somewhere_for_unenrolled_agents(self) -> CollectorConfig:
        if self.enforce_enrollment is False and self.company is None:
            raise ValueError(
                "enforce_enrollment = false needs company = \"<name or ИНН>\": the company whose "
                "«Новые кассы» receive agents nobody enrolled (with several companies keep enrollment enforced)"
            )
        return self

    @property
    def enrollment_enforced(self) -> bool:
        """Explicit setting, else on in a multi-company install (no ``company`` named)."""
        return self.company is None if self.enforce_enrollment is None else self.enforce_enrollment

    @field_validator("thresholds")
    @classmethod
    def _thresholds_valid(cls, value: dict[str, Any]) -> dict[str, Any]:
        Thresholds().merged(value)  # raises naming the bad field
        return value

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, value: str) -> str:
        if not is_valid_id(value):
            raise ValueError("use letters, digits, '.', '_' or '-' (it is the MQTT client id)")
        return value

    @property
    def broker_tls(self) -> bool:
        return urlsplit(self.broker_url).scheme == "mqtts"

    @property
    def broker_host(self) -> str:
        return urlsplit(self.broker_url).hostname or ""

    @property
    def broker_port(self) -> int:
        return urlsplit(self.broker_url).port or (8883 if self.broker_tls else 1883)

    def broker_credentials(self) -> tuple[str | None, str | None]:
        """Fields first, else the URL's userinfo."""
        parts = urlsplit(self.broker_url)
        user = self.broker_username or (unquote(parts.username) if parts.username else None)
        password = self.broker_password or (unquote(parts.password) if parts.password else None)
        return user, password

    @property
    def listen_host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    def alert_thresholds(self) -> Thresholds:
        return Thresholds().merged(self.thresholds)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise CollectorConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise CollectorConfigError(f"config file {path} is not valid TOML: {exc}") from None


def env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """``KASSA_COLLECTOR_DB_URL=…`` → ``{"db_url": "…"}``, ``KASSA_COLLECTOR_NOTIFY_SMTP_HOST=…`` →
    ``{"notify_smtp_host": "…"}``; an unknown name is an error, not ignored."""
    known = set(CollectorConfig.model_fields) - {"thresholds", "notify"}
    known |= {NOTIFY_PREFIX + name for name in NotifySettings.model_fields}
    out: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == f"{ENV_PREFIX}CONFIG":
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key not in known:
            raise CollectorConfigError(f"unknown setting in environment: {name}")
        out[key] = value
    return out


def _merge_notify(merged: dict[str, Any], flat: Mapping[str, Any]) -> None:
    """Fold ``notify_<field>`` keys (environment, CLI flags) into the ``[notify]`` table."""
    for key, value in flat.items():
        field = key[len(NOTIFY_PREFIX) :] if key.startswith(NOTIFY_PREFIX) else ""
        if field in NotifySettings.model_fields and isinstance(merged.setdefault("notify", {}), dict):
            merged["notify"][field] = value
        else:
            merged[key] = value  # a [notify] that is not a table fails validation with its name


def load_config(
    path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> CollectorConfig:
    """Merge the sources (later wins) and validate; ``$KASSA_COLLECTOR_CONFIG`` names a default file."""
    environment = dict(env or {})
    if path is None and environment.get(f"{ENV_PREFIX}CONFIG"):
        path = Path(environment[f"{ENV_PREFIX}CONFIG"])
    merged: dict[str, Any] = read_toml(path) if path is not None else {}
    if isinstance(merged.get("notify"), dict):
        merged["notify"] = dict(merged["notify"])
    _merge_notify(merged, env_overrides(environment))
    _merge_notify(merged, {key: value for key, value in (overrides or {}).items() if value is not None})
    try:
        return CollectorConfig.model_validate(merged)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(config)'}: {err['msg']}"
            for err in exc.errors(include_url=False)
        )
        raise CollectorConfigError(f"invalid collector settings: {problems}") from None
