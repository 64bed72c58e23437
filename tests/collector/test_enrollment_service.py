"""Enrollment service on SQLite and the real PostgreSQL: tokens are single use, expire, and
unknown ones are refused; redeeming binds the agent to the token's store and provisions the broker
in the same transaction; revocation removes the broker account and marks the agent revoked.
The broker here is an in-memory stand-in; the real Mosquitto backends are tested in tests/e2e.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: the helper next to us
import enrollment_testkit as kit

from collector.enrollment.errors import (
    BrokerError,
    TokenExpired,
    TokenUnknown,
    TokenUsed,
    UnknownAgent,
    UnknownStore,
)
from collector.enrollment.passwords import verify
from collector.enrollment.schema import agent_credentials, enrollment_tokens
from collector.enrollment.service import EnrollmentService, agent_id_for, token_digest
from collector.storage.agents import get_agent
from collector.storage.tree import create_node, create_tenant
from protocol.mqtt.topics import is_valid_id

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
BROKER_URL = "mqtts://mqtt.example.ru:8883"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    with kit.migrated_engine(request.param, tmp_path) as eng:
        yield eng


@pytest.fixture
def store(engine: sa.Engine) -> tuple[int, int]:
    """(tenant id, store node id)."""
    with engine.begin() as conn:
        tenant = create_tenant(conn, "Ромашка", created_at=T0)
        city = create_node(conn, tenant, parent_id=None, kind="city", name="Москва")
        return tenant, create_node(conn, tenant, parent_id=city, kind="store", name="Тверская 1")


@pytest.fixture
def broker() -> kit.FakeBroker:
    return kit.FakeBroker()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(engine: sa.Engine, broker: kit.FakeBroker, clock: Clock) -> EnrollmentService:
    return EnrollmentService(engine, broker, broker_url=BROKER_URL, clock=clock)


def test_redeem_binds_a_new_agent_to_the_tokens_store_and_provisions_the_broker(
    service: EnrollmentService, engine: sa.Engine, broker: kit.FakeBroker, store: tuple[int, int]
) -> None:
    tenant, node = store
    issued = service.create_token(node, created_by="admin@example.ru")
    assert issued.tenant_id == tenant and issued.expires_at == T0 + timedelta(hours=24)

    result = service.redeem(issued.token, "POS-Тверская #1")

    assert is_valid_id(result.agent_id) and result.agent_id.startswith("pos-1-")
    assert (result.username, result.broker_url, result.tenant_id, result.node_id) == (
        result.agent_id, BROKER_URL, tenant, node,
    )  # fmt: skip
    assert broker.accounts == {result.agent_id: result.password}
    with engine.connect() as conn:
        agent = get_agent(conn, result.agent_id)
        credential = conn.execute(sa.select(agent_credentials)).one()
        token_row = conn.execute(sa.select(enrollment_tokens)).one()
    assert agent is not None and (agent.tenant_id, agent.node_id, agent.revoked) == (tenant, node, False)
    assert credential.username == result.agent_id and credential.revoked_at is None
    assert verify(result.password, credential.password_hash)  # audit hash of the issued password
    assert token_row.token_hash == token_digest(issued.token) != issued.token  # never stored in clear
    assert (token_row.used_at, token_row.used_by_agent) == (T0, result.agent_id)


def test_a_token_works_once(service: EnrollmentService, store: tuple[int, int], broker: kit.FakeBroker) -> None:
    issued = service.create_token(store[1], created_by="admin")
    first = service.redeem(issued.token)
    with pytest.raises(TokenUsed, match="already used"):
        service.redeem(issued.token)
    assert list(broker.accounts) == [first.agent_id]


def test_an_expired_token_is_refused(service: EnrollmentService, store: tuple[int, int], clock: Clock) -> None:
    issued = service.create_token(store[1], created_by="admin", ttl=timedelta(hours=1))
    clock.now = T0 + timedelta(hours=1)
    with pytest.raises(TokenExpired, match="expired"):
        service.redeem(issued.token)


def test_a_token_just_before_expiry_still_works(service: EnrollmentService, store: tuple[int, int], clock: Clock) -> None:
    issued = service.create_token(store[1], created_by="admin")
    clock.now = T0 + timedelta(hours=24) - timedelta(seconds=1)
    assert service.redeem(issued.token).agent_id


@pytest.mark.parametrize("wrong", ["", "   ", "not-a-token", "x" * 500])
def test_unknown_tokens_are_refused(service: EnrollmentService, store: tuple[int, int], wrong: str) -> None:
    issued = service.create_token(store[1], created_by="admin")
    with pytest.raises(TokenUnknown):
        service.redeem(wrong)
    with pytest.raises(TokenUnknown):
        service.redeem(issued.token[:-1])  # one character short
    assert service.redeem(f"  {issued.token}\n").agent_id  # pasted with whitespace still works


def test_a_broker_failure_rolls_the_claim_back_so_the_token_can_be_retried(
    service: EnrollmentService, engine: sa.Engine, broker: kit.FakeBroker, store: tuple[int, int]
) -> None:
    issued = service.create_token(store[1], created_by="admin")
    broker.fail = True
    with pytest.raises(BrokerError):
        service.redeem(issued.token)
    with engine.connect() as conn:
        assert conn.execute(sa.select(enrollment_tokens.c.used_at)).scalar_one() is None
        assert conn.execute(sa.select(sa.func.count()).select_from(agent_credentials)).scalar_one() == 0
    broker.fail = False
    assert service.redeem(issued.token).agent_id in broker.accounts


def test_two_agents_racing_with_one_token_one_wins(
    service: EnrollmentService, store: tuple[int, int], broker: kit.FakeBroker
) -> None:
    issued = service.create_token(store[1], created_by="admin")
    outcomes: list[object] = []
    barrier = threading.Barrier(4)

    def attempt() -> None:
        barrier.wait()
        try:
            outcomes.append(service.redeem(issued.token))
        except TokenUsed as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert sum(not isinstance(o, TokenUsed) for o in outcomes) == 1
    assert len(outcomes) == 4 and len(broker.accounts) == 1


def test_tokens_need_an_existing_node_and_a_sane_lifetime(service: EnrollmentService, store: tuple[int, int]) -> None:
    with pytest.raises(UnknownStore):
        service.create_token(999_999, created_by="admin")
    for bad in (timedelta(0), timedelta(days=31)):
        with pytest.raises(ValueError, match="lifetime"):
            service.create_token(store[1], created_by="admin", ttl=bad)


def test_revoke_removes_the_broker_account_and_marks_the_agent_revoked(
    service: EnrollmentService, engine: sa.Engine, broker: kit.FakeBroker, store: tuple[int, int], clock: Clock
) -> None:
    kept = service.redeem(service.create_token(store[1], created_by="admin").token)
    gone = service.redeem(service.create_token(store[1], created_by="admin").token)
    clock.now = T0 + timedelta(days=3)
    service.revoke_agent(gone.agent_id)
    assert list(broker.accounts) == [kept.agent_id] and broker.removed == [gone.agent_id]
    with engine.connect() as conn:
        agent = get_agent(conn, gone.agent_id)
        revoked_at = conn.execute(
            sa.select(agent_credentials.c.revoked_at).where(agent_credentials.c.agent_id == gone.agent_id)
        ).scalar_one()
    assert agent is not None and agent.revoked and revoked_at == clock.now
    with pytest.raises(UnknownAgent):
        service.revoke_agent("never-enrolled")


def test_revoke_keeps_the_agent_active_when_the_broker_refuses(
    service: EnrollmentService, engine: sa.Engine, broker: kit.FakeBroker, store: tuple[int, int]
) -> None:
    agent_id = service.redeem(service.create_token(store[1], created_by="admin").token).agent_id
    broker.fail = True
    with pytest.raises(BrokerError):
        service.revoke_agent(agent_id)
    with engine.connect() as conn:
        row = get_agent(conn, agent_id)
    assert row is not None and not row.revoked  # the operator sees it still active and retries


@pytest.mark.parametrize(
    ("hint", "expected"),
    [
        ("POS-Тверская #1", "pos-1-abcd0123"),
        (None, "agent-abcd0123"),
        ("!!!", "agent-abcd0123"),
        ("kassa-01.shop.local", "kassa-01-shop-local-abcd0123"),
        ("x" * 100, "x" * 40 + "-abcd0123"),
    ],
)
def test_agent_ids_are_readable_and_valid_topic_ids(hint: str | None, expected: str) -> None:
    agent_id = agent_id_for(hint, "abcd0123")
    assert agent_id == expected and is_valid_id(agent_id)
