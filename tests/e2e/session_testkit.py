"""Shared by the agent-identity and clock end-to-end tests (imported by path: pytest runs with
--import-mode=importlib): the real collector service and the real agent runtime on a private
Mosquitto, the agent polling an in-process ``ModelRegister`` (tests/conftest.py)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from agent.config import load_config
from agent.runtime import AgentRuntime, utc_now
from collector.config import CollectorConfig
from collector.service import CollectorService
from collector.storage.schema import register_state

sys.path.insert(0, str(Path(__file__).parent.parent / "collector"))
sys.path.insert(0, str(Path(__file__).parent.parent))
import ingest_testkit
from companykit import single_company
from netkit import wait_for

REGISTER = "kkt-1"
__all__ = ["db_url", "latest_state", "start_agent", "start_collector", "wait_for"]


@pytest.fixture(params=ingest_testkit.BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database URL on each backend (import this fixture into a test module to use it)."""
    with ingest_testkit.database_url(request.param, tmp_path) as url:
        yield url


def start_collector(broker: Any, db_url: str, **config: Any) -> CollectorService:
    settings = {"broker_url": broker.url, "db_url": db_url, "client_id": "collector-e2e", "evaluator_period": 0.5}
    if "company" not in config and "enforce_enrollment" not in config:
        settings["company"] = single_company(db_url)  # agents here report without enrollment
    service = CollectorService(CollectorConfig(**{**settings, **config}), serve_web=False)
    service.start()
    return service


def start_agent(
    broker: Any,
    outbox: Path,
    register: Any,
    *,
    agent_id: str = "store-1",
    now: Callable[[], datetime] = utc_now,
    **extra: Any,
) -> AgentRuntime:
    config = load_config(None, env={}, overrides={
        "agent_id": agent_id,
        "heartbeat": 0.3,
        "broker": {"url": broker.url, "keepalive": 5, "reconnect_min": 0.05, "reconnect_max": 0.3},
        "outbox": {"path": str(outbox), "commit_interval": 0.05},
        "devices": [{"protocol": "shtrih", "url": "sim://model", "poll_interval": 0.1, "register_id": REGISTER}],
        **extra,
    })
    runtime = AgentRuntime(config, opener=lambda device: register, now=now)
    runtime.start()
    return runtime


def latest_state(engine: sa.Engine) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.select(register_state).where(register_state.c.register_id == REGISTER)).first()
