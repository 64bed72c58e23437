"""What the live browser tests share (imported by path): a company owner signed up and confirmed
through the mailed link, and the collector service + agent runtime running on one private broker,
stopped in reverse order whatever the test did."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from agent.config import load_config as load_agent_config
from agent.runtime import AgentRuntime
from collector.accounts.passwords import FAST_TEST_COST, Passwords
from collector.accounts.service import AccountService, AccountSettings
from collector.config import load_config as load_collector_config
from collector.service import CollectorService

INN = "7707083893"  # a valid ИНН (Сбербанк's, a public example)
OWNER_PASSWORD = "a live browser passphrase"


class RecordingMailer:
    """Keeps account e-mails so the owner's address can be confirmed with the real link token."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def send(self, to: str, subject: str, text: str) -> None:
        self.texts.append(text)


@dataclass(frozen=True)
class Owner:
    tenant_id: int
    root_node_id: int


def sign_up_owner(conn: sa.Connection, email: str, company: str, at: datetime | None = None) -> Owner:
    """Sign up and confirm the address through the link the sign-up mailed."""
    at = at or datetime.now(UTC)
    mailer = RecordingMailer()
    accounts = AccountService(mailer, Passwords(FAST_TEST_COST), AccountSettings(base_url="http://kassa.test"))
    owner = accounts.sign_up(conn, email=email, password=OWNER_PASSWORD, company=company, inn=INN, at=at)
    link = re.search(r"/confirm\?token=(\S+)", mailer.texts[-1])
    assert link is not None, mailer.texts
    accounts.confirm_email(conn, link.group(1), at=at)
    return Owner(owner.tenant_id, owner.root_node_id)


@contextmanager
def running_chain(
    broker_url: str, db_url: str, web_port: int, client_id: str, agent: dict[str, Any], outbox_dir: Path
) -> Iterator[None]:
    """The collector (accounts login, pages, plain HTTP on loopback) and an agent (``agent``: its
    id, devices and the rest of its config) on ``broker_url``."""
    collector_config = load_collector_config(None, env={}, overrides={
        "broker_url": broker_url, "db_url": db_url, "client_id": client_id,
        "listen": f"127.0.0.1:{web_port}", "evaluator_period": 0.5, "web_auth": "accounts", "cookie_secure": False,
    })  # fmt: skip
    agent_config = load_agent_config(None, env={}, overrides={
        "broker": {"url": broker_url, "keepalive": 5, "reconnect_min": 0.05, "reconnect_max": 0.3},
        "outbox": {"path": str(outbox_dir / "outbox.sqlite"), "commit_interval": 0.05},
        **agent,
    })  # fmt: skip
    collector = CollectorService(collector_config)
    runtime = AgentRuntime(agent_config)
    collector_started = agent_started = False
    try:
        collector.start()
        collector_started = True
        runtime.start()
        agent_started = True
        yield
    finally:
        if agent_started:
            runtime.stop(timeout=2)
        if collector_started:
            collector.stop()
