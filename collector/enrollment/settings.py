"""Enrollment settings and the wiring from them to a credential backend and the service.

Read by name from the collector's config object (like ``WebSettings``), so ``CollectorConfig``
can grow these fields without this module changing; every field has a default or is optional.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field

from collector.enrollment.broker import (
    DEFAULT_COLLECTOR_USERNAME,
    AdminConnection,
    CredentialBackend,
    DynsecBackend,
    PasswordFileBackend,
    SighupReload,
)
from collector.enrollment.nats_users import NatsUsersBackend
from collector.enrollment.service import DEFAULT_TOKEN_TTL, EnrollmentService


class EnrollmentSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # The collector's own broker connection (its admin listener); dynsec commands go there.
    broker_url: str = "mqtt://127.0.0.1:1883"
    broker_username: str | None = None
    # What enrolled agents are told to connect to (the public TLS listener); default: broker_url.
    enroll_broker_url: str | None = None
    # A cluster's other nodes, for agents: each agent gets all of them, starting at a node of its own.
    enroll_broker_fallback_urls: list[str] = Field(default_factory=list)
    enroll_backend: Literal["dynsec", "files", "nats"] = "dynsec"
    enroll_token_ttl_hours: float = Field(DEFAULT_TOKEN_TTL.total_seconds() / 3600, gt=0, le=30 * 24)
    dynsec_admin_username: str = "kassa-admin"
    dynsec_admin_password: str | None = None
    broker_ca_file: Path | None = None
    broker_password_file: Path | None = None
    broker_acl_file: Path | None = None
    broker_pid_file: Path | None = Field(None, description="SIGHUP the broker here after file changes")
    nats_users_file: Path | None = Field(None, description="nats backend: the users list every node includes")

    @classmethod
    def from_config(cls, config: Any) -> EnrollmentSettings:
        values = {
            name: getattr(config, name)
            for name in cls.model_fields
            if getattr(config, name, None) is not None
        }
        return cls.model_validate(values)

    @property
    def agent_broker_url(self) -> str:
        return self.enroll_broker_url or self.broker_url

    def backend(self) -> CredentialBackend:
        collectors = (self.broker_username or DEFAULT_COLLECTOR_USERNAME,)
        if self.enroll_backend == "nats":
            if self.nats_users_file is None:
                raise ValueError("enroll_backend = 'nats' needs nats_users_file")
            reload = SighupReload(pid_file=self.broker_pid_file) if self.broker_pid_file else None
            return NatsUsersBackend(self.nats_users_file, collector_users=collectors, reload=reload)
        if self.enroll_backend == "files":
            if self.broker_password_file is None or self.broker_acl_file is None:
                raise ValueError("enroll_backend = 'files' needs broker_password_file and broker_acl_file")
            reload = SighupReload(pid_file=self.broker_pid_file) if self.broker_pid_file else None
            return PasswordFileBackend(
                self.broker_password_file, self.broker_acl_file, collector_users=collectors, reload=reload
            )
        if not self.dynsec_admin_password:
            raise ValueError("enroll_backend = 'dynsec' needs dynsec_admin_password")
        parts = urlsplit(self.broker_url)
        tls = parts.scheme == "mqtts"
        admin = AdminConnection(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (8883 if tls else 1883),
            username=self.dynsec_admin_username,
            password=self.dynsec_admin_password,
            tls=tls,
            ca_file=self.broker_ca_file,
        )
        return DynsecBackend(admin)

    def service(self, engine: sa.Engine) -> EnrollmentService:
        return EnrollmentService(
            engine,
            self.backend(),
            broker_url=self.agent_broker_url,
            broker_fallback_urls=self.enroll_broker_fallback_urls,
            token_ttl=timedelta(hours=self.enroll_token_ttl_hours),
        )
